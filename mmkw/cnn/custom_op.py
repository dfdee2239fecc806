"""The fast KW convolution as ``torch.library`` custom ops, for
``torch.compile``.

Traced by Dynamo, the blocked path (:mod:`mmkw.cnn.blocked`) is unrolled
block by block into the graph and compiled as ordinary ops: its scratch
buffers cannot be reused there (a graph cannot keep state between calls),
so every block intermediate is allocated afresh, and inductor gains nothing
on the matrix products and convolutions that make up its time. Compiled
KW models ran slower than eager ones.

Here the forward and the backward of the blocked path are two opaque ops,
``mmkw::kw_conv_blocked`` and ``mmkw::kw_conv_blocked_backward``: the
graph calls them as it calls ``aten.convolution``, and each runs the eager
blocked code, scratch buffers included. Their fake (meta) functions give the
output and gradient shapes and dtypes without running anything, and
:func:`torch.library.register_autograd` joins the two. Inductor still
compiles everything around them (attention, norms, activations).

The layer's :class:`~mmkw.cnn.ConvGeometry` cannot be an op argument: its
fields are passed as ints and lists of ints and the geometry is rebuilt
inside (it is hashable, so the plan cache of the blocked path still hits).

The ops compute in the dtype of ``x``: :func:`kw_conv_op` (what
:func:`~mmkw.cnn.kw_conv` calls while compiling) casts ``x`` to autocast's
dtype first, so the graph holds the cast and the op, and the compiled code
runs the products in that dtype whether or not autocast is still on when it
runs. The other tensors are cast to ``x``'s dtype inside the ops, and their
gradients come back in their own dtypes, as in eager mode.

Unlike the eager path, the op never keeps per-sample kernels for backward
(depthwise layers recompute them, which costs little: they are small).
"""
from typing import List, Optional, Sequence

import torch

from . import blocked
from .geometry import ConvGeometry

__all__ = ['kw_conv_op', 'geometry_args']


def geometry_args(geometry: ConvGeometry) -> list:
    """The op arguments of ``geometry``: ``weight_shape, stride, padding,
    dilation`` (lists of ints), ``groups`` (int) and ``split`` (list)."""
    return [
        list(geometry.weight_shape),
        list(geometry.stride),
        list(geometry.padding),
        list(geometry.dilation), geometry.groups,
        list(geometry.split)
    ]


def _geometry(weight_shape: Sequence[int], stride: Sequence[int],
              padding: Sequence[int], dilation: Sequence[int], groups: int,
              split: Sequence[int]) -> ConvGeometry:
    return ConvGeometry(weight_shape, stride, padding, dilation, groups, split)


# The seam to mmkw.cnn.blocked: the plan of one call, its forward and its
# backward (the same functions BlockedKWConv runs).
def _blocked_forward(x, attention, warehouse, out_scale, geometry):
    plan = blocked._plan(x, x.dtype, warehouse.shape, geometry, None)
    return blocked._forward(plan, x, attention, warehouse, out_scale)[0]


def _blocked_backward(grad, x, attention, warehouse, out_scale, geometry,
                      needs):
    plan = blocked._plan(x, x.dtype, warehouse.shape, geometry, None)
    return blocked._backward(plan, grad, x, attention, warehouse, out_scale,
                             tuple(needs))


@torch.library.custom_op('mmkw::kw_conv_blocked', mutates_args=())
def _forward_op(x: torch.Tensor, attention: torch.Tensor,
                warehouse: torch.Tensor, out_scale: Optional[torch.Tensor],
                weight_shape: List[int], stride: List[int], padding: List[int],
                dilation: List[int], groups: int,
                split: List[int]) -> torch.Tensor:
    """``kw_conv_blocked(x, attention, warehouse, geometry,
    out_scale=out_scale)`` in ``x``'s dtype (no bias)."""
    geometry = _geometry(weight_shape, stride, padding, dilation, groups,
                         split)
    dtype = x.dtype
    with blocked._no_autocast(x):
        return _blocked_forward(x, blocked._cast(attention, dtype),
                                blocked._cast_warehouse(warehouse, dtype),
                                blocked._cast(out_scale, dtype), geometry)


@_forward_op.register_fake
def _forward_fake(x, attention, warehouse, out_scale, weight_shape, stride,
                  padding, dilation, groups, split):
    geometry = _geometry(weight_shape, stride, padding, dilation, groups,
                         split)
    return x.new_empty(
        (x.shape[0], weight_shape[0], *geometry.output_size(x.shape[2:])))


@torch.library.custom_op('mmkw::kw_conv_blocked_backward', mutates_args=())
def _backward_op(grad: torch.Tensor, x: torch.Tensor, attention: torch.Tensor,
                 warehouse: torch.Tensor, out_scale: Optional[torch.Tensor],
                 weight_shape: List[int], stride: List[int],
                 padding: List[int], dilation: List[int], groups: int,
                 split: List[int], needs: List[bool]) -> List[torch.Tensor]:
    """The gradients of ``x, attention, warehouse, out_scale`` (each in its
    own dtype; an empty tensor where ``needs`` is false)."""
    geometry = _geometry(weight_shape, stride, padding, dilation, groups,
                         split)
    needs = [bool(n) for n in needs]
    needs[3] = needs[3] and out_scale is not None
    inputs = (x, attention, warehouse, out_scale)
    dtype = x.dtype
    with blocked._no_autocast(x):
        grads = _blocked_backward(
            blocked._cast(grad, dtype), x, blocked._cast(attention, dtype),
            blocked._cast_warehouse(warehouse, dtype),
            blocked._cast(out_scale, dtype), geometry, needs)
    return [
        blocked._cast(g, t.dtype) if need else x.new_empty(0)
        for g, t, need in zip(grads, inputs, needs)
    ]


@_backward_op.register_fake
def _backward_fake(grad, x, attention, warehouse, out_scale, weight_shape,
                   stride, padding, dilation, groups, split, needs):
    inputs = (x, attention, warehouse, out_scale)
    return [
        t.new_empty(t.shape) if need and t is not None else x.new_empty(0)
        for t, need in zip(inputs, needs)
    ]


def _setup_context(ctx, inputs, output):
    x, attention, warehouse, out_scale = inputs[:4]
    ctx.save_for_backward(x, attention, warehouse, out_scale)
    ctx.geometry = inputs[4:]


def _autograd_backward(ctx, grad):
    x, attention, warehouse, out_scale = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:4])
    needs[3] = needs[3] and out_scale is not None
    grads = torch.ops.mmkw.kw_conv_blocked_backward(grad, x, attention,
                                                    warehouse, out_scale,
                                                    *ctx.geometry, needs)
    return (*[g if need else None
              for g, need in zip(grads, needs)], *([None] * len(ctx.geometry)))


_forward_op.register_autograd(_autograd_backward, setup_context=_setup_context)


def kw_conv_op(x: torch.Tensor,
               attention: torch.Tensor,
               warehouse: torch.Tensor,
               geometry: ConvGeometry,
               bias: Optional[torch.Tensor] = None,
               out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`~mmkw.cnn.kw_conv_blocked` through the custom op (what
    :func:`~mmkw.cnn.kw_conv` runs under ``torch.compile``); arguments and
    result as :func:`~mmkw.cnn.kw_conv`."""
    x = blocked._cast(x, blocked._compute_dtype(x))
    out = torch.ops.mmkw.kw_conv_blocked(x, attention, warehouse, out_scale,
                                         *geometry_args(geometry))
    if bias is not None:
        out = out + bias.reshape(1, -1, *([1] * (x.dim() - 2)))
    return out
