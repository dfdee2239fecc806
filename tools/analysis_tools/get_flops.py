"""FLOPs and parameters of a KW model next to its plain counterpart.

Example:
    python tools/analysis_tools/get_flops.py \
        configs/kw1x-resnet50_8xb32_in1k.py
    python tools/analysis_tools/get_flops.py \
        configs/mask-rcnn_kw-r50_1x_coco.py --shape 800 1333

Counts what MMPretrain's and MMDetection's ``get_flops.py`` count, with the
same counter (MMEngine's): ``model.extract_feat`` (the backbone and neck) on
one ``3 x H x W`` image, one multiply-add as one FLOP; plus the KW
attention's pooling and normalisation ops MMEngine has no handle for (see
:mod:`mmkw.analysis.complexity`). The plain counterpart is the same model
with every KW layer replaced by the plain layer of the same geometry.
"""
import argparse

import torch.nn as nn
from mmengine.config import Config

import mmkw  # noqa: F401  registers mmkw's models
from mmkw.analysis import count_complexity, plain_counterpart
from mmkw.cnn import KWConvNd
from mmkw.engine import add_cfg_options, load_config
from mmkw.models import build_model_from_config

__all__ = ['parse_args', 'build_feature_model', 'main']


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='FLOPs and parameters of a KW model and its plain '
        'counterpart')
    parser.add_argument('config', help='MMPretrain or MMDetection config')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[224, 224],
        help='input size: H W, or one side (default: 224 224)')
    add_cfg_options(parser)
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2) or min(args.shape) < 1:
        parser.error(f'--shape takes H W or one positive side, got '
                     f'{args.shape}')
    return args


class _Features(nn.Module):
    """``model.extract_feat`` as ``forward`` (what the counter calls)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.extract_feat(x)


def build_feature_model(cfg: Config) -> nn.Module:
    """The backbone and neck of the config's model (no weights loaded)."""
    model = build_model_from_config(cfg)
    if not hasattr(model, 'extract_feat'):
        raise ValueError(f'{type(model).__name__} has no extract_feat: '
                         f'only classifiers and detectors are counted')
    if not any(isinstance(m, KWConvNd) for m in model.modules()):
        raise ValueError(f'the model of {cfg.filename} has no KW layer')
    return _Features(model).eval()


def main(argv=None):
    """Print the counts of ``argv``'s config."""
    args = parse_args(argv)
    cfg = load_config(args.config, cfg_options=args.cfg_options)
    shape = args.shape * 2 if len(args.shape) == 1 else args.shape
    input_shape = (3, *shape)
    kw = build_feature_model(cfg)
    results = {
        'KW': count_complexity(kw, input_shape),
        'plain': count_complexity(plain_counterpart(kw), input_shape)
    }
    print(f'{args.config}: backbone + neck, input {tuple(input_shape)}')
    print(f'{"":6} {"GFLOPs":>8} {"params (M)":>11}')
    for name, result in results.items():
        print(f'{name:6} {result["flops"] / 1e9:8.3f} '
              f'{result["params"] / 1e6:11.2f}')
    kw_ops = results['KW']['by_operator']
    print('KW FLOPs by operator (G): ' +
          ', '.join(f'{op} {flops / 1e9:.3f}'
                    for op, flops in kw_ops.most_common()))
    return results


if __name__ == '__main__':
    main()
