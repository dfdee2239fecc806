"""mmkw: KernelWarehouse (Li & Yao, ICML 2024) for OpenMMLab.

``import mmkw`` registers every mmkw model and hook with MMEngine,
MMPretrain and MMDetection, so ``custom_imports=dict(imports=['mmkw'])`` is
all a config needs, and applies the few fixes to the stack that
:mod:`mmkw.compat` lists. The KernelWarehouse core (:mod:`mmkw.cnn`) depends
on PyTorch alone and is importable without the OpenMMLab stack.
"""
import importlib.util

from . import compat
from .cnn import convert_to_kw, get_temperature, set_temperature
from .version import __version__

__all__ = [
    '__version__', 'set_temperature', 'get_temperature', 'convert_to_kw'
]

# Every change mmkw makes to MMEngine and the rest of the stack, in the order
# mmkw.compat lists them (the first silences a warning of the pkg_resources
# import in mmengine and mmcv, so it comes before anything imports them);
# those for packages that are not installed are left out.
compat.apply_stack_patches()

if importlib.util.find_spec('mmengine') is not None:
    # The OpenMMLab integration: registries, models, hooks and the model
    # index.
    from . import engine, models  # noqa: F401,E402
    from .apis import register_model_index  # noqa: E402

    register_model_index()
