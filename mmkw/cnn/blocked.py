"""The fast KW convolution: kernels assembled in cache-sized row blocks.

The reference formulation (:func:`~mmkw.cnn.kw_conv_reference`) assembles
the kernels of the whole batch at once (75 MB for one 3x3 512->512 layer at
batch 8), lays them out again for a grouped convolution with ``groups = B``
and lets autograd keep them for backward. Here the warehouse is cut into
blocks of cell rows (output channels): each block's per-sample kernels are
mixed, used and dropped while they are still in cache, and the backward
recomputes them instead of keeping them, so only the input and the
attention are saved (kernels at most half the size of the input, as in
depthwise layers, are kept: cheaper than mixing them again).

Two engines convolve a block with its per-sample kernels:

- ``gemm`` (1x1 kernels without padding or groups): the input as a
  ``[B, C_in, L]`` matrix (a strided view) and one batched matrix product;
- ``conv`` (every other layer): the official grouped convolution over the
  batch folded into the channels. (An ``unfold`` + matrix product variant
  was measured slower for every 3x3 ResNet shape at batch 1 and 8.)

An optional per-output-channel ``out_scale`` (a frozen BatchNorm folded into
the convolution, :mod:`mmkw.engine.efficient_conv_bn`) multiplies the output
channels, which equals scaling the kernel rows; its gradient comes from the
kernel gradient, so the unscaled output is never kept.
"""
import contextlib
import functools
import math
import threading
from typing import Optional, Sequence

import torch
from torch.autograd.function import once_differentiable

from .geometry import ConvGeometry, conv_function

__all__ = ['kw_conv_blocked', 'choose_engine', 'block_rows']

#: Bytes of per-sample kernels assembled at once (one block of cell rows);
#: measured best between 32 and 64 MB for ResNet18/50 at batch 8 on CPU.
BLOCK_BYTES = 32 << 20
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


_workspace = _Workspace()


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


