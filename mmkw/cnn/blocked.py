"""The fast KW convolution: kernels assembled in row blocks.

The reference formulation (:func:`~mmkw.cnn.kw_conv_reference`) assembles
the kernels of the whole batch at once (75 MB for one 3x3 512->512 layer at
batch 8), lays them out again for a grouped convolution with ``groups = B``
and lets autograd keep them for backward. Here the warehouse is cut into
blocks of cell rows (output channels): each block's per-sample kernels are
mixed, used and dropped, and the backward recomputes them instead of
keeping them, so only the input and the attention are saved (kernels at
most half the size of the input, as in depthwise layers, are kept: cheaper
than mixing them again).

A call is planned once per input and layer shape (:class:`BlockPlan`, a
cached record of ints) and run by one of two engines, each convolving a
block with its per-sample kernels (:class:`GemmEngine`,
:class:`ConvEngine`); mixing the kernels from the warehouse cells, and its
adjoint, is the same for both (:func:`mixed`, :func:`to_kernels`,
:func:`to_mixed`; in float32 on the CPU the mixing products run through
mmkw's compiled kernel where it is built, else oneDNN, :func:`_matmul`):

- ``gemm`` (1x1 kernels without padding or groups): the input as a
  ``[B, C_in, L]`` matrix (a strided view) and one batched matrix product;
- ``conv`` (every other layer): the official grouped convolution over the
  batch folded into the channels. (An ``unfold`` + matrix product variant
  was measured slower for every 3x3 ResNet shape at batch 1 and 8.)

The block budget depends on the device (:func:`block_bytes_for`). On the
CPU the blocks serve the caches: :data:`BLOCK_BYTES` (32 MB, about the L3
cache) was measured best between 32 and 64 MB at batch 8, and the block
intermediates live in reusable scratch buffers (fresh pages cost more than
the arithmetic). On CUDA memory is the constraint instead: the per-sample
kernels of one 3x3 512->512 layer take 1.2 GB in float32 at the paper's
batch 128, and the backward holds about four block-sized intermediates;
a larger fixed budget (:data:`CUDA_BLOCK_BYTES`) keeps that peak near 1 GB
with few blocks (fewer, larger kernels) and no dependence on the memory
free at the time; the caching allocator reuses the memory, so no scratch
workspace is used there.

An optional per-output-channel ``out_scale`` (a frozen BatchNorm folded into
the convolution, :mod:`mmkw.engine.efficient_conv_bn`) multiplies the output
channels, which equals scaling the kernel rows; its gradient comes from the
kernel gradient, so the unscaled output is never kept.
"""
import abc
import contextlib
import functools
import math
import threading
import weakref
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch.autograd.function import once_differentiable

from . import native
from .geometry import ConvGeometry, conv_function

__all__ = ['kw_conv_blocked', 'choose_engine', 'block_rows', 'block_bytes_for']

#: Bytes of per-sample kernels assembled at once (one block of cell rows) on
#: the CPU; measured best between 32 and 64 MB for ResNet18/50 at batch 8.
BLOCK_BYTES = 32 << 20
#: The same on CUDA (and other non-CPU devices), where the blocks bound the
#: memory of the kernels rather than fit a cache (see the module doc).
CUDA_BLOCK_BYTES = 256 << 20
#: Smaller intermediates are allocated afresh (cheap below the mmap size).
SCRATCH_MIN_NUMEL = 1 << 15
#: Kernels kept for backward when the input is this many times larger.
KEEP_KERNELS_RATIO = 2


class _Workspace(threading.local):
    """Scratch buffers reused across blocks and calls (one set per thread).

    A block's intermediates take up to :data:`BLOCK_BYTES` each; allocating
    them afresh for every block costs page faults that take longer than the
    arithmetic (the largest single cost of the reference path). The
    buffers never leave :class:`BlockedKWConv` (nothing returned or saved
    aliases them).
    """

    def __init__(self):
        self.buffers = {}
        self.gradients = []  # pooled gradient buffers, least recent first


_workspace = _Workspace()

#: Returned warehouse gradients of at least this many elements come from
#: :func:`_gradient_buffer` (on the CPU).
GRADIENT_POOL_MIN_NUMEL = 1 << 20
#: Bytes the pooled gradient buffers may take together (per thread; 0:
#: always a fresh tensor). The least recently used free buffers go first.
GRADIENT_POOL_BYTES = 256 << 20
#: The storage's reference count (a private API; without it, no pool).
_storage_use_count = getattr(torch._C, '_storage_Use_Count', None)


