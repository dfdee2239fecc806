r"""Speed and memory of KW models against their plain counterparts.

For every model it builds the plain MMPretrain backbone and the KW one, and
times in ONE process, interleaved round by round (plain, KW reference path,
KW fast path, ...): inference at each ``--batch`` (eval, no grad) and a
training step at ``--train-batch`` (forward, backward, SGD step). It counts
the bytes autograd saves for backward (each storage once, parameters
included: deterministic, machine-independent) and, with ``--peak-rss``, the
peak resident memory of a training step in a fresh process. Every KW figure
is also given as a ratio to the plain network, taken round by round, so it
survives a busy machine better than an absolute time. ``--detector`` adds a
Mask R-CNN KW-R50 training step with and without ``efficient_conv_bn_eval``
(with ``--dtype``, its backbone alone under autocast).

``--device cuda`` runs everything on the GPU: the timed regions are
synchronised, and the memory figure is the peak CUDA memory of a training
step (``torch.cuda.max_memory_allocated``, reset per variant) instead of
the saved bytes. ``--dtype`` runs the plain and the KW models under
autocast (``bf16`` on the CPU and CUDA, ``fp16`` on CUDA only); several
dtypes (``--dtype fp32 bf16``) are timed in the same rounds and give every
table once per dtype, each ratio to the plain network in that dtype.
``--compile`` adds ``torch.compile``d plain and KW fast variants; the
first call of each (compilation and warm-up) is timed apart and left out
of the figures. ``--plot FILE`` draws the KW / plain inference time ratio
per model and batch size, fast path and official formulation, against the
model's FLOP floor (KW FLOPs / plain FLOPs, :func:`mmkw.analysis.
count_complexity`). Progress (a line per model and measurement, with the
time elapsed) goes to stderr; the tables go to stdout.

Example (the first line gives the README's figures)::

    python tools/analysis_tools/benchmark.py --threads 2 --rounds 3 --detector
    python tools/analysis_tools/benchmark.py --models resnet18:1 --threads 2 \
        --rounds 3 --dtype fp32 bf16 --compile
    python tools/analysis_tools/benchmark.py --device cuda --batch 1 8 32 \
        --plot ratios.png
"""
import argparse
import contextlib
import copy
import functools
import gc
import multiprocessing
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
from mmpretrain.models import ConvNeXt, MobileNetV2, ResNet

import mmkw
from mmkw.cnn import kw_conv_implementation
from mmkw.models import KWConvNeXt, KWMobileNetV2, KWResNet
from mmkw.utils import saved_tensor_bytes

__all__ = ['MODELS', 'measure', 'plot_ratios', 'main']

#: name -> (plain builder, KW builder taking the budget)
#: ``--dtype`` name -> the autocast dtype (None: float32, no autocast).
DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}

