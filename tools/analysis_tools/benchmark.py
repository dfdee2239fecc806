"""Speed and memory of KW models against their plain counterparts.

For every model it builds the plain MMPretrain backbone and the KW one, and
times in ONE process, interleaved round by round (plain, KW reference path,
KW fast path, ...): inference at each ``--batch`` (eval, no grad) and a
training step at ``--train-batch`` (forward, backward, SGD step). It counts
the bytes autograd saves for backward (each storage once, parameters
included: deterministic, machine-independent) and, with ``--peak-rss``, the
peak resident memory of a training step in a fresh process. Every KW figure
is also given as a ratio to the plain network, taken round by round, so it
survives a busy machine better than an absolute time. ``--detector`` adds a
Mask R-CNN KW-R50 training step with and without ``efficient_conv_bn_eval``.

Example (the first line gives the README's figures)::

    python tools/analysis_tools/benchmark.py --threads 2 --rounds 3 --detector
    python tools/analysis_tools/benchmark.py --models resnet18:1 --compile
"""
import argparse
import copy
import functools
import gc
import multiprocessing
import resource
import statistics
import time
from typing import Callable, Dict

import numpy as np
import torch
import torch.nn as nn
from mmpretrain.models import ConvNeXt, MobileNetV2, ResNet

import mmkw
from mmkw.cnn import kw_conv_implementation
from mmkw.models import KWConvNeXt, KWMobileNetV2, KWResNet
from mmkw.utils import saved_tensor_bytes

__all__ = ['MODELS', 'measure', 'main']

#: name -> (plain builder, KW builder taking the budget)
MODELS: Dict[str, tuple] = {
    'resnet18': (lambda: ResNet(depth=18),
                 lambda b: KWResNet(depth=18, budget=b)),
    'resnet50': (lambda: ResNet(depth=50),
                 lambda b: KWResNet(depth=50, budget=b)),
    'mobilenet-v2': (lambda: MobileNetV2(),
                     lambda b: KWMobileNetV2(budget=b)),
    'convnext-t': (lambda: ConvNeXt(arch='tiny'),
                   lambda b: KWConvNeXt(arch='tiny', budget=b)),
}
DEFAULT_MODELS = ['resnet18:1', 'resnet18:4', 'resnet50:1', 'resnet50:4',
                  'mobilenet-v2:1', 'convnext-t:1']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--models', nargs='+', default=DEFAULT_MODELS,
        help=f'NAME[:BUDGET] with NAME in {sorted(MODELS)} (budget 1 if '
        'omitted)')
    parser.add_argument('--batch', type=int, nargs='+', default=[1, 8],
                        help='inference batch sizes')
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=5,
                        help='timed rounds (after one warm-up round)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--skip', nargs='*', default=[],
                        choices=['inference', 'train', 'saved'],
                        help='figures to leave out')
    parser.add_argument('--compile', action='store_true',
                        help='also time torch.compile of plain and KW fast')
    parser.add_argument('--peak-rss', action='store_true',
                        help='peak RSS of a training step, each variant in '
                        'a fresh process')
    parser.add_argument('--detector', action='store_true',
                        help='Mask R-CNN KW-R50 training step with and '
                        'without efficient_conv_bn_eval')
    parser.add_argument('--det-size', type=int, default=512)
    args = parser.parse_args(argv)
    specs = []
    for spec in args.models:
        name, _, budget = spec.partition(':')
        if name not in MODELS:
            parser.error(f'unknown model {name!r}; choose from '
                         f'{sorted(MODELS)}')
        try:
            specs.append((name, float(budget or 1)))
        except ValueError:
            parser.error(f'budget of {spec!r} must be a number')
    args.models = specs
    return args


class Variant:
    """A model run one way: plain, KW reference, KW fast (maybe compiled)."""

    def __init__(self, label: str, model: nn.Module, implementation=None,
                 compiled: bool = False):
        self.label = label
        self.model = model
        self.implementation = implementation
        self.forward = torch.compile(model) if compiled else model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

    def run(self, fn):
        if self.implementation is None:
            return fn()
        with kw_conv_implementation(self.implementation):
            return fn()

    def infer(self, inputs):
        self.model.eval()
        with torch.no_grad():
            self.run(lambda: self.forward(inputs))

    def loss(self, inputs):
        self.model.train()
        return sum(o.float().mean() for o in self.forward(inputs))

    def train_step(self, inputs):

        def step():
            self.optimizer.zero_grad(set_to_none=True)
            self.loss(inputs).backward()
            self.optimizer.step()

        self.run(step)

    def saved(self, inputs) -> int:
        return self.run(lambda: saved_tensor_bytes(lambda: self.loss(inputs)))


def measure(runs: Dict[str, Callable[[], None]],
            rounds: int) -> Dict[str, list]:
    """Seconds of each ``runs[label]()``, interleaved by round after one
    warm-up round."""
    times = {label: [] for label in runs}
    for r in range(rounds + 1):
        for label, run in runs.items():
            gc.collect()
            start = time.perf_counter()
            run()
            if r:
                times[label].append(time.perf_counter() - start)
    return times


def _summary(times, base):
    med = statistics.median(times)
    ratios = [t / b for t, b in zip(times, base)]
    return (f'{med * 1e3:9.1f} ({min(times) * 1e3:.0f}-'
            f'{max(times) * 1e3:.0f})  {statistics.median(ratios):5.2f}x '
            f'({min(ratios):.2f}-{max(ratios):.2f})')


def print_times(title, times, base='plain', notes=None):
    """One row per label; ``notes`` (label -> text) ends the rows."""
    print(f'\n{title}: ms median (min-max), ratio to {base} median '
          '(min-max)')
    for label, values in times.items():
        note = '' if notes is None else f'   {notes[label]}'
        print(f'  {label:24s} {_summary(values, times[base])}{note}')


