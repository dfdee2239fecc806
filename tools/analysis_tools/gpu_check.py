"""Pin the KW fast path on a GPU and time KW-ResNet50 1x against ResNet50.

PyTorch alone (``mmkw.cnn`` and torchvision if installed): no MMEngine,
MMCV, MMDetection or MMPretrain. ``tools/analysis_tools/gpu_check.sh`` runs
it on a CUDA machine in a few minutes; ``--device cpu --quick`` checks the
script itself anywhere.

1. Pin: every distinct KW layer of KW-ResNet50 1x (its shape, warehouse
   and input size at ``--size``) runs the fast path
   (:func:`~mmkw.cnn.kw_conv_blocked`) in float32 and under fp16 and bf16
   autocast, with the device's block budget and with four blocks of cell
   rows, against the official formulation in float32 (TF32 off): outputs
   and the gradients of the input, attention, warehouse and folded scale,
   each as its largest error over its largest value.
2. Benchmark: ResNet50 and KW-ResNet50 1x (the official formulation and
   the fast path, temperature 0) at the paper's batch sizes, inference
   (batch 100, eval, no grad) and a training step (batch 128, SGD with
   momentum; halved until it fits), throughput and peak memory, as the
   paper's Tables 12 and 16 give them.

KW-ResNet50 1x is torchvision's ResNet50 (or the same network built here
when torchvision is absent) converted by :func:`~mmkw.cnn.convert_to_kw`
with the official warehouse assignment (:data:`OFFICIAL_R50_RULE`), which
reproduces the official plan (28,052,310 parameters).
"""
import argparse
import contextlib
import functools
import itertools
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run from a checkout, not installed
    sys.path.insert(0, str(REPO_ROOT))

import mmkw.cnn as kw  # noqa: E402  (torch only)
import mmkw.cnn.blocked as blocked  # noqa: E402

__all__ = [
    'OFFICIAL_R50_RULE', 'resnet50', 'kw_resnet50', 'pin', 'benchmark', 'main'
]

#: The official KW-ResNet50 warehouses (module paths of torchvision's
#: ResNet50): a stage's first ``conv1`` and its downsample conv draw from
#: the previous stage's warehouse; the stem, the first block's ``conv1``
#: and downsample conv, and the classifier stay plain.
OFFICIAL_R50_RULE = {
    **{
        f'layer{i}.0.{conv}': f'stage{i - 2}'
        for i in (2, 3, 4)
        for conv in ('conv1', 'downsample.0')
    },
    'layer1.0.conv[23]': 'stage0',
    'layer1.[1-9].*': 'stage0',
    **{
        f'layer{i}.*': f'stage{i - 1}'
        for i in (2, 3, 4)
    },
}
#: Parameters of the official KW-ResNet50 1x (its golden plan).
OFFICIAL_R50_KW1X_PARAMS = 28_052_310

#: ``--dtype`` name -> the autocast dtype (None: float32, no autocast).
DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
#: Largest error over largest value allowed in the pin, per dtype.
# (Measured on the CPU at batch 4, 64x64: at most 1.1e-3 in fp16, 1.0e-2 in
# bf16; a wrong kernel gives errors of order 1.)
TOLERANCE = {'fp32': 5e-4, 'fp16': 5e-3, 'bf16': 3e-2}

#: The paper's figures (one TITAN X): Table 12, frames per second at
#: batch 100; Table 16, MB per GPU (training batch 128, inference 100).
PAPER = {
    'ResNet50': dict(fps=647.0, train_mb=11084, infer_mb=1249),
    'KW-ResNet50 1x': dict(fps=265.4, train_mb=23231, infer_mb=2200),
}


