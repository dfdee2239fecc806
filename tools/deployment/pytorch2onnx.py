"""Export a KW classifier, or a KW detector's backbone and neck, to ONNX.

Example:
    python tools/deployment/pytorch2onnx.py \
        configs/kw1x-resnet50_8xb32_in1k.py kw1x_resnet50.pth \
        --out kw1x_resnet50.onnx --dynamic-batch --verify

A classifier's graph outputs the logits of ``model(x, mode='tensor')``; a
detector's outputs its backbone (and neck) feature maps: heads, RoI
extraction and NMS are out of scope. The input is the preprocessed image
batch (the config's ``data_preprocessor`` normalisation is not in the
graph). Needs ``onnx``, ``onnxscript`` and, for ``--verify``,
``onnxruntime``.

Each stage (building the model, exporting, verifying) is announced on
stderr with the time the previous one took; the results go to stdout.
"""
import argparse
import sys
import time

import mmkw  # noqa: F401  registers mmkw's models and the safe loaders
from mmkw.deployment import build_export_model, export_onnx, verify_onnx

__all__ = ['parse_args', 'main']


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Export a KW model to ONNX (dynamic batch optional)')
    parser.add_argument('config', help='MMPretrain or MMDetection config')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=[224, 224],
        metavar=('H', 'W'),
        help='input height and width (default: 224 224)')
    parser.add_argument(
        '--dynamic-batch',
        action='store_true',
        help='make the batch axis dynamic (default: fixed --batch-size)')
    parser.add_argument(
        '--batch-size',
        type=int,
        default=1,
        help='batch size of a fixed-batch export (default: 1)')
    parser.add_argument(
        '--opset', type=int, default=18, help='ONNX opset (default: 18)')
    parser.add_argument(
        '--torchscript',
        action='store_true',
        help="use PyTorch's TorchScript exporter (deprecated by PyTorch, as "
        'used by MMDeploy, faster on large graphs) instead of its default')
    parser.add_argument(
        '--verify',
        action='store_true',
        help='compare ONNX Runtime with PyTorch on random inputs (batch 1 '
        'and 4 with --dynamic-batch)')
    args = parser.parse_args(argv)
    if not args.out.endswith('.onnx'):
        parser.error(f'--out must be a .onnx file, got {args.out!r}')
    if min(args.shape) < 1 or args.batch_size < 1:
        parser.error(f'--shape and --batch-size must be positive, got '
                     f'{args.shape} and {args.batch_size}')
    return args


class _Stages:
    """One stderr line per stage: what starts, and how long the previous
    stage took."""

    def __init__(self):
        self.start = self.last = time.perf_counter()

    def __call__(self,
                 done: str = '',
                 starting: str = '',
                 last: bool = False) -> None:
        now = time.perf_counter()
        parts = [f'{done} in {now - self.last:.1f} s'] if done else []
        parts += [starting] if starting else []
        if last:
            parts.append(f'{now - self.start:.1f} s in all')
        print(
            f'[pytorch2onnx] {"; ".join(parts)}', file=sys.stderr, flush=True)
        self.last = now


def main(argv=None):
    """Export (and verify) the model of ``argv``."""
    args = parse_args(argv)
    stage = _Stages()
    stage(starting=f'building the model of {args.config} with '
          f'{args.checkpoint}')
    model = build_export_model(args.config, args.checkpoint)
    batch = 'B' if args.dynamic_batch else args.batch_size
    exporter = 'TorchScript' if args.torchscript else 'torch.export'
    stage(
        'built', f'exporting to {args.out} (input [{batch}, 3, '
        f'{args.shape[0]}, {args.shape[1]}], {exporter} exporter, opset '
        f'{args.opset})')
    export_onnx(
        model,
        args.out,
        shape=args.shape,
        dynamic_batch=args.dynamic_batch,
        batch_size=args.batch_size,
        opset_version=args.opset,
        dynamo=not args.torchscript)
    print(f'Exported {args.out} (input [{batch}, 3, {args.shape[0]}, '
          f'{args.shape[1]}])')
    if not args.verify:
        stage('exported', last=True)
        return
    batches = (1, 4) if args.dynamic_batch else (args.batch_size, )
    stage(
        'exported', f'verifying with ONNX Runtime at batch '
        f'{" and ".join(map(str, batches))}')
    errors = verify_onnx(model, args.out, batches, args.shape)
    stage('verified', last=True)
    for batch, error in zip(batches, errors):
        print(f'ONNX Runtime vs PyTorch, batch {batch}: max relative '
              f'difference {error:.2e}')


if __name__ == '__main__':
    main()
