"""mmkw: KernelWarehouse (Li & Yao, ICML 2024) for OpenMMLab.

``import mmkw`` registers every mmkw model, hook and fix with MMEngine,
MMPretrain and MMDetection, so ``custom_imports=dict(imports=['mmkw'])`` is
all a config needs. The KernelWarehouse core (:mod:`mmkw.cnn`) depends on
PyTorch alone and is importable without the OpenMMLab stack.
"""
import importlib.util

from .cnn import convert_to_kw, get_temperature, set_temperature
from .version import __version__

__all__ = [
    '__version__', 'set_temperature', 'get_temperature', 'convert_to_kw'
]

if importlib.util.find_spec('mmengine') is not None:
    # The OpenMMLab integration: registries, models, hooks, compat fixes.
    from . import engine, models  # noqa: F401,E402