MODELS: Dict[str, tuple] = {
    'resnet18':
    (lambda: ResNet(depth=18), lambda b: KWResNet(depth=18, budget=b)),
    'resnet50':
    (lambda: ResNet(depth=50), lambda b: KWResNet(depth=50, budget=b)),
    'mobilenet-v2': (lambda: MobileNetV2(), lambda b: KWMobileNetV2(budget=b)),
    'convnext-t': (lambda: ConvNeXt(arch='tiny'),
                   lambda b: KWConvNeXt(arch='tiny', budget=b)),
}
DEFAULT_MODELS = [
    'resnet18:1', 'resnet18:4', 'resnet50:1', 'resnet50:4', 'mobilenet-v2:1',
    'convnext-t:1'
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='examples:\n' + __doc__.split('::\n')[1].rstrip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--models',
        nargs='+',
        default=DEFAULT_MODELS,
        help=f'NAME[:BUDGET] with NAME in {sorted(MODELS)} (budget 1 if '
        'omitted)')
    parser.add_argument(
        '--batch',
        type=int,
        nargs='+',
        default=[1, 8],
        help='inference batch sizes')
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument(
        '--rounds',
        type=int,
        default=5,
        help='timed rounds (after one warm-up round)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument(
        '--skip',
        nargs='*',
        default=[],
        choices=['inference', 'train', 'saved'],
        help='figures to leave out')
    parser.add_argument(
        '--dtype',
        nargs='+',
        choices=list(DTYPES),
        default=['fp32'],
        help='run under autocast to this dtype (fp32: no autocast; fp16 on '
        'cuda only); several are timed in the same rounds, every table '
        'once per dtype (default: fp32)')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='also time torch.compile of plain and KW fast (compilation '
        'timed apart, left out of the figures)')
    parser.add_argument(
        '--compile-backend',
        default='inductor',
        help='the torch.compile backend of --compile (default: inductor)')
    parser.add_argument(
        '--peak-rss',
        action='store_true',
        help='peak RSS of a training step, each variant in '
        'a fresh process')
    parser.add_argument(
        '--detector',
        action='store_true',
        help='Mask R-CNN KW-R50 training step with and '
        'without efficient_conv_bn_eval')
    parser.add_argument('--det-size', type=int, default=512)
    parser.add_argument(
        '--device',
        choices=['cpu', 'cuda'],
        default='cpu',
        help='where models and inputs live (default: cpu); on cuda the '
        'memory figure is the peak CUDA memory of a training step')
    parser.add_argument(
        '--plot',
        metavar='FILE',
        help='draw the KW / plain inference time ratios (fast path and '
        'reference, per model and batch, in the first --dtype) with the '
        'FLOP floor to FILE (e.g. ratios.png)')
    args = parser.parse_args(argv)
    if args.plot and 'inference' in args.skip:
        parser.error('--plot draws the inference ratios: drop inference '
                     'from --skip')
    if args.peak_rss and args.device == 'cuda':
        parser.error('--peak-rss measures CPU memory; with --device cuda '
                     'the peak CUDA memory of a training step is reported')
    if 'fp16' in args.dtype and args.device != 'cuda':
        parser.error('--dtype fp16 needs --device cuda (CPU autocast runs '
                     'bf16)')
    args.dtype = list(dict.fromkeys(args.dtype))  # once each, in order
    if min(args.batch) < 1 or args.train_batch < 1 or args.size < 1 \
            or args.rounds < 1:
        parser.error('--batch, --train-batch, --size and --rounds must be '
                     'positive')
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


_START = time.perf_counter()


def progress(message: str) -> None:
    """A progress line on stderr, with the seconds since the start."""
    print(
        f'[benchmark {time.perf_counter() - _START:7.1f} s] {message}',
        file=sys.stderr,
        flush=True)


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously)."""
    if device == 'cuda':
        torch.cuda.synchronize()


def dtype_suffix(dtype: str) -> str:
    """What labels and titles of ``--dtype`` ``dtype`` end with (nothing
    for fp32)."""
    return '' if dtype == 'fp32' else f' {dtype}'


def autocast(device: str, dtype: str):
    """Autocast to ``dtype`` (a ``--dtype`` name) on ``device``; nothing
    for fp32."""
    if DTYPES[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=DTYPES[dtype])


@contextlib.contextmanager
def autocast_backbone(detector: nn.Module, device: str, dtype: str):
    """Run ``detector.backbone`` under :func:`autocast` (its features cast
    back to float32): mmcv's NMS and RoIAlign take no bf16 on the CPU."""
    if DTYPES[dtype] is None:
        yield
        return
    backbone = detector.backbone
    forward = backbone.forward
    # An instance's own forward (a hook may have set one) is put back.
    own = backbone.__dict__.get('forward')

    def autocast_forward(*args, **kwargs):
        with autocast(device, dtype):
            features = forward(*args, **kwargs)
        return type(features)([f.float() for f in features])

    backbone.forward = autocast_forward
    try:
        yield
    finally:
        if own is None:
            del backbone.forward  # the class's forward again
        else:
            backbone.forward = own


def compile_model(model: nn.Module, backend: str = 'inductor'):
    """``torch.compile(model)`` with static shapes (one graph per batch
    size, as in deployment) and room for a graph per batch, dtype and
    mode."""
    config = torch._dynamo.config
    for name in ('recompile_limit', 'cache_size_limit',
                 'accumulated_recompile_limit',
                 'accumulated_cache_size_limit'):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 64))
    return torch.compile(model, backend=backend, dynamic=False)


class Variant:
    """A model run one way: plain, KW reference, KW fast (maybe compiled),
    in one dtype (``--dtype`` name; autocast for all but fp32)."""

    def __init__(self,
                 label: str,
                 model: nn.Module,
                 implementation=None,
                 compiled: bool = False,
                 device: str = 'cpu',
                 dtype: str = 'fp32',
                 backend: str = 'inductor'):
        self.label = label
        self.model = model.to(device)
        self.device = device
        self.dtype = dtype
        self.implementation = implementation
        self.compiled = compiled
        self.forward = compile_model(model, backend) if compiled else model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

    def run(self, fn):
        with contextlib.ExitStack() as stack:
            if self.implementation is not None:
                stack.enter_context(
                    kw_conv_implementation(self.implementation))
            stack.enter_context(autocast(self.device, self.dtype))
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

    def peak_cuda_memory(self, inputs) -> int:
        """Peak CUDA bytes a training step allocates above what was
        allocated before it (activations, gradients, workspaces)."""
        return peak_cuda_memory(lambda: self.train_step(inputs),
                                self.optimizer)


