"""Build the model of a config: the one way every mmkw tool does it."""
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from torch.overrides import TorchFunctionMode

__all__ = ['build_model_from_config']


def build_model_from_config(
        config: Union[str, Path, Config],
        device: Union[str, torch.device, None] = None) -> nn.Module:
    """Build ``cfg.model`` of an MMPretrain or MMDetection config.

    Nothing is initialised or loaded (``init_cfg`` checkpoints load only in
    ``init_weights()``).

    Args:
        config (str | Path | Config): Config file (its ``custom_imports``
            are imported) or a loaded config (options applied).
        device (str | torch.device, optional): Device to build on;
            ``'meta'`` builds shapes without memory. Defaults to None
            (the current default device).

    Returns:
        nn.Module: The model.
    """
    cfg = config if isinstance(config, Config) else Config.fromfile(
        str(config))
    scope = cfg.get('default_scope', 'mmpretrain')
    with DefaultScope.overwrite_default_scope(scope):
        if device is None:
            return MODELS.build(cfg.model)
        with torch.device(device), _HostSchedules():
            return MODELS.build(cfg.model)


class _HostSchedules(TorchFunctionMode):
    """Keep ``linspace``/``arange``/``logspace`` on the CPU inside a
    ``torch.device('meta')`` block: backbones compute drop-path schedules
    with them and call ``.item()``, which meta tensors cannot answer."""

    _FUNCS = (torch.linspace, torch.arange, torch.logspace)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self._FUNCS and kwargs.get('device') is None:
            kwargs['device'] = 'cpu'
        return func(*args, **kwargs)
