"""The convolution geometry of a KW layer, as one immutable record."""
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import torch.nn.functional as F

__all__ = ['ConvGeometry', 'conv_function']


@dataclass(frozen=True)
class ConvGeometry:
    """What a KW convolution needs besides its tensors.

    A KW layer makes it once, when it is bound; every formulation of
    :func:`~mmkw.cnn.kw_conv` (the fast path, the official one, the ONNX
    one) takes it as is. It is hashable, so the fast path caches what it
    derives per geometry and input shape.

    Args:
        weight_shape (tuple[int]): The static kernel shape
            ``(C_out, C_in / groups, *kernel_size)``.
        stride, padding, dilation (tuple[int]): One value per spatial axis.
        groups (int): Convolution groups.
        split (tuple[int, int, int]): ``(G_s, G_o, G_i)``: how the kernel is
            cut into warehouse cells (see :class:`~mmkw.cnn.LayerPlan`).
    """
    weight_shape: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: Tuple[int, ...]
    dilation: Tuple[int, ...]
    groups: int
    split: Tuple[int, int, int]

    def __post_init__(self):
        for name in ('weight_shape', 'stride', 'padding', 'dilation', 'split'):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        dims = len(self.weight_shape) - 2
        for name in ('stride', 'padding', 'dilation'):
            if len(getattr(self, name)) != dims:
                raise ValueError(
                    f'{name} must have {dims} values for a kernel of shape '
                    f'{self.weight_shape}, got {getattr(self, name)}')

    @property
    def dims(self) -> int:
        """Spatial axes (1 or 2; 3 for 3-D kernels)."""
        return len(self.weight_shape) - 2

    @property
    def out_channels(self) -> int:
        return self.weight_shape[0]

    @property
    def kernel_size(self) -> Tuple[int, ...]:
        return self.weight_shape[2:]

    def output_size(self, size: Sequence[int]) -> List[int]:
        """The spatial output size for input size ``size``, as
        ``nn.ConvNd``'s."""
        return [(size[i] + 2 * self.padding[i] - self.dilation[i] *
                 (self.kernel_size[i] - 1) - 1) // self.stride[i] + 1
                for i in range(self.dims)]


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def conv_function(dims: int) -> Callable:
    """``F.conv1d``, ``F.conv2d`` or ``F.conv3d``."""
    return _CONV[dims]