def peak_cuda_memory(step: Callable[[], None], optimizer=None) -> int:
    """Peak of ``torch.cuda.max_memory_allocated`` during ``step()``, above
    the allocation before it; the peak statistics are reset first."""
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def measure(runs: Dict[str, Callable[[], None]],
            rounds: int,
            device: str = 'cpu',
            warmup: Optional[Dict[str, float]] = None) -> Dict[str, list]:
    """Seconds of each ``runs[label]()``, interleaved by round after one
    warm-up round; on CUDA the device is synchronised before and after
    each timed run. ``warmup``, if given, receives the seconds of each
    warm-up run (for a compiled model: compilation and a first run)."""
    times = {label: [] for label in runs}
    for r in range(rounds + 1):
        for label, run in runs.items():
            gc.collect()
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if r:
                times[label].append(time.perf_counter() - start)
            elif warmup is not None:
                warmup[label] = time.perf_counter() - start
    return times


def _ratios(times, base) -> List[float]:
    """Round-by-round ratios of ``times`` to ``base``."""
    return [t / b for t, b in zip(times, base)]


def _summary(times, base):
    med = statistics.median(times)
    ratios = _ratios(times, base)
    return (f'{med * 1e3:9.1f} ({min(times) * 1e3:.0f}-'
            f'{max(times) * 1e3:.0f})  {statistics.median(ratios):5.2f}x '
            f'({min(ratios):.2f}-{max(ratios):.2f})')


def print_times(title, times, base='plain', notes=None):
    """One row per label; ``notes`` (label -> text) ends the rows."""
    print(f'\n{title}: ms median (min-max), ratio to {base} median '
          '(min-max)')
    width = max([24] + [len(label) for label in times])
    for label, values in times.items():
        note = '' if notes is None else f'   {notes[label]}'
        print(f'  {label:{width}s} {_summary(values, times[base])}{note}')


def print_times_by_dtype(title, times, dtypes, base='plain', notes=None):
    """:func:`print_times` once per dtype, over the labels ending with its
    suffix (the rounds of all dtypes were interleaved)."""
    for dtype in dtypes:
        suffix = dtype_suffix(dtype)
        others = [dtype_suffix(d) for d in dtypes if d != dtype]
        subset = {
            label: values
            for label, values in times.items()
            if label.endswith(suffix) and not any(
                o and label.endswith(o) for o in others)
        }
        where = '' if dtype == 'fp32' else f', {dtype} autocast'
        print_times(
            title + where,
            subset,
            base + suffix,
            notes=None
            if notes is None else {label: notes[label]
                                   for label in subset})


def print_compile_times(warmup: Dict[str, float], variants) -> None:
    """The warm-up seconds of the compiled variants (left out of the
    table above it)."""
    compiled = [v.label for v in variants if v.compiled]
    if compiled:
        print(
            '  torch.compile, first call (compilation and one run, not '
            'in the figures): ' +
            ', '.join([f'{label} {warmup[label]:.1f} s'
                       for label in compiled]))


def _rss_worker(name, budget, implementation, size, batch, threads, dtype,
                queue):
    """``implementation`` None: the plain network."""
    if threads:
        torch.set_num_threads(threads)
    make_plain, make_kw = MODELS[name]
    torch.manual_seed(0)
    model = make_plain() if implementation is None else make_kw(budget)
    mmkw.set_temperature(model, 0.0)
    variant = Variant(str(implementation), model, implementation, dtype=dtype)
    inputs = torch.randn(batch, 3, size, size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2):
        variant.train_step(inputs)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((before, after))


def peak_rss(name, budget, implementation, args, dtype='fp32'):
    """Peak RSS (MB) of a training step in a fresh process, and the RSS
    the process had before its first step."""
    ctx = multiprocessing.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_rss_worker,
        args=(name, budget, implementation, args.size, args.train_batch,
              args.threads, dtype, queue))
    proc.start()
    before, after = queue.get()
    proc.join()
    return before / 1024, after / 1024


