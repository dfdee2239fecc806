"""KernelWarehouse backbones."""
from .kw_convnext import KWConvNeXt
from .kw_mobilenet_v2 import KWMobileNetV2
from .kw_resnet import KWResNet
from .kw_vit import KWVisionTransformer

__all__ = ['KWConvNeXt', 'KWMobileNetV2', 'KWResNet', 'KWVisionTransformer']
