"""Kernel assembly and the per-sample convolution of a KW layer.

Everything a faster implementation may change lives behind
:func:`kw_conv`; :func:`assemble_kernels` with :func:`kw_conv_reference` is
the literal formulation of kernelwarehouse.md section 2.5, kept as the
reference the tests compare other paths against.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ['assemble_kernels', 'kw_conv_reference', 'kw_conv']

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def assemble_kernels(attention: torch.Tensor, warehouse: torch.Tensor,
                     split: Tuple[int, int, int],
                     weight_shape: Sequence[int]) -> torch.Tensor:
    """Mix warehouse cells into one kernel per sample.

    Args:
        attention (Tensor): ``[B * m, n]`` mixture weights.
        warehouse (Tensor): ``[n, c_o, c_i, 1, ...]`` cells.
        split (tuple[int, int, int]): ``(G_s, G_o, G_i)`` of the layer.
        weight_shape (Sequence[int]): Static kernel shape
            ``[C_out, C_in / groups, *k]``.

    Returns:
        Tensor: ``[B * C_out, C_in / groups, *k]``, the kernels of the
        batch stacked along the output channels.
    """
    g_s, g_o, g_i = split
    n, c_o, c_i = warehouse.shape[:3]
    mixed = torch.mm(attention, warehouse.reshape(n, -1))
    batch = mixed.shape[0] // (g_s * g_o * g_i)
    # [B, G_s, G_o, G_i, c_o, c_i] -> [B, G_o, c_o, G_i, c_i, G_s]
    mixed = mixed.reshape(batch, g_s, g_o, g_i, c_o, c_i)
    mixed = mixed.permute(0, 2, 4, 3, 5, 1)
    return mixed.reshape(batch * weight_shape[0], *weight_shape[1:])


def kw_conv_reference(x: torch.Tensor, attention: torch.Tensor,
                      warehouse: torch.Tensor, split: Tuple[int, int, int],
                      weight_shape: Sequence[int], stride, padding, dilation,
                      groups: int,
                      bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-sample convolution as the official code runs it: the batch is
    folded into the channels and one grouped convolution with
    ``groups * B`` groups applies every sample's own kernel."""
    batch = x.shape[0]
    dims = len(weight_shape) - 2
    kernels = assemble_kernels(attention, warehouse, split, weight_shape)
    out = _CONV[dims](
        x.reshape(1, -1, *x.shape[2:]),
        kernels,
        None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups * batch)
    out = out.reshape(batch, weight_shape[0], *out.shape[2:])
    if bias is not None:
        out = out + bias.reshape(1, -1, *([1] * dims))
    return out


def kw_conv(x: torch.Tensor, attention: torch.Tensor, warehouse: torch.Tensor,
            split: Tuple[int, int, int], weight_shape: Sequence[int], stride,
            padding, dilation, groups: int,
            bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Assemble each sample's kernel and convolve: the seam for fast paths.

    Args:
        x (Tensor): ``[B, C_in, *spatial]`` input.
        attention (Tensor): ``[B * m, n]`` mixture weights.
        warehouse (Tensor): ``[n, c_o, c_i, 1, ...]`` cells.
        split (tuple[int, int, int]): ``(G_s, G_o, G_i)`` of the layer.
        weight_shape (Sequence[int]): ``[C_out, C_in / groups, *k]``.
        stride, padding, dilation: As for ``torch.nn.functional.conv2d``.
        groups (int): Convolution groups of the layer.
        bias (Tensor, optional): Static ``[C_out]`` bias.

    Returns:
        Tensor: ``[B, C_out, *spatial_out]``.
    """
    return kw_conv_reference(x, attention, warehouse, split, weight_shape,
                             stride, padding, dilation, groups, bias)