def flop_floor(plain: nn.Module, kw: nn.Module, size: int) -> float:
    """KW FLOPs / plain FLOPs on one ``3 x size x size`` image (the
    attention and kernel assembly included): the time ratio a KW model
    would reach if it ran as fast per FLOP as the plain one."""
    from mmkw.analysis import count_complexity
    shape = (3, size, size)
    return (count_complexity(kw, shape)['flops'] /
            count_complexity(plain, shape)['flops'])


def make_variants(plain: nn.Module, kw: nn.Module, args) -> List[Variant]:
    """Per ``--dtype``: plain, KW reference, KW fast and, with
    ``--compile``, plain compiled and KW fast compiled (labels end with
    :func:`dtype_suffix`)."""
    device, variants = args.device, []
    compiled = dict(compiled=True, backend=args.compile_backend)
    plain_compiled = copy.deepcopy(plain) if args.compile else None
    for dtype in args.dtype:
        suffix = dtype_suffix(dtype)
        variants += [
            Variant('plain' + suffix, plain, device=device, dtype=dtype),
            Variant(
                'KW reference' + suffix,
                kw,
                'reference',
                device=device,
                dtype=dtype),
            Variant(
                'KW fast' + suffix, kw, 'blocked', device=device, dtype=dtype),
        ]
        if args.compile:
            variants += [
                Variant(
                    'plain compiled' + suffix,
                    plain_compiled,
                    device=device,
                    dtype=dtype,
                    **compiled),
                Variant(
                    'KW fast compiled' + suffix,
                    kw,
                    'blocked',
                    device=device,
                    dtype=dtype,
                    **compiled)
            ]
    return variants


def benchmark_model(name, budget, args) -> dict:
    """Print the tables of one model and return its figures:
    ``label``, ``inference`` (batch -> label -> seconds per round; the
    labels of every dtype but fp32 end with :func:`dtype_suffix`),
    ``compile`` (``(measurement, label)`` -> seconds of the first call of
    a compiled variant) and ``flop_floor`` (None without ``--plot``)."""
    make_plain, make_kw = MODELS[name]
    title = f'{name} KW {budget:g}x'
    progress(f'{title}: building the plain and KW models')
    torch.manual_seed(0)
    plain, kw = make_plain(), make_kw(budget)
    mmkw.set_temperature(kw, 0.0)  # the trained model's attention
    params = sum(p.numel() for p in plain.parameters())
    kw_params = sum(p.numel() for p in kw.parameters())
    result = dict(label=title, inference={}, compile={}, flop_floor=None)
    if args.plot:
        progress(f'{title}: counting FLOPs at {args.size}x{args.size}')
        result['flop_floor'] = flop_floor(plain, kw, args.size)
    print(f'\n=== {title}: {kw_params:,} parameters '
          f'(plain {params:,})')
    device, dtypes = args.device, args.dtype
    variants = make_variants(plain, kw, args)
    # The eager variants of each dtype (memory is measured on these).
    eager = {
        dtype: [v for v in variants if v.dtype == dtype and not v.compiled]
        for dtype in dtypes
    }
    rounds = f'{len(variants)} variants x (1 warm-up + {args.rounds}) rounds'
    if 'inference' not in args.skip:
        for batch in args.batch:
            progress(f'{title}: timing inference at batch {batch}, {rounds}')
            inputs = torch.randn(batch, 3, args.size, args.size, device=device)
            runs = {
                v.label: functools.partial(v.infer, inputs)
                for v in variants
            }
            warmup = {}
            times = measure(runs, args.rounds, device, warmup)
            result['inference'][batch] = times
            result['compile'].update({
                (f'inference {batch}', v.label):
                warmup[v.label]
                for v in variants if v.compiled
            })
            print_times_by_dtype(f'inference, batch {batch}', times, dtypes)
            print_compile_times(warmup, variants)
    inputs = torch.randn(
        args.train_batch, 3, args.size, args.size, device=device)
    if 'train' not in args.skip:
        progress(f'{title}: timing a training step at batch '
                 f'{args.train_batch}, {rounds}')
        runs = {
            v.label: functools.partial(v.train_step, inputs)
            for v in variants
        }
        warmup = {}
        times = measure(runs, args.rounds, device, warmup)
        result['compile'].update({
            ('train', v.label): warmup[v.label]
            for v in variants if v.compiled
        })
        print_times_by_dtype(f'training step, batch {args.train_batch}', times,
                             dtypes)
        print_compile_times(warmup, variants)
    for dtype in dtypes if 'saved' not in args.skip else []:
        where = '' if dtype == 'fp32' else f', {dtype} autocast'
        if device == 'cuda':
            progress(f'{title}: peak CUDA memory of a training step at '
                     f'batch {args.train_batch}{where}')
            print(f'\npeak CUDA memory of a training step, batch '
                  f'{args.train_batch}{where}: MB above the allocation '
                  'before it, ratio to plain')
            values = [v.peak_cuda_memory(inputs) for v in eager[dtype]]
        else:
            progress(f'{title}: counting the bytes saved for backward at '
                     f'batch {args.train_batch}{where}')
            print(f'\nsaved for backward, batch {args.train_batch}{where}: '
                  'MB, ratio to plain')
            values = [v.saved(inputs) for v in eager[dtype]]
        for v, value in zip(eager[dtype], values):
            print(f'  {v.label:22s} {value / 2**20:9.1f}  '
                  f'{value / values[0]:5.2f}x')
    for dtype in dtypes if args.peak_rss else []:
        where = '' if dtype == 'fp32' else f', {dtype} autocast'
        print(f'\npeak RSS of a training step, batch {args.train_batch}'
              f'{where}, fresh process: MB (before the first step)')
        for v in eager[dtype]:
            progress(f'{title}: peak RSS of {v.label} in a fresh process')
            before, after = peak_rss(name, budget, v.implementation, args,
                                     dtype)
            print(f'  {v.label:22s} {after:9.0f} ({before:.0f})')
    return result


