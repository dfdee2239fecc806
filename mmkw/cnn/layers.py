"""KernelWarehouse convolution and linear layers."""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from .attention import KWAttention
from .bound import BoundLayer
from .functional import kw_conv, scale_and_bias
from .geometry import ConvGeometry
from .loading import CHECKPOINT_HINT, checkpoint_name
from .plan import LayerSpec

# torch.fx records each KW convolution as one ``kw_conv`` call instead of
# tracing into its shape-dependent code, so traced models keep a symbolic
# batch (``fx.wrap`` patches this module's name during tracing).
torch.fx.wrap('kw_conv')

__all__ = ['KWConvNd', 'KWConv1d', 'KWConv2d', 'KWLinear']

_size = Union[int, Tuple[int, ...]]


def _ntuple(value: _size, n: int, name: str) -> Tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        return (value, ) * n
    value = tuple(value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ValueError(f'{name} must be an int or {n} ints, got {value!r}')
    return value


class KWConvNd(nn.Module):
    """Base of the KernelWarehouse layers.

    A KW layer holds no kernel. It declares its shape and the warehouse it
    draws from; a :class:`~mmkw.cnn.WarehouseManager` later binds it, which
    creates its attention and links it to the shared warehouse tensor. At
    every forward the kernel of each sample is mixed from warehouse cells.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple): Kernel size.
        stride, padding, dilation (int | tuple): As in ``nn.ConvNd``.
        groups (int): Convolution groups. Defaults to 1.
        bias (bool): Add a static learnable bias. Defaults to False.
        warehouse (str): Name of the warehouse to draw cells from.
            Defaults to ``'default'``.
    """
    dims: int = 0

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: _size,
                 stride: _size = 1,
                 padding: _size = 0,
                 dilation: _size = 1,
                 groups: int = 1,
                 bias: bool = False,
                 warehouse: str = 'default',
                 device=None,
                 dtype=None):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _ntuple(kernel_size, self.dims, 'kernel_size')
        self.stride = _ntuple(stride, self.dims, 'stride')
        self.padding = _ntuple(padding, self.dims, 'padding')
        self.dilation = _ntuple(dilation, self.dims, 'dilation')
        # Checked here, as nn.Conv2d checks its arguments, not at forward.
        least = dict(kernel_size=1, stride=1, padding=0, dilation=1)
        for name, minimum in least.items():
            values = getattr(self, name)
            if any(
                    isinstance(v, bool) or not isinstance(v, int)
                    or v < minimum for v in values):
                raise ValueError(f'{name} must be ints >= {minimum}, got '
                                 f'{values!r}')
        self.groups = groups
        self.warehouse = warehouse
        # The nn.ConvNd attributes that mmcv's ConvModule mirrors.
        self.transposed = False
        self.output_padding = (0, ) * self.dims
        # Validates channels and groups early, with the layer's own numbers.
        LayerSpec('KW layer', warehouse, in_channels, out_channels,
                  self.kernel_size, groups)
        if bias:
            self.bias = nn.Parameter(
                torch.zeros(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter('bias', None)
        self.attention: Optional[KWAttention] = None
        #: What binding gave the layer (:class:`~mmkw.cnn.BoundLayer`).
        self.bound: Optional[BoundLayer] = None
        # The manager is held outside the module tree so its warehouses are
        # registered (and saved) once, not once per layer. A tuple keeps
        # ``copy.deepcopy`` of a whole model pointing at the copied manager.
        self._manager: tuple = ()

    def layer_spec(self, name: str) -> LayerSpec:
        """What this layer declares to the plan, under module path ``name``."""
        return LayerSpec(name, self.warehouse, self.in_channels,
                         self.out_channels, self.kernel_size, self.groups)

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups,
                *self.kernel_size)

    def conv_geometry(self, split: Tuple[int, int, int]) -> ConvGeometry:
        """The layer's :class:`~mmkw.cnn.ConvGeometry` for a cell split."""
        return ConvGeometry(self.weight_shape, self.stride, self.padding,
                            self.dilation, self.groups, split)

    @property
    def geometry(self) -> Optional[ConvGeometry]:
        """The conv geometry of the bound layer (None before binding)."""
        return None if self.bound is None else self.bound.geometry

    def bind(self, manager: nn.Module, record: BoundLayer,
             attention: KWAttention) -> None:
        """Attach the layer to its warehouse (called by the manager)."""
        self.bound = record
        self.attention = attention
        self._manager = (manager, )

    def warehouse_weight(self) -> torch.Tensor:
        """The shared warehouse tensor ``[n, c_o, c_i, 1, ...]``."""
        if not self._manager:
            raise RuntimeError(
                f'{type(self).__name__} drawing from warehouse '
                f'{self.warehouse!r} is not bound to a WarehouseManager; '
                f'call manager.bind(network) after building the network')
        return self._manager[0].weights[self.warehouse]

    def forward(self,
                x: torch.Tensor,
                out_scale: Optional[torch.Tensor] = None,
                out_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Convolve ``x`` with its per-sample kernels.

        Args:
            x (Tensor): ``[B, C_in, *spatial]``.
            out_scale (Tensor, optional): ``[C_out]`` factors of the output
                channels, before the bias (a folded norm, see
                :mod:`mmkw.engine.efficient_conv_bn`). Defaults to None.
            out_bias (Tensor, optional): ``[C_out]`` bias used instead of
                the layer's own (which the caller has folded in).
                Defaults to None.
        """
        warehouse = self.warehouse_weight()
        bias = self.bias if out_bias is None else out_bias
        attention = self.attention(x)
        if attention.in_scale is not None:  # KW*: input channels
            x = x * attention.in_scale[(..., ) + (None, ) * self.dims]
        if attention.out_scale is None:
            return kw_conv(x, attention.alpha, warehouse, self.geometry, bias,
                           out_scale)
        # KW*: output channels, before the bias.
        out = kw_conv(x, attention.alpha, warehouse, self.geometry, None,
                      out_scale)
        return scale_and_bias(out, attention.out_scale, bias)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args):
        """Refuse a plain kernel for this layer: the checkpoint belongs to a
        plain network (or an unconverted one), not to this KW model."""
        if prefix + 'weight' in state_dict:
            raise ValueError(
                f'{checkpoint_name()} has a plain kernel '
                f'{prefix + "weight"!r} for a '
                f'KW layer, which has none: it is a plain network\'s '
                f'checkpoint, not one of this KW model; {CHECKPOINT_HINT}')
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        s = (f'{self.in_channels}, {self.out_channels}, '
             f'kernel_size={self.kernel_size}, stride={self.stride}')
        if any(self.padding):
            s += f', padding={self.padding}'
        if any(d != 1 for d in self.dilation):
            s += f', dilation={self.dilation}'
        if self.groups != 1:
            s += f', groups={self.groups}'
        if self.bias is None:
            s += ', bias=False'
        return s + f', warehouse={self.warehouse!r}'


class KWConv1d(KWConvNd):
    """1-D KernelWarehouse convolution. See :class:`KWConvNd`."""
    dims = 1


class KWConv2d(KWConvNd):
    """2-D KernelWarehouse convolution. See :class:`KWConvNd`."""
    dims = 2


class KWLinear(KWConvNd):
    """KernelWarehouse linear layer: a kernel-1 conv over a length-1 axis.

    Takes ``[..., in_features]`` like ``nn.Linear``; the attention pools over
    all but the first and last axes, as in the official code.

    Args:
        in_features (int): Input features.
        out_features (int): Output features.
        bias (bool): Add a static learnable bias. Defaults to True.
        warehouse (str): Warehouse name. Defaults to ``'default'``.
    """
    dims = 1

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 bias: bool = True,
                 warehouse: str = 'default',
                 device=None,
                 dtype=None):
        super().__init__(
            in_features,
            out_features,
            1,
            bias=bias,
            warehouse=warehouse,
            device=device,
            dtype=dtype)

    @property
    def in_features(self) -> int:
        return self.in_channels

    @property
    def out_features(self) -> int:
        return self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Shapes as tensors' attributes, not unpacked: torch.fx keeps the
        # batch symbolic.
        # ``[..., C] -> [B, L, C]``; an empty batch reshapes too.
        leading = x.shape[:-1]
        x = x.unsqueeze(1).flatten(1, -2).transpose(1, 2)
        out = super().forward(x)
        return out.transpose(1, 2).reshape(leading + (self.out_channels, ))

    def extra_repr(self) -> str:
        return (f'in_features={self.in_channels}, '
                f'out_features={self.out_channels}, '
                f'bias={self.bias is not None}, warehouse={self.warehouse!r}')