# -- the networks ------------------------------------------------------------
class _Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (stride on the 3x3 conv), same names."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        width, out = planes, planes * 4
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False),
                nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class _ResNet50(nn.Module):
    """torchvision's ``resnet50()`` (same module names and parameters), for
    a machine without torchvision."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(
                zip((64, 128, 256, 512), (3, 4, 6, 3)), 1):
            layers = []
            for b in range(blocks):
                layers.append(
                    _Bottleneck(inplanes, planes,
                                2 if b == 0 and i > 1 else 1))
                inplanes = planes * 4
            self.add_module(f'layer{i}', nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f'layer{i}')(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50() -> nn.Module:
    """torchvision's ResNet50 (random weights), or the same network built
    here without torchvision."""
    try:
        import torchvision
    except ImportError:
        return _ResNet50()
    return torchvision.models.resnet50()


def kw_resnet50(budget: float = 1.0) -> nn.Module:
    """KW-ResNet50 with the official warehouses (temperature 0, as a
    trained model runs)."""
    net = resnet50()
    kw.convert_to_kw(
        net,
        budget,
        rule=OFFICIAL_R50_RULE,
        plain=['conv1'],
        attention_init=False)
    kw.set_temperature(net, 0.0)
    return net


# -- 1. the pin --------------------------------------------------------------
def layer_cases(net: nn.Module, size: int) -> List[dict]:
    """The distinct KW layers of ``net``: geometry, warehouse shape and
    input shape (at one ``size x size`` image), the first path and the
    count of each."""
    records = {id(layer): record for record, layer in kw.bound_layers(net)}
    shapes, hooks = {}, []

    def record(module, args, name):
        shapes.setdefault(name, (module, tuple(args[0].shape[1:])))

    for name, module in net.named_modules():
        if id(module) in records:
            hooks.append(
                module.register_forward_pre_hook(
                    functools.partial(record, name=name)))
    device = next(net.parameters()).device
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, size, size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    cases = {}
    for name, (module, in_shape) in shapes.items():
        record = records[id(module)]
        key = (record.geometry, tuple(record.warehouse_shape), in_shape)
        if key in cases:
            cases[key]['count'] += 1
        else:
            cases[key] = dict(
                path=name,
                geometry=record.geometry,
                warehouse_shape=tuple(record.warehouse_shape),
                in_shape=in_shape,
                count=1)
    return list(cases.values())


def _case_tensors(case: dict, batch: int, device: str, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    geometry, shape = case['geometry'], case['warehouse_shape']
    n, c_i = shape[0], shape[2]
    m = math.prod(geometry.split)
    tensors = dict(
        x=torch.randn(batch, *case['in_shape'], generator=gen),
        attention=torch.randn(batch * m, n, generator=gen) / n,
        warehouse=torch.randn(*shape, generator=gen) / c_i**0.5,
        out_scale=torch.randn(geometry.out_channels, generator=gen))
    return {k: v.to(device) for k, v in tensors.items()}


def _outputs_and_grads(fn: Callable, tensors: dict):
    leaves = {
        k: v.detach().clone().requires_grad_()
        for k, v in tensors.items()
    }
    out = fn(**leaves)
    gen = torch.Generator().manual_seed(1)
    grad = torch.randn(out.shape, generator=gen).to(out.device, out.dtype)
    grads = torch.autograd.grad(out, list(leaves.values()), grad)
    return [out] + list(grads)


@contextlib.contextmanager
def _no_tf32():
    """Full float32 products for the reference (CUDA's convolutions use
    TF32 by default)."""
    saved = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def autocast(device: str, dtype: str):
    """Autocast to ``dtype`` (a ``--dtype`` name); nothing for fp32."""
    if DTYPES[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=DTYPES[dtype])


PIN_COLUMNS = ('out', 'grad x', 'grad attention', 'grad warehouse',
               'grad scale')
#: The block budgets of the pin: the device's own, and one cutting every
#: layer into four blocks of cell rows.
BUDGETS = ('default', '4 blocks')


@contextlib.contextmanager
def _block_budget(case: dict, batch: int, dtype: str, budget: str):
    """Blocks of a quarter of the cell rows for ``budget`` '4 blocks'
    (the budget :func:`~mmkw.cnn.blocked.block_rows` divides by the bytes
    of one row)."""
    if budget == 'default':
        yield
        return
    geometry, c_o = case['geometry'], case['warehouse_shape'][1]
    itemsize = 4 if DTYPES[dtype] is None else DTYPES[dtype].itemsize
    row = batch * geometry.split[1] * math.prod(
        geometry.weight_shape[1:]) * itemsize
    saved = blocked.BLOCK_BYTES, blocked.CUDA_BLOCK_BYTES
    blocked.BLOCK_BYTES = blocked.CUDA_BLOCK_BYTES = row * max(1, c_o // 4)
    try:
        yield
    finally:
        blocked.BLOCK_BYTES, blocked.CUDA_BLOCK_BYTES = saved


def pin(net: nn.Module, device: str, dtypes: List[str], batch: int,
        size: int) -> List[dict]:
    """Fast path against the float32 reference on every distinct layer of
    ``net``; prints a table and returns its rows (``errors``: the largest
    error over the largest value of each of :data:`PIN_COLUMNS`)."""
    cases = layer_cases(net, size)
    print(f'\n1. fast path vs the float32 reference on the {len(cases)} '
          f'distinct KW layers of KW-ResNet50 1x, batch {batch}, '
          f'{size}x{size}: largest error / largest value (tolerance: ' +
          ', '.join(f'{d} {TOLERANCE[d]:g}' for d in dtypes) + ')')
    columns = ' '.join(f'{c:>14s}' for c in PIN_COLUMNS)
    print(f'  {"layer (first of count)":30s} {"dtype":5s} {"blocks":8s} '
          f'{columns}  result')
    rows = []
    for index, case in enumerate(cases):
        geometry = case['geometry']
        tensors = _case_tensors(case, batch, device, seed=index)

        def reference(x, attention, warehouse, out_scale):
            out = kw.kw_conv_reference(x, attention, warehouse, geometry)
            return out * out_scale.view(1, -1, 1, 1)

        def fast(x, attention, warehouse, out_scale):
            return kw.kw_conv_blocked(
                x, attention, warehouse, geometry, out_scale=out_scale)

        with _no_tf32():
            expected = _outputs_and_grads(reference, tensors)
        for dtype, budget in itertools.product(dtypes, BUDGETS):
            with _no_tf32(), autocast(device, dtype), _block_budget(
                    case, batch, dtype, budget):
                got = _outputs_and_grads(fast, tensors)
            errors = [((g.float() - e).abs().max() /
                       e.abs().max().clamp_min(1e-30)).item()
                      for g, e in zip(got, expected)]
            finite = all(bool(torch.isfinite(g).all()) for g in got)
            ok = finite and max(errors) <= TOLERANCE[dtype]
            label = f'{case["path"]} (x{case["count"]})'
            print(f'  {label:30s} {dtype:5s} {budget:8s} ' +
                  ' '.join(f'{e:14.2e}'
                           for e in errors) + ('  ok' if ok else '  FAIL'))
            rows.append(
                dict(
                    path=case['path'],
                    dtype=dtype,
                    budget=budget,
                    errors=dict(zip(PIN_COLUMNS, errors)),
                    ok=ok))
    failed = [r for r in rows if not r['ok']]
    names = ', '.join(f'{r["path"]} {r["dtype"]} {r["budget"]}'
                      for r in failed)
    print(f'  pin: {len(rows) - len(failed)} of {len(rows)} within '
          f'tolerance' + (f' - FAILED: {names}' if failed else ''))
    return rows


# -- 2. the benchmark --------------------------------------------------------
def synchronize(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (isinstance(
        error, RuntimeError) and 'out of memory' in str(error))


def _peak_start(device: str) -> None:
    if device == 'cuda':
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: str) -> Optional[float]:
    if device != 'cuda':
        return None
    synchronize(device)
    return torch.cuda.max_memory_allocated() / 2**20


def _timed(step: Callable[[], None], device: str, warmup: int,
           rounds: int) -> dict:
    """Median seconds of ``step`` after ``warmup`` calls, and the peak
    memory of the whole (MB, CUDA only)."""
    _peak_start(device)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(rounds):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return dict(seconds=statistics.median(times), peak_mb=_peak_mb(device))


def _inference(model, device, dtype, batch, size, warmup, rounds) -> dict:
    model.eval()
    x = torch.randn(batch, 3, size, size, device=device)

    def step():
        with torch.no_grad(), autocast(device, dtype):
            model(x)

    result = _timed(step, device, warmup, rounds)
    return dict(result, batch=batch)


def _training(model, device, dtype, batch, size, warmup, rounds) -> dict:
    """A training step (forward, cross entropy, backward, SGD with
    momentum); the batch is halved until it fits."""
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    while True:
        x = torch.randn(batch, 3, size, size, device=device)
        labels = torch.randint(0, 1000, (batch, ), device=device)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                loss = F.cross_entropy(model(x), labels)
            loss.backward()
            optimizer.step()

        try:
            result = _timed(step, device, warmup, rounds)
            break
        except RuntimeError as error:
            if not _is_oom(error) or batch == 1:
                raise
            del x, labels, error
            optimizer.zero_grad(set_to_none=True)
            batch //= 2
            progress(f'out of memory: training batch halved to {batch}')
    optimizer.zero_grad(set_to_none=True)
    return dict(result, batch=batch)


def _ratio(value, base) -> str:
    return '-' if value is None or base is None else f'{value / base:.2f}x'


def _rate(images_per_second: float) -> str:
    """Images per second, with three decimals below one (a slow CPU run of
    the quick check)."""
    decimals = 1 if images_per_second >= 1 else 3
    return f'{images_per_second:.{decimals}f}'


def _mb(value) -> str:
    return '-' if value is None else f'{value:,.0f}'


def print_table(rows: Dict[str, dict], title: str) -> None:
    """The paper-style table: throughput and peak memory, each with its
    ratio to ResNet50."""
    base = rows['ResNet50']
    print(f'\n{title}')
    infer_batch, train_batch = base['infer']['batch'], base['train']['batch']
    print(f'  {"model":28s} {"infer img/s":>11s} {"time x":>7s} '
          f'{"peak MB":>9s} {"mem x":>6s} | {"train img/s":>11s} '
          f'{"time x":>7s} {"peak MB":>9s} {"mem x":>6s} {"batch":>5s}')
    base_image = base['train']['seconds'] / base['train']['batch']
    for label, row in rows.items():
        infer, train = row['infer'], row['train']
        infer_time = infer['seconds'] / base['infer']['seconds']
        train_time = train['seconds'] / train['batch'] / base_image
        infer_mem = _ratio(infer['peak_mb'], base['infer']['peak_mb'])
        train_mem = _ratio(train['peak_mb'], base['train']['peak_mb'])
        print(f'  {label:28s} {_rate(infer["batch"] / infer["seconds"]):>11s} '
              f'{infer_time:6.2f}x {_mb(infer["peak_mb"]):>9s} '
              f'{infer_mem:>6s} | '
              f'{_rate(train["batch"] / train["seconds"]):>11s} '
              f'{train_time:6.2f}x {_mb(train["peak_mb"]):>9s} '
              f'{train_mem:>6s} {train["batch"]:5d}')
    paper, kw_paper = PAPER['ResNet50'], PAPER['KW-ResNet50 1x']
    print(f'  {"paper, 1 TITAN X (T12, T16)":28s} '
          f'{paper["fps"]:.1f} -> {kw_paper["fps"]:.1f} img/s '
          f'({paper["fps"] / kw_paper["fps"]:.2f}x time); peak MB inference '
          f'{paper["infer_mb"]:,} -> {kw_paper["infer_mb"]:,} '
          f'({kw_paper["infer_mb"] / paper["infer_mb"]:.2f}x), training '
          f'{paper["train_mb"]:,} -> {kw_paper["train_mb"]:,} '
          f'({kw_paper["train_mb"] / paper["train_mb"]:.2f}x)')
    print(f'  (inference batch {infer_batch}, training batch {train_batch} '
          'unless the row says otherwise; time x of training per image)')


def benchmark(device: str,
              dtypes: List[str],
              infer_batch: int,
              train_batch: int,
              size: int,
              warmup: int,
              rounds: int,
              deadline: Optional[float] = None) -> Dict[str, Dict[str, dict]]:
    """Inference and a training step of ResNet50 and KW-ResNet50 1x
    (official formulation and fast path), per dtype; prints a table per
    dtype and returns ``dtype -> label -> {'infer', 'train'}``. A dtype
    after the first is left out once ``deadline`` (seconds since the
    start) has passed."""
    torch.manual_seed(0)
    models = {
        'ResNet50': (resnet50(), None),
        'KW-ResNet50 1x official': (kw_resnet50(), 'reference'),
        'KW-ResNet50 1x fast': (kw_resnet50(), 'blocked'),
    }
    if device == 'cuda':
        torch.backends.cudnn.benchmark = True  # tuned in the warm-up
    results = {}
    for index, dtype in enumerate(dtypes):
        elapsed = time.perf_counter() - _START
        if index and deadline is not None and elapsed > deadline:
            print(f'\n2. left out after {elapsed:.0f} s (--time-budget '
                  f'{deadline:g} s): ' + ', '.join(dtypes[index:]))
            break
        rows = {}
        for label, (model, implementation) in models.items():
            model.to(device)
            scope = contextlib.nullcontext() if implementation is None else \
                kw.kw_conv_implementation(implementation)
            progress(f'2. {label}, {dtype}: inference at batch {infer_batch}'
                     f', training at batch {train_batch}')
            with scope:
                rows[label] = dict(
                    infer=_inference(model, device, dtype, infer_batch, size,
                                     warmup, rounds),
                    train=_training(model, device, dtype, train_batch, size,
                                    warmup, rounds))
            model.to('cpu')  # leave the memory to the next model
            if device == 'cuda':
                torch.cuda.empty_cache()
        where = 'float32' if dtype == 'fp32' else f'{dtype} autocast'
        print_table(
            rows, f'2. KW-ResNet50 1x vs ResNet50, {where}, {size}x{size}, '
            f'median of {rounds} after {warmup} warm-up; peak memory: '
            'torch.cuda.max_memory_allocated (weights included)')
        results[dtype] = rows
    return results


# -- the command line --------------------------------------------------------
_START = time.perf_counter()


def progress(message: str) -> None:
    print(
        f'[gpu_check {time.perf_counter() - _START:6.1f} s] {message}',
        file=sys.stderr,
        flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='--quick: batch 2, 32x32, one round, no warm-up, fp32 and '
        'bf16 (a check of the script itself: --device cpu --quick)')
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='tiny sizes: checks the script, measures nothing')
    parser.add_argument(
        '--skip',
        nargs='*',
        default=[],
        choices=['pin', 'benchmark'],
        help='parts to leave out')
    parser.add_argument(
        '--dtype',
        nargs='+',
        choices=list(DTYPES),
        default=None,
        help='dtypes of the pin and the benchmark (default: fp32 fp16 bf16 '
        'on cuda, fp32 bf16 on cpu)')
    parser.add_argument(
        '--infer-batch',
        type=int,
        default=None,
        help='inference batch (default 100, the paper\'s)')
    parser.add_argument(
        '--train-batch',
        type=int,
        default=None,
        help='training batch (default 128, the paper\'s; halved until it '
        'fits)')
    parser.add_argument('--pin-batch', type=int, default=None)
    parser.add_argument('--size', type=int, default=None)
    parser.add_argument('--warmup', type=int, default=None)
    parser.add_argument('--rounds', type=int, default=None)
    parser.add_argument(
        '--time-budget',
        type=float,
        default=420,
        help='seconds after which the benchmark leaves out the dtypes it '
        'has not begun (the first always runs; default: 420)')
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = dict(
        infer_batch=2 if quick else 100,
        train_batch=2 if quick else 128,
        pin_batch=2 if quick else 8,
        size=32 if quick else 224,
        warmup=0 if quick else 3,
        rounds=1 if quick else 10)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
        elif getattr(args, name) < (0 if name == 'warmup' else 1):
            parser.error(f'--{name.replace("_", "-")} must be positive')
    if args.dtype is None:
        args.dtype = ['fp32', 'fp16', 'bf16'] if args.device == 'cuda' \
            and not quick else ['fp32', 'bf16']
    if 'fp16' in args.dtype and args.device != 'cuda':
        parser.error('--dtype fp16 needs --device cuda')
    return args


def main(argv=None) -> int:
    """Run the check; returns the exit status (1 if the pin failed)."""
    global _START
    args = parse_args(argv)
    _START = time.perf_counter()
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit(
            f'error: --device cuda needs a CUDA GPU, and torch '
            f'{torch.__version__} sees none here (torch.cuda.is_available() '
            f'is False); --device cpu --quick checks the script')
    where = 'cpu' if args.device == 'cpu' else \
        f'cuda ({torch.cuda.get_device_name()})'
    print(f'torch {torch.__version__}, {where}, '
          f'{torch.get_num_threads()} CPU threads, dtypes '
          f'{" ".join(args.dtype)}')
    progress('building KW-ResNet50 1x (official warehouses)')
    net = kw_resnet50()
    params = sum(p.numel() for p in net.parameters())
    print(f'KW-ResNet50 1x: {params:,} parameters (official plan: '
          f'{OFFICIAL_R50_KW1X_PARAMS:,})')
    status = 0 if params == OFFICIAL_R50_KW1X_PARAMS else 1
    if 'pin' not in args.skip:
        progress('1. pinning the fast path to the reference')
        rows = pin(
            net.to(args.device), args.device, args.dtype, args.pin_batch,
            args.size)
        status = status or int(not all(r['ok'] for r in rows))
    del net
    if 'benchmark' not in args.skip:
        benchmark(args.device, args.dtype, args.infer_batch, args.train_batch,
                  args.size, args.warmup, args.rounds, args.time_budget)
    progress(f'done, {"all checks passed" if not status else "FAILED"}')
    return status


if __name__ == '__main__':
    sys.exit(main())