def _rss_worker(name, budget, implementation, size, batch, threads, queue):
    """``implementation`` None: the plain network."""
    if threads:
        torch.set_num_threads(threads)
    make_plain, make_kw = MODELS[name]
    torch.manual_seed(0)
    model = make_plain() if implementation is None else make_kw(budget)
    mmkw.set_temperature(model, 0.0)
    variant = Variant(str(implementation), model, implementation)
    inputs = torch.randn(batch, 3, size, size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2):
        variant.train_step(inputs)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((before, after))


def peak_rss(name, budget, implementation, args):
    """Peak RSS (MB) of a training step in a fresh process, and the RSS
    the process had before its first step."""
    ctx = multiprocessing.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_rss_worker,
        args=(name, budget, implementation, args.size, args.train_batch,
              args.threads, queue))
    proc.start()
    before, after = queue.get()
    proc.join()
    return before / 1024, after / 1024


def benchmark_model(name, budget, args):
    make_plain, make_kw = MODELS[name]
    torch.manual_seed(0)
    plain, kw = make_plain(), make_kw(budget)
    mmkw.set_temperature(kw, 0.0)  # the trained model's attention
    params = sum(p.numel() for p in plain.parameters())
    kw_params = sum(p.numel() for p in kw.parameters())
    print(f'\n=== {name} KW {budget:g}x: {kw_params:,} parameters '
          f'(plain {params:,})')
    variants = [
        Variant('plain', plain),
        Variant('KW reference', kw, 'reference'),
        Variant('KW fast', kw, 'blocked'),
    ]
    if args.compile:
        variants += [
            Variant('plain compiled', copy.deepcopy(plain), compiled=True),
            Variant('KW fast compiled', kw, 'blocked', compiled=True)
        ]
    if 'inference' not in args.skip:
        for batch in args.batch:
            inputs = torch.randn(batch, 3, args.size, args.size)
            runs = {v.label: functools.partial(v.infer, inputs)
                    for v in variants}
            print_times(f'inference, batch {batch}',
                        measure(runs, args.rounds))
    inputs = torch.randn(args.train_batch, 3, args.size, args.size)
    if 'train' not in args.skip:
        runs = {v.label: functools.partial(v.train_step, inputs)
                for v in variants}
        print_times(f'training step, batch {args.train_batch}',
                    measure(runs, args.rounds))
    if 'saved' not in args.skip:
        print(f'\nsaved for backward, batch {args.train_batch}: MB, ratio '
              'to plain')
        base = variants[0].saved(inputs)
        for v in variants[:3]:
            value = v.saved(inputs)
            print(f'  {v.label:22s} {value / 2**20:9.1f}  '
                  f'{value / base:5.2f}x')
    if args.peak_rss:
        print(f'\npeak RSS of a training step, batch {args.train_batch}, '
              'fresh process: MB (before the first step)')
        for v in variants[:3]:
            before, after = peak_rss(name, budget, v.implementation, args)
            print(f'  {v.label:22s} {after:9.0f} ({before:.0f})')


def benchmark_detector(args):
    """Mask R-CNN KW-R50 (the COCO config) training step, folded or not."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.testing import demo_mm_inputs

    from mmkw.engine import turn_on_efficient_conv_bn_eval
    init_default_scope('mmdet')
    cfg = Config.fromfile('configs/mask-rcnn_kw-r50_1x_coco.py')
    cfg.model.backbone.init_cfg = None  # random weights are as fast
    torch.manual_seed(0)
    models = {'unfolded': DET_MODELS.build(cfg.model)}
    models['efficient_conv_bn_eval'] = copy.deepcopy(models['unfolded'])
    turn_on_efficient_conv_bn_eval(models['efficient_conv_bn_eval'],
                                   ['backbone'])
    size = args.det_size
    packed = demo_mm_inputs(
        batch_size=2, image_shapes=[(3, size, size)] * 2, num_items=[5, 5],
        num_classes=80, with_mask=True)
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.0)
                  for k, m in models.items()}
    losses = {}

    def loss_of(label):
        model = models[label]
        model.train()
        # The same proposals and samples for both models.
        torch.manual_seed(0)
        np.random.seed(0)
        data = model.data_preprocessor(copy.deepcopy(packed), True)
        parsed, _ = model.parse_losses(model(**data, mode='loss'))
        return parsed

    def step(label):
        optimizers[label].zero_grad(set_to_none=True)
        loss = loss_of(label)
        loss.backward()
        optimizers[label].step()
        losses[label] = loss.item()

    print(f'\n=== Mask R-CNN KW-R50 1x (configs/mask-rcnn_kw-r50_1x_coco.py)'
          f', 2 images {size}x{size}, norm_eval, frozen stage 1')
    times = measure({label: functools.partial(step, label)
                     for label in models}, args.rounds)
    print_times('training step', times, base='unfolded',
                notes={k: f'loss {v:.6f}' for k, v in losses.items()})
    print('\nsaved for backward: MB, ratio to unfolded (all; activations '
          'alone)')
    first = None
    for label, model in models.items():
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        value = (saved_tensor_bytes(lambda: loss_of(label)),
                 saved_tensor_bytes(lambda: loss_of(label), exclude=weights))
        first = first or value
        print(f'  {label:24s} {value[0] / 2**20:9.1f}  '
              f'{value[0] / first[0]:5.2f}x; {value[1] / 2**20:9.1f}  '
              f'{value[1] / first[1]:5.2f}x')


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{args.size}x{args.size}, tau = 0, {args.rounds} rounds')
    for name, budget in args.models:
        benchmark_model(name, budget, args)
    if args.detector:
        benchmark_detector(args)


if __name__ == '__main__':
    main()
