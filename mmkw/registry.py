"""Registries of mmkw and its registration into MMPretrain and MMDetection.

mmkw has its own scope (``mmkw``) whose registries are children of
MMEngine's root registries, so ``type='mmkw.KWResNet'`` resolves from any
scope. MMPretrain's and MMDetection's registries are siblings under that
root and do not see each other's types, so every mmkw model is also
registered in both: ``type='KWResNet'`` builds with ``default_scope``
``mmpretrain`` or ``mmdet`` and from either registry directly.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

__all__ = ['MODELS', 'HOOKS', 'register_model', 'register_hook']

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmkw', locations=['mmkw.models'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmkw', locations=['mmkw.engine'])


def _downstream(name: str):
    """The registries named ``name`` of MMPretrain and MMDetection."""
    from mmdet import registry as mmdet_registry
    from mmpretrain import registry as mmpretrain_registry
    return [getattr(mmpretrain_registry, name), getattr(mmdet_registry, name)]


def register_model(cls):
    """Register a model class in mmkw's, MMPretrain's and MMDetection's
    ``MODELS``."""
    for registry in [MODELS] + _downstream('MODELS'):
        registry.register_module(module=cls)
    return cls


def register_hook(cls):
    """Register a hook class in mmkw's, MMPretrain's and MMDetection's
    ``HOOKS``."""
    for registry in [HOOKS] + _downstream('HOOKS'):
        registry.register_module(module=cls)
    return cls
