"""Let MMEngine configs inherit mmkw's: ``_base_ = 'mmkw::<config>.py'``.

MMEngine 0.10.7 resolves ``package::path`` bases while it parses a config
file, before ``custom_imports`` run, and only for the packages of its own
hard-coded table (``mmengine.config.utils.MODULE2PACKAGE``); it also tags
every inherited dict with the package name as its registry scope. So a
user's config with ``_base_ = 'mmkw::mask-rcnn_kw-r50_1x_coco.py'`` would
fail in a fresh process whatever it imports.

:func:`install` teaches MMEngine's ``Config`` one more package: an
``mmkw::`` path names a file of mmkw's configs (``mmkw/.mim/configs`` in an
installed wheel, the checkout's ``configs/`` otherwise), and the inherited
dicts keep the scope their own config gives them (mmkw's configs are
MMPretrain or MMDetection configs; mmkw's own types are registered in
both). Every other path goes to MMEngine unchanged.

The wheel installs ``mmkw-config-hook.pth``, which calls :func:`install` at
interpreter start-up; it imports nothing: the patch is applied when (and
if) ``mmengine.config.config`` is first imported. ``import mmkw`` calls it
too (a checkout without the ``.pth``). This module stands outside the
``mmkw`` package so that start-up never imports torch.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os.path as osp
import sys

__all__ = ['install', 'mmkw_config_path']

_TARGET = 'mmengine.config.config'
PREFIX = 'mmkw::'


def mmkw_config_path(path: str) -> str:
    """The file that ``mmkw::<path>`` names.

    Args:
        path (str): A config path relative to mmkw's ``configs/``, e.g.
            ``kw1x-resnet50_8xb32_in1k.py`` or ``demo/....py``.

    Returns:
        str: Its absolute path.

    Raises:
        FileNotFoundError: If mmkw has no such config.
    """
    spec = importlib.util.find_spec('mmkw')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f'{PREFIX}{path}: mmkw is not installed')
    package = list(spec.submodule_search_locations)[0]
    roots = [
        osp.join(package, '.mim', 'configs'),  # an installed wheel
        osp.join(osp.dirname(package), 'configs'),  # a checkout
    ]
    for root in roots:
        candidate = osp.join(root, path)
        if osp.isfile(candidate):
            return osp.abspath(candidate)
    raise FileNotFoundError(
        f'{PREFIX}{path}: mmkw has no such config (looked in '
        f'{" and ".join(r for r in roots if osp.isdir(r))})')


def _patch(module) -> None:
    config_cls = module.Config
    if getattr(config_cls._get_cfg_path, '_mmkw', False):
        return
    original = config_cls._get_cfg_path

    def _get_cfg_path(cfg_path: str, filename: str):
        if cfg_path.startswith(PREFIX):
            # No scope: the inherited dicts are built in the scope their
            # config sets (its default_scope or their own ``_scope_``).
            return mmkw_config_path(cfg_path[len(PREFIX):]), None
        return original(cfg_path, filename)

    _get_cfg_path._mmkw = True
    config_cls._get_cfg_path = staticmethod(_get_cfg_path)


class _Loader(importlib.abc.Loader):
    """MMEngine's own loader, then the patch."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of ``mmengine.config.config`` when it is imported."""

    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    """Patch MMEngine's ``Config`` now if it is imported, else when it is."""
    if _TARGET in sys.modules:
        _patch(sys.modules[_TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
