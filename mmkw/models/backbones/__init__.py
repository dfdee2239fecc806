"""KernelWarehouse backbones."""
from .kw_convnext import KWConvNeXt
from .kw_resnet import KWResNet

__all__ = ['KWConvNeXt', 'KWResNet']
