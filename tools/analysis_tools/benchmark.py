"""Time KW backbones against their plain counterparts in one process.

Every figure is a ratio against the plain network measured in the same run
(same threads, input and load), so it survives a busy machine better than an
absolute time. Example::

    python tools/analysis_tools/benchmark.py --models resnet18 resnet50 \
        --budget 1 --batch 8 --size 224 --threads 2
"""
import argparse
import statistics
import time

import torch
from mmpretrain.models import MobileNetV2, ResNet

import mmkw  # noqa: F401  (registers the KW backbones)
from mmkw.models import KWMobileNetV2, KWResNet

__all__ = ['PAIRS', 'time_model', 'main']

PAIRS = {
    'resnet18': (lambda: ResNet(depth=18),
                 lambda b: KWResNet(depth=18, budget=b)),
    'resnet50': (lambda: ResNet(depth=50),
                 lambda b: KWResNet(depth=50, budget=b)),
    'mobilenet-v2': (lambda: MobileNetV2(),
                     lambda b: KWMobileNetV2(budget=b)),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--models', nargs='+', default=['resnet18', 'resnet50'],
        choices=sorted(PAIRS))
    parser.add_argument('--budget', type=float, default=1.0)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--iters', type=int, default=5,
                        help='timed iterations (after 2 warm-up ones)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument(
        '--mode', choices=['eval', 'train'], default='eval',
        help='eval: forward under no_grad; train: forward + backward')
    return parser.parse_args()


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def time_model(model, inputs, iters: int, mode: str) -> float:
    """Median seconds of one step."""
    model.train(mode == 'train')
    times = []
    for i in range(iters + 2):
        start = time.perf_counter()
        if mode == 'eval':
            with torch.no_grad():
                model(inputs)
        else:
            out = model(inputs)
            sum(o.float().mean() for o in out).backward()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    inputs = torch.randn(args.batch, 3, args.size, args.size)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'batch {args.batch}, {args.size}x{args.size}, {args.mode}, '
          f'budget {args.budget:g}')
    header = f'{"model":14s} {"plain ms":>9s} {"KW ms":>9s} {"KW/plain":>9s}' \
             f' {"plain params":>13s} {"KW params":>11s}'
    print(header)
    print('-' * len(header))
    for name in args.models:
        make_plain, make_kw = PAIRS[name]
        torch.manual_seed(0)
        plain, kw = make_plain(), make_kw(args.budget)
        mmkw.set_temperature(kw, 0.0)
        t_plain = time_model(plain, inputs, args.iters, args.mode)
        t_kw = time_model(kw, inputs, args.iters, args.mode)
        print(f'{name:14s} {t_plain * 1e3:9.1f} {t_kw * 1e3:9.1f} '
              f'{t_kw / t_plain:8.2f}x {params(plain):13,d} '
              f'{params(kw):11,d}')


if __name__ == '__main__':
    main()