class _Geometry:
    """Shapes of one call, shared by forward/backward: the layer's
    :class:`~mmkw.cnn.ConvGeometry` with the input and warehouse shapes
    (pure ints, cached per layer geometry and input shape by
    :func:`_geometry`)."""

    def __init__(self, x_shape, dtype, warehouse_shape, conv: ConvGeometry,
                 engine, block_bytes):
        self.dtype = dtype  # the products run in it (autocast's, if on)
        self.batch = x_shape[0]
        self.in_spatial = tuple(x_shape[2:])
        self.split = conv.split
        self.weight_shape = conv.weight_shape
        self.kernel = conv.kernel_size
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups
        self.conv = conv_function(conv.dims)
        self.engine = engine or choose_engine(conv.weight_shape, conv.padding,
                                              conv.groups)
        self.num_cells, self.c_o, self.c_i = warehouse_shape[:3]
        self.out_spatial = tuple(conv.output_size(self.in_spatial))
        self.rows = block_rows(self.batch, conv.weight_shape, conv.split,
                               self.c_o, conv.groups, dtype.itemsize,
                               block_bytes)
        # Per-sample kernels at most 1 / KEEP_KERNELS_RATIO of the input are
        # kept for backward (mixing them again costs more than they weigh).
        kernels = self.batch * math.prod(self.weight_shape)
        self.keep_kernels = self.rows == self.c_o and (
            kernels * KEEP_KERNELS_RATIO <= math.prod(x_shape))

    def blocks(self):
        """``(first, end)`` cell rows of each block."""
        return [(r0, min(self.c_o, r0 + self.rows))
                for r0 in range(0, self.c_o, self.rows)]

    # -- the input as the matrix of the gemm engine, and its adjoint -------
    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, L]``: the input at the (strided) output positions."""
        index = (slice(None), slice(None)) + tuple(
            [slice(None, None, s) for s in self.stride])
        return x[index].reshape(self.batch, x.shape[1], -1)

    def columns_to_input(self, cols: torch.Tensor, like: torch.Tensor):
        if all([s == 1 for s in self.stride]):
            return cols.reshape(like.shape)
        grad = like.new_zeros(like.shape)
        index = (slice(None), slice(None)) + tuple(
            [slice(None, None, s) for s in self.stride])
        grad[index] = cols.reshape(self.batch, like.shape[1],
                                   *self.out_spatial)
        return grad

    # -- kernels of one block of cell rows ---------------------------------
    def mixed(self, attention, cells, r0, r1):
        """``[B*m, rows*c_i]``: rows r0:r1 of every mixture's cell."""
        block = cells[:, r0:r1].reshape(self.num_cells, -1)  # a view
        out = _scratch('mixed', (attention.shape[0], block.shape[1]),
                       attention)
        return torch.mm(attention, block, out=out)

    def to_kernels(self, mixed, r0, r1):
        """Mixtures -> ``[B, G_o*rows, C_in/g * prod(k)]`` (conv layout)."""
        g_s, g_o, g_i = self.split
        rows = r1 - r0
        view = mixed.view(self.batch, g_s, g_o, g_i, rows,
                          self.c_i).permute(0, 2, 4, 3, 5, 1)
        shape = (self.batch, g_o * rows, g_i * self.c_i * g_s)
        if view.is_contiguous():
            return view.reshape(shape)
        kernels = _scratch('kernels', view.shape, mixed)
        return kernels.copy_(view).view(shape)

    def to_mixed(self, kernels, r0, r1, scale=None):
        """Adjoint of :meth:`to_kernels`, the rows multiplied by ``scale``
        on the way if given (``kernels`` may be overwritten)."""
        g_s, g_o, g_i = self.split
        rows = r1 - r0
        view = kernels.view(self.batch, g_o, rows, g_i, self.c_i,
                            g_s).permute(0, 5, 1, 3, 2, 4)
        shape = (self.batch * g_s * g_o * g_i, rows * self.c_i)
        factor = None if scale is None else scale.view(
            g_o, self.c_o)[:, r0:r1].reshape(1, 1, g_o, 1, rows, 1)
        if view.is_contiguous():
            return (view
                    if factor is None else view.mul_(factor)).reshape(shape)
        mixed = _scratch('grad_mixed', view.shape, kernels)
        if factor is None:
            mixed.copy_(view)
        else:
            torch.mul(view, factor, out=mixed)
        return mixed.view(shape)

    def grad_rows(self, grad, r0, r1, name):
        """``[B, G_o*rows, L]``: the output gradient of one block."""
        block = self.out_rows(grad, r0, r1)
        if not block.is_contiguous():
            block = _scratch(name, block.shape, grad).copy_(block)
        return block.view(self.batch, -1, block.shape[-1])

    def out_rows(self, tensor, r0, r1):
        """Output channels of rows r0:r1 of every output group."""
        g_o = self.split[1]
        return tensor.view(self.batch, g_o, self.c_o, -1)[:, :, r0:r1]

    def convolve(self, x_or_cols, kernels, name=None):
        """One block: ``[B, G_o*rows, *out_spatial]`` flattened spatially
        (into a scratch buffer if ``name`` is given)."""
        if self.engine == 'gemm':
            if name is None:
                return torch.bmm(kernels, x_or_cols)
            out = _scratch(name,
                           (self.batch, kernels.shape[1], x_or_cols.shape[2]),
                           kernels)
            return torch.bmm(kernels, x_or_cols, out=out)
        folded = kernels.reshape(-1, *self.weight_shape[1:])
        out = self.conv(x_or_cols, folded, None, self.stride, self.padding,
                        self.dilation, self.groups * self.batch)
        return out.reshape(self.batch, kernels.shape[1], -1)


@functools.lru_cache(maxsize=4096)
def _cached_geometry(*args) -> _Geometry:
    return _Geometry(*args)