def _gradient_buffer(shape,
                     like: torch.Tensor,
                     dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """An uninitialised ``shape`` tensor on ``like``'s device, in ``dtype``
    (default ``like``'s), to return as a warehouse gradient.

    Every KW layer returns a gradient of its whole warehouse (tens of MB in
    ResNet50's last stages), which autograd adds up over the layers and
    then frees; a fresh allocation that large costs more in page faults
    than the product that fills it. So on the CPU these come from a small
    pool of buffers (at most :data:`GRADIENT_POOL_BYTES`): a buffer is
    handed out again only once nothing but the pool holds its storage
    (autograd, ``param.grad`` and any view hold it while they live). The
    tensor returned is a separate alias (its own version counter, not a
    view), as a fresh one would be. (Autograd sums the layers' gradients
    into one fresh tensor per warehouse and step: it adds in place only
    into a storage nobody else holds.)
    """
    dtype = like.dtype if dtype is None else dtype
    numel = math.prod(shape)
    if numel < GRADIENT_POOL_MIN_NUMEL or like.device.type != 'cpu' \
            or _storage_use_count is None or torch.compiler.is_compiling():
        return like.new_empty(shape, dtype=dtype)
    pool = _workspace.gradients
    shape = tuple(shape)
    free = [
        _storage_use_count(buffer.untyped_storage()._cdata) == 2
        for buffer in pool  # held by the pool and the temporary storage
    ]
    for i, buffer in enumerate(pool):
        if free[i] and buffer.shape == shape and buffer.dtype == dtype:
            pool.append(pool.pop(i))
            break
    else:
        buffer = like.new_empty(shape, dtype=dtype)
        used = buffer.nbytes + sum([b.nbytes for b in pool])
        kept = []
        for held, is_free in zip(pool, free):  # least recently used first
            if is_free and used > GRADIENT_POOL_BYTES:
                used -= held.nbytes  # dropped: freed once unreferenced
            else:
                kept.append(held)
        pool[:] = kept
        if used > GRADIENT_POOL_BYTES:
            return buffer
        pool.append(buffer)
    return like.new_empty(0).set_(buffer.untyped_storage(), 0, shape)


def _scratch(name: str, shape, like: torch.Tensor) -> torch.Tensor:
    """A contiguous ``shape`` buffer of ``like``'s dtype and device, reused
    across calls on CPU (elsewhere, and under ``torch.compile``, a fresh
    tensor: the CUDA caching allocator already reuses memory)."""
    numel = math.prod(shape)
    if numel < SCRATCH_MIN_NUMEL or like.device.type != 'cpu' or \
            torch.compiler.is_compiling():
        return like.new_empty(shape)
    key = (name, like.device, like.dtype)
    flat = _workspace.buffers.get(key)
    if flat is None or flat.numel() < numel:
        flat = like.new_empty(numel)
        _workspace.buffers[key] = flat
    return flat[:numel].view(shape)


def block_bytes_for(device) -> int:
    """The block budget on ``device``: :data:`BLOCK_BYTES` on the CPU,
    :data:`CUDA_BLOCK_BYTES` elsewhere (see the module doc)."""
    if torch.device(device).type == 'cpu':
        return BLOCK_BYTES
    return CUDA_BLOCK_BYTES


def choose_engine(weight_shape: Sequence[int], padding, groups: int) -> str:
    """``'gemm'`` for 1x1 kernels without padding or groups, else
    ``'conv'`` (see the module doc)."""
    pointwise = all([k == 1 for k in weight_shape[2:]]) and not any(padding)
    return 'gemm' if pointwise and groups == 1 else 'conv'


def block_rows(batch: int,
               weight_shape: Sequence[int],
               split,
               c_o: int,
               groups: int,
               itemsize: int = 4,
               block_bytes: Optional[int] = None) -> int:
    """Cell rows assembled per block so that a block's kernels stay within
    ``block_bytes`` (default :data:`BLOCK_BYTES`)."""
    if groups != 1:
        return c_o  # output channels of one conv group must stay together
    block_bytes = BLOCK_BYTES if block_bytes is None else block_bytes
    per_row = batch * split[1] * math.prod(weight_shape[1:]) * itemsize
    return max(1, min(c_o, block_bytes // max(per_row, 1)))


# -- the plan of one call ---------------------------------------------------
@dataclass(frozen=True)
class BlockPlan:
    """The shapes of one call, shared by forward and backward (pure ints,
    cached per input shape and layer geometry by :func:`_plan`).

    Args:
        conv (ConvGeometry): The layer's geometry.
        engine (Engine): The engine convolving the blocks.
        dtype (torch.dtype): The dtype the products run in (autocast's, if
            on).
        batch (int): Samples.
        in_spatial, out_spatial (tuple[int]): Spatial input, output size.
        num_cells, c_o, c_i (int): Warehouse cells and their shape.
        rows (int): Cell rows per block.
        blocks (tuple[tuple[int, int]]): ``(first, end)`` cell rows of each
            block.
        keep_kernels (bool): Whether backward reuses the forward's kernels.
    """
    conv: ConvGeometry
    engine: 'Engine'
    dtype: torch.dtype
    batch: int
    in_spatial: Tuple[int, ...]
    out_spatial: Tuple[int, ...]
    num_cells: int
    c_o: int
    c_i: int
    rows: int
    blocks: Tuple[Tuple[int, int], ...]
    keep_kernels: bool

    @classmethod
    def build(cls, x_shape, dtype, warehouse_shape, conv: ConvGeometry,
              engine: Optional[str], block_bytes: int) -> 'BlockPlan':
        batch = x_shape[0]
        in_spatial = tuple(x_shape[2:])
        num_cells, c_o, c_i = warehouse_shape[:3]
        rows = block_rows(batch, conv.weight_shape, conv.split, c_o,
                          conv.groups, dtype.itemsize, block_bytes)
        # Per-sample kernels at most 1 / KEEP_KERNELS_RATIO of the input are
        # kept for backward (mixing them again costs more than they weigh).
        kernels = batch * math.prod(conv.weight_shape)
        keep = rows == c_o and (kernels * KEEP_KERNELS_RATIO
                                <= math.prod(x_shape))
        name = engine or choose_engine(conv.weight_shape, conv.padding,
                                       conv.groups)
        return cls(
            conv=conv,
            engine=ENGINES[name],
            dtype=dtype,
            batch=batch,
            in_spatial=in_spatial,
            out_spatial=tuple(conv.output_size(in_spatial)),
            num_cells=num_cells,
            c_o=c_o,
            c_i=c_i,
            rows=rows,
            blocks=tuple([(r0, min(c_o, r0 + rows))
                          for r0 in range(0, c_o, rows)]),
            keep_kernels=keep)


@functools.lru_cache(maxsize=4096)
def _cached_plan(*args) -> BlockPlan:
    return BlockPlan.build(*args)


def _plan(x: torch.Tensor, dtype, warehouse_shape, conv: ConvGeometry,
          engine: Optional[str]) -> BlockPlan:
    args = (tuple(x.shape), dtype, tuple(warehouse_shape), conv, engine,
            block_bytes_for(x.device))
    if torch.compiler.is_compiling():
        return BlockPlan.build(*args)
    return _cached_plan(*args)


# -- the mixing products ----------------------------------------------------
#: oneDNN's inner product (``None`` in builds without oneDNN).
_ONEDNN = getattr(torch.ops.mkldnn, '_linear_pointwise', None) \
    if torch.backends.mkldnn.is_available() else None


def _onednn(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether :func:`_matmul` can run oneDNN for ``a @ b``: float32 on the
    CPU, eager, ``b`` contiguous or transposed (other strides, as a block of
    cell rows, fall to a reference implementation a thousand times
    slower)."""
    return (a.dtype == torch.float32 and a.device.type == 'cpu'
            and _ONEDNN is not None and not torch.compiler.is_compiling()
            and (b.is_contiguous() or b.t().is_contiguous()))


#: Whether the CPU mixing products (float32, or bf16 under autocast) may
#: use mmkw's compiled kernel (:mod:`~mmkw.cnn.native`) where it is built;
#: tests pin both ways.
NATIVE = True


def _native_ok(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether :func:`_matmul` runs mmkw's compiled kernel for ``a @ b``:
    float32 or bf16 on a CPU it runs on, eager, the rows of ``b``
    contiguous."""
    return (NATIVE and a.device.type == 'cpu' and b.dtype == a.dtype
            and native.available(a.dtype)
            and not torch.compiler.is_compiling()
            and (b.stride(1) == 1 or b.shape[1] == 1))


#: Whether oneDNN runs bf16 / fp16 products on this CPU (AVX512_BF16,
#: AVX512_FP16 or AMX); without it PyTorch's half-precision ``mm`` falls to
#: a reference loop.
_HALF_PRODUCTS = {
    torch.bfloat16:
    torch.backends.mkldnn.is_available()
    and torch.ops.mkldnn._is_mkldnn_bf16_supported(),
    torch.float16:
    torch.backends.mkldnn.is_available()
    and torch.ops.mkldnn._is_mkldnn_fp16_supported(),
}


def _products_upcast(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the mixing products of ``dtype`` operands on ``device`` run
    in float32 instead: half precision on a CPU where neither mmkw's
    compiled kernel nor oneDNN runs it, where PyTorch's bf16 ``mm`` is a
    reference loop (50x slower than float32 for a ResNet50 mixing product
    on an AVX2 EPYC, 2 threads). The sums are then float32, as in the
    compiled kernel, and the warehouse is read in float32
    (:func:`_cast_warehouse`)."""
    return (dtype in _HALF_PRODUCTS and device.type == 'cpu'
            and not _HALF_PRODUCTS[dtype]
            and not (NATIVE and native.available(dtype)))


def _upcast(a: torch.Tensor) -> bool:
    """:func:`_products_upcast` for a product with ``a``."""
    return _products_upcast(a.dtype, a.device)


def _cell_gradient(shape, attention: torch.Tensor,
                   operand: torch.Tensor) -> torch.Tensor:
    """A buffer for the gradient of the cells (``attention.t() @ ...``,
    the other operand like ``operand``): float32 where the bf16 products
    are summed in float32 (by the compiled kernel, or upcast,
    :func:`_upcast`; the warehouse is float32: a bf16 gradient would be
    rounded and cast back), else in the products' dtype."""
    if (operand.dtype == torch.bfloat16
            and _native_ok(attention, operand)) or _upcast(attention):
        return _gradient_buffer(shape, operand, torch.float32)
    return _gradient_buffer(shape, operand)


def _matmul(a: torch.Tensor, b: torch.Tensor, name=None, out=None):
    """``a @ b`` for the mixing products (few rows, a short or long inner
    dimension), into ``out`` if given (a view of rows may be strided), else
    into a scratch buffer named ``name`` if given, else a fresh tensor.

    In float32 on the CPU the products run through mmkw's compiled kernel
    (:mod:`~mmkw.cnn.native`) when it is built and ``b``'s rows are
    contiguous, else through oneDNN's inner product: MKL's ``mm`` ran the
    ResNet50 mixing products at half of oneDNN's rate (a third at batch 1,
    where ``a`` has 4-9 rows; AMD EPYC, 2 threads). A product into ``out``
    (the cell gradient: many rows, a short inner dimension) runs through
    ``torch.mm``, which writes ``out`` in place: oneDNN's fresh result and
    its copy took 1.1-2.7x as long (tens of MB, fresh pages; AVX2 EPYC, 2
    threads). In bf16 they run
    through the compiled kernel where the CPU has AVX512_BF16 (``out`` may
    then be float32), and in float32 where the CPU has no half-precision
    products at all (:func:`_upcast`). Otherwise ``torch.mm``.
    """
    shape = (a.shape[0], b.shape[1])
    if _upcast(a):
        a32, b32 = a.float(), b.float()
        if out is None:
            return _matmul(a32, b32).to(a.dtype)
        if out.dtype == torch.float32:  # a cell gradient (_cell_gradient)
            return _matmul(a32, b32, out=out)
        return out.copy_(_matmul(a32, b32))
    if _native_ok(a, b):
        if out is None:
            out = a.new_empty(shape) if name is None else _scratch(
                name, shape, a)
        return native.mix(a.contiguous(), b, out)
    if out is None and _onednn(a, b):
        return _ONEDNN(a.contiguous(), b.t(), None, 'none', [], '')
    if out is None and name is not None:
        out = _scratch(name, shape, a)
    return torch.mm(a, b) if out is None else torch.mm(a, b, out=out)


# -- kernels of one block of cell rows (the same for every engine) ----------
def cell_block(plan: BlockPlan, cells, r0, r1):
    """``[n, rows*c_i]``: rows r0:r1 of every cell, a view (row-strided
    unless the block is every row). The compiled kernel reads its rows in
    place, and ``torch.mm`` takes the strides; a contiguous copy for
    oneDNN cost more than it saved (KW-ResNet50 1x, batch 8, AVX2 EPYC)."""
    return cells[:, r0:r1].reshape(plan.num_cells, -1)


def mixed(plan: BlockPlan, attention, block):
    """``[B*m, rows*c_i]``: every mixture's rows of its cell, from the
    cells' ``block`` of rows (:func:`cell_block`)."""
    return _matmul(attention, block, 'mixed')


def to_kernels(plan: BlockPlan, mixed, r0, r1):
    """Mixtures -> ``[B, G_o*rows, C_in/g * prod(k)]`` (conv layout)."""
    g_s, g_o, g_i = plan.conv.split
    rows = r1 - r0
    view = mixed.view(plan.batch, g_s, g_o, g_i, rows,
                      plan.c_i).permute(0, 2, 4, 3, 5, 1)
    shape = (plan.batch, g_o * rows, g_i * plan.c_i * g_s)
    if view.is_contiguous():
        return view.reshape(shape)
    kernels = _scratch('kernels', view.shape, mixed)
    return kernels.copy_(view).view(shape)


def to_mixed(plan: BlockPlan, kernels, r0, r1, scale=None):
    """Adjoint of :func:`to_kernels`, the rows multiplied by ``scale`` on
    the way if given (``kernels`` may be overwritten)."""
    g_s, g_o, g_i = plan.conv.split
    rows = r1 - r0
    view = kernels.view(plan.batch, g_o, rows, g_i, plan.c_i,
                        g_s).permute(0, 5, 1, 3, 2, 4)
    shape = (plan.batch * g_s * g_o * g_i, rows * plan.c_i)
    factor = None if scale is None else scale.view(
        g_o, plan.c_o)[:, r0:r1].reshape(1, 1, g_o, 1, rows, 1)
    if view.is_contiguous():
        return (view if factor is None else view.mul_(factor)).reshape(shape)
    grad_mixed = _scratch('grad_mixed', view.shape, kernels)
    if factor is None:
        grad_mixed.copy_(view)
    else:
        torch.mul(view, factor, out=grad_mixed)
    return grad_mixed.view(shape)


def _out_rows(plan: BlockPlan, tensor, r0, r1):
    """Output channels of rows r0:r1 of every output group."""
    return tensor.view(plan.batch, plan.conv.split[1], plan.c_o, -1)[:, :,
                                                                     r0:r1]


def _grad_rows(plan: BlockPlan, grad, r0, r1, name):
    """``[B, G_o*rows, L]``: the output gradient of one block."""
    block = _out_rows(plan, grad, r0, r1)
    if not block.is_contiguous():
        block = _scratch(name, block.shape, grad).copy_(block)
    return block.view(plan.batch, -1, block.shape[-1])


# -- the engines ------------------------------------------------------------
class Engine(metaclass=abc.ABCMeta):
    """How a block of per-sample kernels ``[B, G_o*rows, C_in/g*prod(k)]``
    is convolved with the input (stateless; one instance per engine in
    :data:`ENGINES`)."""

    name = ''

    @abc.abstractmethod
    def source(self, plan: BlockPlan, x):
        """The input as :meth:`forward_block` takes it."""

    @abc.abstractmethod
    def forward_block(self, plan: BlockPlan, source, kernels, name=None):
        """``[B, G_o*rows, L]``: one block's output (into a scratch buffer
        named ``name`` if given)."""

    @abc.abstractmethod
    def backward_block(self, plan: BlockPlan, source, kernels, grad_x, grad_k,
                       grad_source):
        """One block's gradients: ``(grad_source, grad_kernels)``.

        ``grad_x`` and ``grad_k`` are the block's output gradient for the
        input and the kernels (``None`` when not needed); the input part is
        added to ``grad_source`` (``None`` at the first block).
        """

    @abc.abstractmethod
    def grad_input(self, plan: BlockPlan, grad_source, x):
        """Adjoint of :meth:`source`: the gradient of ``x``."""


class GemmEngine(Engine):
    """1x1 kernels without padding or groups: one batched matrix product
    with the input at the output positions."""

    name = 'gemm'

    def _index(self, plan: BlockPlan):
        return (slice(None), slice(None)) + tuple(
            [slice(None, None, s) for s in plan.conv.stride])

    def source(self, plan, x):
        """``[B, C_in, L]``: the input at the (strided) output positions."""
        return x[self._index(plan)].reshape(plan.batch, x.shape[1], -1)

    def forward_block(self, plan, source, kernels, name=None):
        if name is None:
            return torch.bmm(kernels, source)
        out = _scratch(name, (plan.batch, kernels.shape[1], source.shape[2]),
                       kernels)
        return torch.bmm(kernels, source, out=out)

    def backward_block(self, plan, source, kernels, grad_x, grad_k,
                       grad_source):
        if grad_x is not None and grad_source is None:
            grad_source = torch.bmm(
                kernels.transpose(1, 2),
                grad_x,
                out=source.new_empty(source.shape))
        elif grad_x is not None:
            grad_source.baddbmm_(kernels.transpose(1, 2), grad_x)
        grad_kernels = None
        if grad_k is not None:
            grad_kernels = _scratch('grad_kernels', kernels.shape, kernels)
            torch.bmm(grad_k, source.transpose(1, 2), out=grad_kernels)
        return grad_source, grad_kernels

    def grad_input(self, plan, grad_source, x):
        if all([s == 1 for s in plan.conv.stride]):
            return grad_source.reshape(x.shape)
        grad = x.new_zeros(x.shape)
        grad[self._index(plan)] = grad_source.reshape(plan.batch, x.shape[1],
                                                      *plan.out_spatial)
        return grad


class ConvEngine(Engine):
    """Every other layer: the grouped convolution over the batch folded
    into the channels."""

    name = 'conv'

    def source(self, plan, x):
        """``[1, B*C_in, *in_spatial]``."""
        return x.reshape(1, -1, *plan.in_spatial)

    def forward_block(self, plan, source, kernels, name=None):
        conv = plan.conv
        folded = kernels.reshape(-1, *conv.weight_shape[1:])
        out = conv_function(conv.dims)(source, folded, None, conv.stride,
                                       conv.padding, conv.dilation,
                                       conv.groups * plan.batch)
        return out.reshape(plan.batch, kernels.shape[1], -1)

    def backward_block(self, plan, source, kernels, grad_x, grad_k,
                       grad_source):
        same = grad_x is grad_k  # one call computes both
        grad_kernels = None
        if grad_x is not None:
            part, grad_kernels = self._convolution_backward(
                plan, grad_x, source, kernels, True, same)
            grad_source = part if grad_source is None else \
                grad_source.add_(part)
        if grad_k is not None and not same:
            grad_kernels = self._convolution_backward(plan, grad_k, source,
                                                      kernels, False, True)[1]
        return grad_source, grad_kernels

    @staticmethod
    def _convolution_backward(plan, grad_block, source, kernels, need_x,
                              need_kernels):
        conv = plan.conv
        grad_x, grad_kernels, _ = torch.ops.aten.convolution_backward(
            grad_block.reshape(1, -1, *plan.out_spatial), source,
            kernels.reshape(-1, *conv.weight_shape[1:]), None, conv.stride,
            conv.padding, conv.dilation, False, [0] * conv.dims,
            conv.groups * plan.batch, [need_x, need_kernels, False])
        if need_kernels:
            grad_kernels = grad_kernels.reshape(kernels.shape)
        return grad_x, grad_kernels

    def grad_input(self, plan, grad_source, x):
        return grad_source.reshape(x.shape)


#: The engines by name (the ``engine`` argument of :func:`kw_conv_blocked`).
ENGINES = {engine.name: engine for engine in (GemmEngine(), ConvEngine())}


# -- autograd ---------------------------------------------------------------
def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run the matrix products in, else ``x``'s."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _no_autocast(x: torch.Tensor):
    """Autocast off for ``x``'s device (inputs are cast explicitly)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.autocast(device, enabled=False)
    return contextlib.nullcontext()


class BlockedKWConv(torch.autograd.Function):
    """Autograd of the blocked KW convolution (kernels recomputed in
    backward unless small). Inputs: ``x, attention, warehouse, out_scale``
    and the call's :class:`BlockPlan`."""

    @staticmethod
    def forward(ctx, x, attention, warehouse, out_scale, plan):
        keep = plan.keep_kernels and (ctx.needs_input_grad[0]
                                      or ctx.needs_input_grad[1]
                                      or ctx.needs_input_grad[2])
        # The input is saved as cast (under autocast, as a plain conv keeps
        # its bf16 input): a float32 copy would double the bytes kept.
        ctx.x_dtype = x.dtype
        if x.dtype != plan.dtype:
            with _no_autocast(x):
                x = x.to(plan.dtype)
        out, kernels = _cast_and_forward(plan, x, attention, warehouse,
                                         out_scale, keep)
        ctx.plan = plan
        ctx.save_for_backward(x, attention, warehouse, out_scale, kernels)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        dtype = ctx.plan.dtype
        with _no_autocast(grad_out):
            x, attention, warehouse, scale = saved[:4]
            args = (_cast(x, dtype), _cast(attention, dtype),
                    _cast_warehouse(warehouse, dtype), _cast(scale, dtype))
            grads = _backward(ctx.plan, grad_out.to(dtype), *args,
                              ctx.needs_input_grad[:4], saved[4])
        dtypes = [ctx.x_dtype
                  ] + [None if t is None else t.dtype for t in saved[1:4]]
        grads = [None if g is None else g.to(d) for g, d in zip(grads, dtypes)]
        return (*grads, None)


class _CastCache(threading.local):
    """Warehouses cast to autocast's dtype: ``(id, dtype) -> (weak
    reference, (data pointer, version), cast)`` (one set per thread)."""

    def __init__(self):
        self.entries = {}


_cast_cache = _CastCache()


def _cast(t: Optional[torch.Tensor], dtype, cached: bool = False):
    """``t`` in ``dtype``. With ``cached``, a leaf (a warehouse: several
    layers read it, in forward and backward) is cast once per value, as
    autocast does for the weights of the layers it casts; the cast is made
    again once the tensor changes (an optimizer step, a load) and dropped
    with it."""
    if t is None or t.dtype == dtype:
        return t
    if not cached or not t.is_leaf or torch.compiler.is_compiling():
        return t.to(dtype)
    key, value = (id(t), dtype), (t.data_ptr(), t._version)
    entry = _cast_cache.entries.get(key)
    if entry is not None and entry[0]() is t and entry[1] == value:
        return entry[2]
    entries = _cast_cache.entries
    cast = t.to(dtype)
    entries[key] = (weakref.ref(t,
                                lambda _: entries.pop(key, None)), value, cast)
    return cast


def _cast_warehouse(warehouse: Optional[torch.Tensor], dtype):
    """The warehouse for products in ``dtype`` (cast once per value,
    :func:`_cast`), left in float32 where those products run in float32
    (:func:`_products_upcast`)."""
    if warehouse is not None and _products_upcast(dtype, warehouse.device):
        dtype = torch.float32
    return _cast(warehouse, dtype, cached=True)


def _cast_and_forward(plan: BlockPlan, x, attention, warehouse, scale,
                      keep: bool):
    """:func:`_forward` in ``plan.dtype`` (autocast's), autocast off."""
    dtype = plan.dtype
    with _no_autocast(x):
        return _forward(plan, _cast(x, dtype), _cast(attention, dtype),
                        _cast_warehouse(warehouse, dtype), _cast(scale, dtype),
                        keep)


def _channel_view(scale: torch.Tensor, dims: int) -> torch.Tensor:
    return scale.view(1, -1, *([1] * dims))


def _kernels(plan: BlockPlan, attention, block, r0, r1):
    return to_kernels(plan, mixed(plan, attention, block), r0, r1)


def _forward(plan: BlockPlan, x, attention, warehouse, scale, keep=False):
    """The output, and the (unscaled) kernels if ``keep`` (single block).

    A scale multiplies the output channels (the same as scaling the kernel
    rows, but an activation-sized pass instead of a kernel-sized one).
    """
    engine, conv = plan.engine, plan.conv
    cells = warehouse.reshape(plan.num_cells, plan.c_o, plan.c_i)
    source = engine.source(plan, x)
    out_shape = (plan.batch, conv.out_channels, *plan.out_spatial)
    kept = None
    if len(plan.blocks) == 1:
        block = cell_block(plan, cells, 0, plan.c_o)
        kernels = _kernels(plan, attention, block, 0, plan.c_o)
        out = engine.forward_block(plan, source, kernels).reshape(out_shape)
        kept = kernels.clone() if keep else None
    else:
        out = x.new_empty(out_shape)
        for r0, r1 in plan.blocks:
            block = cell_block(plan, cells, r0, r1)
            kernels = _kernels(plan, attention, block, r0, r1)
            result = engine.forward_block(plan, source, kernels, 'result')
            _out_rows(plan, out, r0, r1).copy_(
                result.reshape(plan.batch, conv.split[1], r1 - r0, -1))
    if scale is not None:  # out is a fresh tensor
        out.mul_(_channel_view(scale, conv.dims))
    return out, kept


def _backward(plan: BlockPlan,
              grad_out,
              x,
              attention,
              warehouse,
              scale,
              needs,
              kept=None):
    """Gradients of ``out = scale * conv(x, kernels)``. With K' the scaled
    kernels and g the output gradient: dx = K^T (scale g), dK' = g x,
    dK = scale dK', d scale = <dK', K> per output channel."""
    need_x, need_a, need_w, need_s = needs
    need_kernels = need_a or need_w or need_s
    engine = plan.engine
    cells = warehouse.reshape(plan.num_cells, plan.c_o, plan.c_i)
    grad_out_x = grad_out
    if scale is not None and need_x:
        grad_out_x = grad_out * _channel_view(scale, plan.conv.dims)
    source = engine.source(plan, x)
    # Written by the first block and accumulated by the others (every block
    # writes its own rows of grad_w): no zero-filling of large buffers.
    grad_source = None
    # The first block's products give the attention gradient and a single
    # block's the cells gradient.
    grads = [
        None,
        _cell_gradient(cells.shape, attention, cells)
        if need_w and len(plan.blocks) > 1 else None,
        x.new_zeros(plan.conv.split[1], plan.c_o) if need_s else None
    ]
    for r0, r1 in plan.blocks:
        block = cell_block(plan, cells, r0, r1) \
            if need_a or kept is None else None
        kernels = kept if kept is not None else _kernels(
            plan, attention, block, r0, r1)
        grad_block = _grad_rows(plan, grad_out, r0, r1, 'grad_block')
        grad_block_x = grad_block if grad_out_x is grad_out else \
            _grad_rows(plan, grad_out_x, r0, r1, 'grad_block_x')
        grad_source, grad_kernels = engine.backward_block(
            plan, source, kernels, grad_block_x if need_x else None,
            grad_block if need_kernels else None, grad_source)
        if need_kernels:
            _mixing_backward(plan, grad_kernels, kernels, attention, block,
                             scale, r0, r1, grads, need_a, need_w)
    grad_a, grad_w, grad_s = grads
    return (engine.grad_input(plan, grad_source, x) if need_x else None,
            grad_a,
            None if grad_w is None else grad_w.reshape(warehouse.shape),
            None if grad_s is None else grad_s.reshape(-1))


def _mixing_backward(plan: BlockPlan, grad_kernels, kernels, attention, block,
                     scale, r0, r1, grads, need_a, need_w):
    """Adds one block's kernel gradient to ``grads``, the gradients of the
    attention, the cells (if ``need_a``, ``need_w``) and the scale (if not
    ``None``); the first block sets the attention's, a single block the
    cells'. ``grad_kernels`` may be overwritten."""
    grad_a, grad_w, grad_s = grads
    rows = r1 - r0
    if grad_s is not None:  # per kernel row: dot(dK', K), summed over batch
        # One fused pass (a batched product of 1 x width by width x 1
        # matrices ran at a half of its speed in float32, a tenth in bf16).
        dots = torch.linalg.vecdot(grad_kernels, kernels, dim=-1)
        grad_s[:, r0:r1] += dots.view(plan.batch, plan.conv.split[1],
                                      rows).sum(dim=0)
    grad_mixed = to_mixed(plan, grad_kernels, r0, r1, scale)
    if need_a:
        part = _matmul(grad_mixed, block.t())
        grads[0] = part if grad_a is None else grad_a.add_(part)
    if need_w and grad_w is None:
        buffer = _cell_gradient((plan.num_cells, plan.c_o * plan.c_i),
                                attention, grad_mixed)
        grads[1] = _matmul(
            attention.t(), grad_mixed,
            out=buffer).view(plan.num_cells, plan.c_o, plan.c_i)
    elif need_w:
        _matmul(
            attention.t(),
            grad_mixed,
            out=grad_w[:, r0:r1].view(plan.num_cells, rows * plan.c_i))


def kw_conv_blocked(x: torch.Tensor,
                    attention: torch.Tensor,
                    warehouse: torch.Tensor,
                    geometry: ConvGeometry,
                    bias: Optional[torch.Tensor] = None,
                    out_scale: Optional[torch.Tensor] = None,
                    engine: Optional[str] = None) -> torch.Tensor:
    """The KW convolution with row-blocked assembly and recomputing backward.

    Same arguments and result as :func:`~mmkw.cnn.kw_conv`, plus:

    Args:
        engine (str, optional): ``'gemm'`` (1x1 kernels without padding or
            groups) or ``'conv'``; ``None`` picks (:func:`choose_engine`).
    """
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine must be 'gemm', 'conv' or None, got "
                         f'{engine!r}')
    if engine == 'gemm' and choose_engine(geometry.weight_shape,
                                          geometry.padding,
                                          geometry.groups) != 'gemm':
        raise ValueError(
            f"the 'gemm' engine needs a 1x1 kernel without padding and "
            f'groups=1, got kernel {geometry.kernel_size}, padding '
            f'{geometry.padding}, groups {geometry.groups}')
    plan = _plan(x, _compute_dtype(x), warehouse.shape, geometry, engine)
    if torch.is_grad_enabled() and (x.requires_grad or attention.requires_grad
                                    or warehouse.requires_grad or
                                    (out_scale is not None
                                     and out_scale.requires_grad)):
        out = BlockedKWConv.apply(x, attention, warehouse, out_scale, plan)
    else:  # inference: no autograd node to build
        out = _cast_and_forward(plan, x, attention, warehouse, out_scale,
                                False)[0]
    if bias is not None:
        out = out + bias.reshape(1, -1, *([1] * (x.dim() - 2)))
    return out
