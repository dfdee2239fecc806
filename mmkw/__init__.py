"""mmkw: KernelWarehouse (Li & Yao, ICML 2024) for OpenMMLab.

``import mmkw`` registers every mmkw model, hook and fix with MMEngine,
MMPretrain and MMDetection, so ``custom_imports=dict(imports=['mmkw'])`` is
all a config needs. The KernelWarehouse core (:mod:`mmkw.cnn`) depends on
PyTorch alone and is importable without the OpenMMLab stack.
"""
import importlib.util
import warnings

# mmengine and mmcv import pkg_resources, which warns on import that it is
# deprecated; the pinned setuptools<82 (requirements/torch.txt) is there
# precisely because they need it, so the warning only adds console noise to
# every command. Ignore that one message, before anything imports mmengine.
warnings.filterwarnings(
    'ignore',
    message='pkg_resources is deprecated as an API',
    category=UserWarning)

from .cnn import convert_to_kw, get_temperature, set_temperature  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    '__version__', 'set_temperature', 'get_temperature', 'convert_to_kw'
]

if importlib.util.find_spec('mmengine') is not None:
    # The OpenMMLab integration: registries, models, hooks, compat fixes,
    # ``mmkw::`` config paths and the model index.
    import mmkw_config_hook  # noqa: E402
    from . import engine, models  # noqa: F401,E402
    from .apis import register_model_index  # noqa: E402

    mmkw_config_hook.install()
    register_model_index()
