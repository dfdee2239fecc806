"""MMPretrain / MMDetection models built on the KernelWarehouse core."""
from .backbones import *  # noqa: F401,F403
from .backbones import __all__ as _backbones
from .builder import build_model_from_config
from .heads import *  # noqa: F401,F403
from .heads import __all__ as _heads
from .kw_args import KW_ARGS, KW_DEFAULTS, build_warehouse_manager
from .kw_converted import KWConverted

__all__ = list(_backbones) + list(_heads) + [
    'KWConverted', 'build_model_from_config', 'KW_ARGS', 'KW_DEFAULTS',
    'build_warehouse_manager'
]
