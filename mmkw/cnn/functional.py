"""Kernel assembly and the per-sample convolution of a KW layer.

Every KW layer calls :func:`kw_conv`, which runs the blocked fast path
(:mod:`mmkw.cnn.blocked`); under ``torch.compile`` it runs the same code
through an opaque custom op (:mod:`mmkw.cnn.custom_op`).
:func:`assemble_kernels` with :func:`kw_conv_reference` is the literal
formulation of kernelwarehouse.md section 2.5 (the official code's), kept
as the reference the tests pin the fast path to;
:func:`kw_conv_implementation` switches a block of code to it.
:func:`kw_conv_unfold` is the formulation for ONNX export: its graph has no
batch-sized attribute, so an exported model keeps a dynamic batch axis.
"""
import contextlib
import contextvars
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from .blocked import kw_conv_blocked
from .custom_op import kw_conv_op
from .geometry import ConvGeometry, conv_function

__all__ = [
    'assemble_kernels', 'kw_conv_reference', 'kw_conv_unfold', 'kw_conv',
    'kw_conv_implementation', 'IMPLEMENTATIONS', 'scale_and_bias'
]

#: ``'blocked'``: the fast path (default); ``'reference'``: the official
#: formulation; ``'unfold'``: the export formulation (also chosen
#: automatically while ``torch.onnx.export`` runs).
IMPLEMENTATIONS = ('blocked', 'reference', 'unfold')
# A context variable, not a module global: a block switches the thread (or
# asyncio task) that entered it, never another thread sharing the model.
_implementation = contextvars.ContextVar(
    'kw_conv_implementation', default='blocked')


@contextlib.contextmanager
def kw_conv_implementation(name: str) -> Iterator[None]:
    """Run every KW layer inside the ``with`` block with implementation
    ``name`` (one of :data:`IMPLEMENTATIONS`), e.g. to compare the fast path
    with the official formulation::

        with kw_conv_implementation('reference'):
            expected = model(x)

    The switch holds for the thread (or context) that enters the block;
    other threads keep their own choice. Code compiled with
    ``torch.compile`` runs the fast path (as a custom op).
    """
    if name not in IMPLEMENTATIONS:
        raise ValueError(f'KW conv implementation must be one of '
                         f'{IMPLEMENTATIONS}, got {name!r}')
    token = _implementation.set(name)
    try:
        yield
    finally:
        _implementation.reset(token)


def _empty_batch(x: torch.Tensor, attention: torch.Tensor,
                 warehouse: torch.Tensor, geometry: ConvGeometry,
                 bias: Optional[torch.Tensor],
                 out_scale: Optional[torch.Tensor]) -> torch.Tensor:
    """The output of a batch of no samples, ``[0, C_out, *spatial_out]``,
    as a plain convolution gives it: backward reaches every input (zero
    gradients for the warehouse, bias and scale)."""
    zero = x.sum() + attention.sum() + warehouse.sum()
    for extra in (bias, out_scale):
        if extra is not None:
            zero = zero + extra.sum()
    return x.new_zeros((0, geometry.out_channels,
                        *geometry.output_size(x.shape[2:]))) + zero * 0


def assemble_kernels(attention: torch.Tensor, warehouse: torch.Tensor,
                     geometry: ConvGeometry) -> torch.Tensor:
    """Mix warehouse cells into one kernel per sample.

    Args:
        attention (Tensor): ``[B * m, n]`` mixture weights.
        warehouse (Tensor): ``[n, c_o, c_i, 1, ...]`` cells.
        geometry (ConvGeometry): The layer's geometry (its ``split`` and
            ``weight_shape``).

    Returns:
        Tensor: ``[B * C_out, C_in / groups, *k]``, the kernels of the
        batch stacked along the output channels.
    """
    g_s, g_o, g_i = geometry.split
    weight_shape = geometry.weight_shape
    n, c_o, c_i = warehouse.shape[:3]
    mixed = torch.mm(attention, warehouse.reshape(n, -1))
    batch = mixed.shape[0] // (g_s * g_o * g_i)
    # [B, G_s, G_o, G_i, c_o, c_i] -> [B, G_o, c_o, G_i, c_i, G_s]
    mixed = mixed.reshape(batch, g_s, g_o, g_i, c_o, c_i)
    mixed = mixed.permute(0, 2, 4, 3, 5, 1)
    return mixed.reshape(batch * weight_shape[0], *weight_shape[1:])


