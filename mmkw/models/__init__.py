"""MMPretrain / MMDetection models built on the KernelWarehouse core."""
from .backbones import *  # noqa: F401,F403
from .backbones import __all__ as _backbones

__all__ = list(_backbones)