def _geometry(x_shape, dtype, warehouse_shape, conv: ConvGeometry,
              engine) -> _Geometry:
    args = (tuple(x_shape), dtype, tuple(warehouse_shape), conv, engine,
            BLOCK_BYTES)
    if torch.compiler.is_compiling():
        return _Geometry(*args)
    return _cached_geometry(*args)


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
    and the call's :class:`_Geometry`."""

    @staticmethod
    def forward(ctx, x, attention, warehouse, out_scale, geo):
        keep = geo.keep_kernels and (ctx.needs_input_grad[0]
                                     or ctx.needs_input_grad[1]
                                     or ctx.needs_input_grad[2])
        out, kernels = _cast_and_forward(geo, x, attention, warehouse,
                                         out_scale, keep)
        ctx.geo = geo
        ctx.save_for_backward(x, attention, warehouse, out_scale, kernels)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        dtype = ctx.geo.dtype
        with _no_autocast(grad_out):
            args = [None if t is None else t.to(dtype) for t in saved[:4]]
            grads = _backward(ctx.geo, grad_out.to(dtype), *args,
                              ctx.needs_input_grad[:4], saved[4])
        grads = [
            None if g is None else g.to(t.dtype) for g, t in zip(grads, saved)
        ]
        return (*grads, None)


def _cast_and_forward(geo: _Geometry, x, attention, warehouse, scale,
                      keep: bool):
    """:func:`_forward` in ``geo.dtype`` (autocast's), autocast off."""
    dtype = geo.dtype
    with _no_autocast(x):
        args = [
            t if t is None or t.dtype == dtype else t.to(dtype)
            for t in (x, attention, warehouse, scale)
        ]
        return _forward(geo, *args, keep)


def _channel_view(scale: torch.Tensor, dims: int) -> torch.Tensor:
    return scale.view(1, -1, *([1] * dims))


def _forward(geo: _Geometry, x, attention, warehouse, scale, keep=False):
    """The output, and the (unscaled) kernels if ``keep`` (single block).

    A scale multiplies the output channels (the same as scaling the kernel
    rows, but an activation-sized pass instead of a kernel-sized one).
    """
    cells = warehouse.reshape(geo.num_cells, geo.c_o, geo.c_i)
    source = geo.columns(x) if geo.engine == 'gemm' else x.reshape(
        1, -1, *geo.in_spatial)
    blocks = geo.blocks()
    c_out = geo.weight_shape[0]
    out, kept = None, None
    for r0, r1 in blocks:
        kernels = geo.to_kernels(geo.mixed(attention, cells, r0, r1), r0, r1)
        result = geo.convolve(source, kernels,
                              None if len(blocks) == 1 else 'result')
        if len(blocks) == 1:
            out = result.reshape(geo.batch, c_out, *geo.out_spatial)
            kept = kernels.clone() if keep else None
            break
        if out is None:
            out = x.new_empty(geo.batch, c_out, *geo.out_spatial)
        geo.out_rows(out, r0, r1).copy_(
            result.reshape(geo.batch, geo.split[1], r1 - r0, -1))
    if scale is not None:  # out is a fresh tensor
        out.mul_(_channel_view(scale, len(geo.kernel)))
    return out, kept


