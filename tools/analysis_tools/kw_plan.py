"""The warehouse plan of a KW config, without building its weights.

Example:
    python tools/analysis_tools/kw_plan.py configs/kw1x-resnet50_8xb32_in1k.py
    python tools/analysis_tools/kw_plan.py \
        configs/mask-rcnn_kw-r50_1x_coco.py --layers --budget 4

Per warehouse manager (backbone, KW head): the paper's Table 14 (cell
shape, layers, m_t, n, parameters), then the parameters against the plain
counterpart; ``--layers`` lists every KW layer (kernel, warehouse, split,
mixtures, first cell, initial assignment beta). The model is built on the
``meta`` device: nothing is allocated or loaded.
"""
import argparse

import mmkw  # noqa: F401  registers mmkw's models
from mmkw.analysis import plan_report
from mmkw.engine import add_cfg_options, load_config
from mmkw.models import build_model_from_config

__all__ = ['parse_args', 'main']


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Print the warehouse plan of a KW config')
    parser.add_argument('config', help='MMPretrain or MMDetection config')
    parser.add_argument(
        '--layers', action='store_true', help='list every KW layer too')
    parser.add_argument(
        '--budget',
        type=float,
        help='the backbone budget instead of the config\'s')
    add_cfg_options(parser)
    return parser.parse_args(argv)


def main(argv=None) -> str:
    """Print (and return) the report of ``argv``'s config."""
    args = parse_args(argv)
    cfg = load_config(args.config, cfg_options=args.cfg_options)
    if args.budget is not None:
        backbone = cfg.model.get('backbone')
        if backbone is None or 'budget' not in backbone and not str(
                backbone.get('type', '')).startswith(('KW', 'mmkw.')):
            raise ValueError(f'--budget needs a KW backbone in '
                             f'{args.config}, found {backbone!r}')
        backbone['budget'] = args.budget
    model = build_model_from_config(cfg, device='meta')
    report = plan_report(model, layers=args.layers)
    print(report)
    return report


if __name__ == '__main__':
    main()