def scale_and_bias(out: torch.Tensor, scale: Optional[torch.Tensor],
                   bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``out * scale + bias`` over the output channels of ``out`` (``[B,
    C, *spatial]``); ``scale`` is ``[C]`` (a folded norm) or ``[B, C]``
    (KW*'s per-sample output-channel attention), ``bias`` is ``[C]``."""
    channels = (..., ) + (None, ) * (out.dim() - 2)  # [C] or [B, C]
    if scale is not None:
        out = out * scale[channels]
    return out if bias is None else out + bias[channels]


def kw_conv_reference(
        x: torch.Tensor,
        attention: torch.Tensor,
        warehouse: torch.Tensor,
        geometry: ConvGeometry,
        bias: Optional[torch.Tensor] = None,
        out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-sample convolution as the official code runs it: the batch is
    folded into the channels and one grouped convolution with
    ``groups * B`` groups applies every sample's own kernel. Arguments as
    :func:`kw_conv`."""
    batch = x.shape[0]
    kernels = assemble_kernels(attention, warehouse, geometry)
    out = conv_function(geometry.dims)(
        x.reshape(1, -1, *x.shape[2:]),
        kernels,
        None,
        stride=geometry.stride,
        padding=geometry.padding,
        dilation=geometry.dilation,
        groups=geometry.groups * batch)
    out = out.reshape(batch, geometry.out_channels, *out.shape[2:])
    return scale_and_bias(out, out_scale, bias)


def kw_conv_unfold(x: torch.Tensor,
                   attention: torch.Tensor,
                   warehouse: torch.Tensor,
                   geometry: ConvGeometry,
                   bias: Optional[torch.Tensor] = None,
                   out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-sample convolution as ``unfold`` and a batched matmul.

    The official grouped convolution over the folded batch has ``groups *
    B`` groups, which ONNX must fix as an attribute at export time; here the
    batch is only a tensor dimension, so ``torch.onnx.export`` keeps it
    dynamic. It materialises the unfolded input (``k*k`` times the input),
    which is why eager code uses the blocked path. Arguments as
    :func:`kw_conv`.
    """
    spatial_out = geometry.output_size(x.shape[2:])
    kernel_size, stride = geometry.kernel_size, geometry.stride
    padding, dilation = geometry.padding, geometry.dilation
    if geometry.dims == 1:  # a 1-D conv is a 2-D conv over a height of one
        x = x.unsqueeze(2)
        kernel_size, stride = (1, ) + kernel_size, (1, ) + stride
        padding, dilation = (0, ) + padding, (1, ) + dilation
    groups, c_out = geometry.groups, geometry.out_channels
    kernels = assemble_kernels(attention, warehouse, geometry)
    # [B, G, C_out / G, C_in / G * k*k] @ [B, G, C_in / G * k*k, L]
    kernels = kernels.reshape(-1, groups, c_out // groups, kernels[0].numel())
    cols = F.unfold(x, kernel_size, dilation, padding, stride)
    cols = cols.reshape(x.shape[0], groups, kernels.shape[-1], -1)
    out = torch.matmul(kernels, cols).reshape(x.shape[0], c_out, *spatial_out)
    return scale_and_bias(out, out_scale, bias)


def kw_conv(x: torch.Tensor,
            attention: torch.Tensor,
            warehouse: torch.Tensor,
            geometry: ConvGeometry,
            bias: Optional[torch.Tensor] = None,
            out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Assemble each sample's kernel and convolve: the seam for fast paths.

    Every formulation (:func:`~mmkw.cnn.kw_conv_blocked`,
    :func:`kw_conv_reference`, :func:`kw_conv_unfold`) takes these
    arguments.

    Args:
        x (Tensor): ``[B, C_in, *spatial]`` input.
        attention (Tensor): ``[B * m, n]`` mixture weights.
        warehouse (Tensor): ``[n, c_o, c_i, 1, ...]`` cells.
        geometry (ConvGeometry): The layer's kernel shape, stride, padding,
            dilation, groups and split.
        bias (Tensor, optional): Static ``[C_out]`` bias.
        out_scale (Tensor, optional): ``[C_out]`` factors of the output
            channels (equivalently of the kernel rows), applied before
            ``bias`` (a folded BatchNorm).

    Returns:
        Tensor: ``[B, C_out, *spatial_out]``.

    ``torch.fx`` traces it as one call (see :mod:`mmkw.cnn.layers`);
    ``torch.compile`` (and ``torch.export``) records the fast path as the
    custom op ``mmkw::kw_conv_blocked`` (:func:`~mmkw.cnn.custom_op.
    kw_conv_op`), whatever :func:`kw_conv_implementation` says;
    ``torch.onnx.export`` records :func:`kw_conv_unfold`; ``torch.jit``
    tracing (FLOP counters such as MMEngine's) records the official
    formulation, whose aten ops show the kernel assembly and the
    convolution. A batch of no samples gives an empty output.
    """
    tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    if not tracing and x.shape[0] == 0:
        return _empty_batch(x, attention, warehouse, geometry, bias, out_scale)
    if torch.onnx.is_in_onnx_export():
        formulation = kw_conv_unfold
    elif torch.compiler.is_compiling():
        # A compiled graph fixes its formulation when it is traced (Dynamo
        # cannot read a context variable): the fast path, as an opaque
        # custom op that runs the eager blocked code (mmkw.cnn.custom_op).
        formulation = kw_conv_op
    else:
        formulation = _formulation(_implementation.get())
    return formulation(x, attention, warehouse, geometry, bias, out_scale)


def _formulation(implementation: str):
    """The eager formulation of ``implementation``."""
    if implementation == 'unfold':
        formulation = kw_conv_unfold
    elif implementation == 'blocked' and not torch.jit.is_tracing():
        formulation = kw_conv_blocked
    else:
        formulation = kw_conv_reference
    return formulation