def _backward(geo: _Geometry,
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
    cells = warehouse.reshape(geo.num_cells, geo.c_o, geo.c_i)
    g_o = geo.split[1]
    grad_out_x = grad_out
    if scale is not None and need_x:
        grad_out_x = grad_out * _channel_view(scale, len(geo.kernel))
    if geo.engine == 'gemm':
        source = geo.columns(x)
        grad_source = source.new_empty(source.shape) if need_x else None
    else:
        source = x.reshape(1, -1, *geo.in_spatial)
        grad_source = None
    # Written by the first block and accumulated by the others (every block
    # writes its own rows of grad_w): no zero-filling of large buffers.
    grad_a = attention.new_empty(attention.shape) if need_a else None
    grad_w = cells.new_empty(cells.shape) if need_w else None
    grad_s = torch.zeros(
        g_o, geo.c_o, dtype=x.dtype, device=x.device) if need_s else None
    blocks = geo.blocks()
    for r0, r1 in blocks:
        rows = r1 - r0
        first = r0 == 0
        if kept is not None:  # the single block's kernels
            kernels = kept
        else:
            kernels = geo.to_kernels(
                geo.mixed(attention, cells, r0, r1), r0, r1)
        grad_block = geo.grad_rows(grad_out, r0, r1, 'grad_block')
        grad_block_x = grad_block if grad_out_x is grad_out else \
            geo.grad_rows(grad_out_x, r0, r1, 'grad_block_x')
        grad_kernels = None
        if geo.engine == 'gemm':
            if need_x and first:
                torch.bmm(
                    kernels.transpose(1, 2), grad_block_x, out=grad_source)
            elif need_x:
                grad_source.baddbmm_(kernels.transpose(1, 2), grad_block_x)
            if need_kernels:
                grad_kernels = _scratch('grad_kernels', kernels.shape, kernels)
                torch.bmm(grad_block, source.transpose(1, 2), out=grad_kernels)
        else:
            same = grad_block_x is grad_block
            grad_x_part, grad_kernels = _conv_backward(geo, grad_block_x,
                                                       source, kernels, need_x,
                                                       need_kernels and same)
            if need_kernels and not same:
                grad_kernels = _conv_backward(geo, grad_block, source, kernels,
                                              False, True)[1]
            if need_x:
                grad_source = grad_x_part if grad_source is None else (
                    grad_source.add_(grad_x_part))
        if not need_kernels:
            continue
        if need_s:  # per kernel row: dot(dK', K), summed over the batch
            width = kernels.shape[2]
            dots = torch.bmm(
                grad_kernels.reshape(-1, 1, width),
                kernels.reshape(-1, width, 1))
            grad_s[:, r0:r1] += dots.view(geo.batch, g_o, rows).sum(dim=0)
        grad_mixed = geo.to_mixed(grad_kernels, r0, r1, scale)
        if need_a:
            block = cells[:, r0:r1].reshape(geo.num_cells, -1)
            if first:
                torch.mm(grad_mixed, block.t(), out=grad_a)
            else:
                grad_a.addmm_(grad_mixed, block.t())
        if need_w and len(blocks) == 1:
            torch.mm(
                attention.t(), grad_mixed, out=grad_w.view(geo.num_cells, -1))
        elif need_w:
            block = _scratch('grad_cells',
                             (geo.num_cells, grad_mixed.shape[1]), grad_mixed)
            torch.mm(attention.t(), grad_mixed, out=block)
            grad_w[:, r0:r1] = block.view(geo.num_cells, rows, geo.c_i)
    grad_x = None
    if need_x:
        grad_x = geo.columns_to_input(
            grad_source, x) if geo.engine == 'gemm' else grad_source.reshape(
                x.shape)
    return (grad_x, grad_a,
            None if grad_w is None else grad_w.reshape(warehouse.shape),
            None if grad_s is None else grad_s.reshape(-1))


def _conv_backward(geo: _Geometry, grad_block, source, kernels, need_x,
                   need_kernels):
    """Input and kernel gradients of one block's grouped convolution."""
    grad_x, grad_kernels, _ = torch.ops.aten.convolution_backward(
        grad_block.reshape(1, -1, *geo.out_spatial), source,
        kernels.reshape(-1, *geo.weight_shape[1:]), None, geo.stride,
        geo.padding, geo.dilation, False, [0] * len(geo.kernel),
        geo.groups * geo.batch, [need_x, need_kernels, False])
    if need_kernels:
        grad_kernels = grad_kernels.reshape(kernels.shape)
    return grad_x, grad_kernels


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
    if engine is not None and engine not in ('gemm', 'conv'):
        raise ValueError(f"engine must be 'gemm', 'conv' or None, got "
                         f'{engine!r}')
    if engine == 'gemm' and choose_engine(geometry.weight_shape,
                                          geometry.padding,
                                          geometry.groups) != 'gemm':
        raise ValueError(
            f"the 'gemm' engine needs a 1x1 kernel without padding and "
            f'groups=1, got kernel {geometry.kernel_size}, padding '
            f'{geometry.padding}, groups {geometry.groups}')
    geo = _geometry(x.shape, _compute_dtype(x), warehouse.shape, geometry,
                    engine)
    if torch.is_grad_enabled() and (x.requires_grad or attention.requires_grad
                                    or warehouse.requires_grad or
                                    (out_scale is not None
                                     and out_scale.requires_grad)):
        out = BlockedKWConv.apply(x, attention, warehouse, out_scale, geo)
    else:  # inference: no autograd node to build
        out = _cast_and_forward(geo, x, attention, warehouse, out_scale,
                                False)[0]
    if bias is not None:
        out = out + bias.reshape(1, -1, *([1] * (x.dim() - 2)))
    return out