def plot_ratios(results: List[dict],
                out: str,
                title: Optional[str] = None,
                dtype: str = 'fp32') -> None:
    """Draw, per model, the median KW / plain inference time ratio (with
    its min-max range over the rounds) against the batch size, for the
    fast path and the official formulation, and the model's FLOP floor.

    Args:
        results (list[dict]): What :func:`benchmark_model` returns.
        out (str): The image file (any format matplotlib writes).
        title (str, optional): The figure's title.
        dtype (str): The ``--dtype`` drawn. Defaults to fp32.
    """
    suffix = dtype_suffix(dtype)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1,
        len(results),
        figsize=(3.6 * len(results) + 0.6, 3.6),
        squeeze=False)
    for ax, result in zip(axes[0], results):
        batches = sorted(result['inference'])
        xs = range(len(batches))
        for label, name, style in (('KW fast', 'fast path', 'o-'),
                                   ('KW reference', 'reference', 's--')):
            ratios = [
                _ratios(result['inference'][b][label + suffix],
                        result['inference'][b]['plain' + suffix])
                for b in batches
            ]
            med = [statistics.median(r) for r in ratios]
            err = [[m - min(r) for m, r in zip(med, ratios)],
                   [max(r) - m for m, r in zip(med, ratios)]]
            ax.errorbar(xs, med, yerr=err, fmt=style, capsize=3, label=name)
        floor = result['flop_floor']
        if floor is not None:
            ax.axhline(
                floor,
                color='grey',
                linestyle=':',
                label=f'FLOP floor {floor:.2f}x')
        ax.axhline(1.0, color='black', linewidth=0.5)
        ax.set_xticks(list(xs), [str(b) for b in batches])
        ax.set_xlabel('inference batch')
        ax.set_title(result['label'] + suffix)
        ax.set_ylim(bottom=0)
        ax.grid(axis='y', alpha=0.3)
        ax.legend(fontsize='small')
    axes[0][0].set_ylabel('KW / plain time')
    if title:
        fig.suptitle(title, fontsize='medium')
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def benchmark_detector(args):
    """Mask R-CNN KW-R50 (the COCO config) training step, folded or not;
    under ``--dtype`` other than fp32, the backbone runs under autocast
    (:func:`autocast_backbone`)."""
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmkw.engine import turn_on_efficient_conv_bn_eval
    init_default_scope('mmdet')
    cfg = Config.fromfile('configs/mask-rcnn_kw-r50_1x_coco.py')
    cfg.model.backbone.init_cfg = None  # random weights are as fast
    progress('Mask R-CNN: building the detector')
    torch.manual_seed(0)
    models = {'unfolded': DET_MODELS.build(cfg.model).to(args.device)}
    models['efficient_conv_bn_eval'] = copy.deepcopy(models['unfolded'])
    turn_on_efficient_conv_bn_eval(models['efficient_conv_bn_eval'],
                                   ['backbone'])
    size = args.det_size
    packed = demo_mm_inputs(
        batch_size=2,
        image_shapes=[(3, size, size)] * 2,
        num_items=[5, 5],
        num_classes=80,
        with_mask=True)
    optimizers = {
        k: torch.optim.SGD(m.parameters(), lr=0.0)
        for k, m in models.items()
    }
    losses = {}
    dtypes = args.dtype

    def loss_of(label, dtype='fp32'):
        model = models[label]
        model.train()
        # The same proposals and samples for both models.
        torch.manual_seed(0)
        np.random.seed(0)
        data = model.data_preprocessor(copy.deepcopy(packed), True)
        with autocast_backbone(model, args.device, dtype):
            parsed, _ = model.parse_losses(model(**data, mode='loss'))
        return parsed

    def step(label, dtype='fp32'):
        optimizers[label].zero_grad(set_to_none=True)
        loss = loss_of(label, dtype)
        loss.backward()
        optimizers[label].step()
        losses[label + dtype_suffix(dtype)] = loss.item()

    print(f'\n=== Mask R-CNN KW-R50 1x (configs/mask-rcnn_kw-r50_1x_coco.py)'
          f', 2 images {size}x{size}, norm_eval, frozen stage 1')
    progress(f'Mask R-CNN: timing a training step, '
             f'{len(models) * len(dtypes)} variants '
             f'x (1 warm-up + {args.rounds}) rounds')
    times = measure(
        {
            label + dtype_suffix(dtype): functools.partial(step, label, dtype)
            for dtype in dtypes
            for label in models
        }, args.rounds, args.device)
    notes = {k: f'loss {v:.6f}' for k, v in losses.items()}
    print_times_by_dtype('training step', times, dtypes, 'unfolded', notes)
    for dtype in dtypes:
        where = '' if dtype == 'fp32' else f', {dtype} autocast'
        suffix = dtype_suffix(dtype)
        if args.device == 'cuda':
            progress(f'Mask R-CNN: peak CUDA memory of a training step'
                     f'{where}')
            print(f'\npeak CUDA memory of a training step{where}: MB above '
                  'the allocation before it, ratio to unfolded')
            values = {
                label:
                peak_cuda_memory(
                    functools.partial(step, label, dtype), optimizers[label])
                for label in models
            }
            first = values['unfolded']
            for label, value in values.items():
                print(f'  {label + suffix:{24 + len(suffix)}s} '
                      f'{value / 2**20:9.1f}  {value / first:5.2f}x')
            continue
        progress(f'Mask R-CNN: counting the bytes saved for backward{where}')
        print(f'\nsaved for backward{where}: MB, ratio to unfolded (all; '
              'activations alone)')
        first = None
        for label, model in models.items():
            weights = {
                p.untyped_storage().data_ptr()
                for p in model.parameters()
            }
            loss = functools.partial(loss_of, label, dtype)
            value = (saved_tensor_bytes(loss),
                     saved_tensor_bytes(loss, exclude=weights))
            first = first or value
            print(f'  {label + suffix:{24 + len(suffix)}s} '
                  f'{value[0] / 2**20:9.1f}  '
                  f'{value[0] / first[0]:5.2f}x; {value[1] / 2**20:9.1f}  '
                  f'{value[1] / first[1]:5.2f}x')


def main(argv=None):
    """Run the benchmark of ``argv``; returns what :func:`benchmark_model`
    returns per model."""
    global _START
    args = parse_args(argv)
    _START = time.perf_counter()
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit(
            f'error: --device cuda needs a CUDA device, and torch '
            f'{torch.__version__} sees none here '
            f'(torch.cuda.is_available() is False); use --device cpu')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ('cpu' if args.device == 'cpu' else
              f'cuda ({torch.cuda.get_device_name()})')
    header = (
        f'torch {torch.__version__}, {device}, '
        f'{torch.get_num_threads()} threads, {args.size}x{args.size}, '
        f'tau = 0, {args.rounds} rounds, dtype '
        f'{" + ".join(args.dtype)}' +
        (f', compiled with {args.compile_backend}' if args.compile else ''))
    print(header)
    results = [
        benchmark_model(name, budget, args) for name, budget in args.models
    ]
    if args.detector:
        benchmark_detector(args)
    if args.plot:
        plot_ratios(results, args.plot, title=header, dtype=args.dtype[0])
        print(f'\nplot of the KW / plain inference ratios: {args.plot}')
    progress('done')
    return results


if __name__ == '__main__':
    main()
