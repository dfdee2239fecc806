"""Conversion of official KernelWarehouse checkpoints to mmkw checkpoints.

The official code (Li & Yao, ICML 2024) stores its warehouses as
``warehouse_manager.weights.K`` (``K`` = warehouse index in creation order)
and every other tensor under torchvision-style module paths. mmkw keeps one
:class:`~mmkw.cnn.WarehouseManager` per KW network (a KW classifier head has
its own, after the backbone's), so the ``K``-th official warehouse is the
``K``-th warehouse met walking the model's managers in
``named_modules()`` order and each manager's ``plan.warehouses`` in order.
Every other key is renamed by the :class:`OfficialFamily` of the
architecture (ResNet, MobileNetV2, ConvNeXt ...), which each family module
registers with :func:`register_family`.

The conversion is checked both ways: every converted key must exist in the
model's ``state_dict()`` with the same shape, and every model key must be
produced; anything else raises a ``ValueError`` listing the offending keys.
"""
import argparse
import functools
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Set, Tuple, Union

import torch
import torch.nn as nn

from mmkw.cnn import KWAttention, bound_layers
from mmkw.models.builder import build_model_from_config

__all__ = [
    'OFFICIAL_WAREHOUSE_PREFIX', 'OfficialFamily', 'ConversionReport',
    'register_family', 'registered_families', 'detect_family',
    'load_official_checkpoint', 'model_warehouse_keys',
    'convert_official_state_dict', 'find_matching_config'
]

#: Prefix of the warehouse tensors in an official state dict.
OFFICIAL_WAREHOUSE_PREFIX = 'warehouse_manager.weights.'

# How many offending keys an error message quotes per category.
_SHOW = 5


@dataclass(frozen=True)
class OfficialFamily:
    """How to recognise and rename one official architecture family.

    Args:
        name (str): Family name, e.g. ``'resnet'``, ``'mobilenet_v2'``,
            ``'convnext'``.
        detect (Callable[[Set[str]], bool]): Given the keys of an official
            state dict, whether they belong to this family.
        rename (Callable[[str], str]): Maps one official non-warehouse key
            to the key of the mmkw ``ImageClassifier`` (``'backbone.…'`` or
            ``'head.…'``); raises ``KeyError`` for keys it cannot map.
        config_pattern (str): Glob, relative to the config directory, of the
            mmkw configs that may match a checkpoint of this family.
    """
    name: str
    detect: Callable[[Set[str]], bool]
    rename: Callable[[str], str]
    config_pattern: str


_FAMILIES: Dict[str, OfficialFamily] = {}


def register_family(family: OfficialFamily) -> OfficialFamily:
    """Register an official architecture family with the converter.

    Args:
        family (OfficialFamily): The family to add.

    Returns:
        OfficialFamily: ``family``, so the call can be used as an
        assignment.
    """
    if not isinstance(family, OfficialFamily):
        raise TypeError(f'expected an OfficialFamily, got {family!r}')
    known = _FAMILIES.get(family.name)
    if known is not None and known is not family:
        raise ValueError(f'an official family named {family.name!r} is '
                         f'already registered')
    _FAMILIES[family.name] = family
    return family


def registered_families() -> List[OfficialFamily]:
    """The registered families, in registration order."""
    return list(_FAMILIES.values())


def detect_family(keys) -> OfficialFamily:
    """The family whose ``detect`` accepts the official state-dict keys.

    Args:
        keys (Iterable[str]): Keys of an official state dict.

    Returns:
        OfficialFamily: The single matching family.

    Raises:
        ValueError: If the keys hold no warehouse (not a KernelWarehouse
            checkpoint), or no family or several families match.
    """
    keys = set(keys)
    if not any(k.startswith(OFFICIAL_WAREHOUSE_PREFIX) for k in keys):
        raise ValueError(
            f'not an official KernelWarehouse state dict: no key starts '
            f'with {OFFICIAL_WAREHOUSE_PREFIX!r} (first keys: '
            f'{_first(sorted(keys))})')
    matches = [f for f in _FAMILIES.values() if f.detect(keys)]
    if len(matches) != 1:
        names = [f.name for f in matches] or 'none'
        raise ValueError(
            f'cannot tell the architecture of the official checkpoint: '
            f'matching families: {names}; registered families: '
            f'{list(_FAMILIES)} (first keys: {_first(sorted(keys))})')
    return matches[0]


def load_official_checkpoint(
        path: Union[str, Path]) -> 'OrderedDict[str, torch.Tensor]':
    """Load the model state dict of an official KernelWarehouse checkpoint.

    Official checkpoints are dicts whose ``model`` entry is the state dict
    (beside optimizer, epoch, scaler and ``args``, an
    ``argparse.Namespace``). They are read with ``weights_only=True``; only
    ``argparse.Namespace`` is allowed in addition to tensors and containers.
    A bare state dict (or one under ``state_dict``) is accepted too, and a
    ``module.`` prefix left by DistributedDataParallel is removed.

    Args:
        path (str | Path): Checkpoint file.

    Returns:
        OrderedDict[str, Tensor]: The official state dict.
    """
    checkpoint = _load_checkpoint_file(path)
    state_dict = checkpoint
    if isinstance(checkpoint, Mapping):
        for entry in ('model', 'state_dict'):
            if isinstance(checkpoint.get(entry), Mapping):
                state_dict = checkpoint[entry]
                break
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ValueError(f'{path}: expected a state dict or a dict with a '
                         f"'model' state dict, got {type(state_dict)}")
    bad = [k for k, v in state_dict.items() if not torch.is_tensor(v)]
    if bad:
        raise ValueError(f'{path}: the state dict holds non-tensor entries: '
                         f'{_first(bad)} ({len(bad)} in all)')
    if all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    if _is_mmkw_state_dict(state_dict):
        raise ValueError(_ALREADY_MMKW.format(path=path))
    return OrderedDict(state_dict)


_ALREADY_MMKW = (
    '{path} is already an mmkw checkpoint (its warehouses are under '
    '"warehouse_manager.weights.<name>"), nothing to convert: load it with '
    'load_from, tools/test.py or init_cfg=dict(type="Pretrained", ...)')


def _is_mmkw_state_dict(state_dict: Mapping) -> bool:
    """mmkw names its warehouses, the official code numbers them."""
    return any('.weights.' in key and key.split('.weights.')[0].endswith(
        'warehouse_manager') and not key.split('.')[-1].isdigit()
               for key in state_dict)


def _load_checkpoint_file(path: Union[str, Path]):
    """The file read with ``weights_only`` and mmkw's allow-list plus
    ``argparse.Namespace``; a file that does not load raises a one-line
    :class:`~mmkw.engine.CheckpointLoadError` (a ``ValueError``) saying what
    it is, as every mmkw loader does."""
    from mmkw.engine.checkpoint import load_from_local
    return load_from_local(
        str(path), map_location='cpu', extra_globals=[argparse.Namespace])


def model_warehouse_keys(model: nn.Module) -> List[Tuple[str, tuple]]:
    """State-dict key and shape of every warehouse of ``model``.

    The ``K``-th entry is the target of official warehouse ``K``: managers
    in model order, each manager's warehouses in plan (index) order.

    Args:
        model (nn.Module): An mmkw model with bound KW layers.

    Returns:
        list[tuple[str, tuple]]: ``(key, shape)`` per warehouse.
    """
    managers: Dict[str, dict] = {}
    for record, _ in bound_layers(model):
        managers.setdefault(
            record.manager_path,
            {})[record.plan.warehouse_index] = (record.warehouse_key,
                                                record.warehouse_shape)
    return [
        warehouses[index] for warehouses in managers.values()
        for index in sorted(warehouses)
    ]


@dataclass
class ConversionReport:
    """What did not line up when converting into a given model.

    Attributes:
        unmapped (list[str]): Official keys with no mmkw counterpart.
        unexpected (list[str]): Converted keys the model does not have.
        missing (list[str]): Model keys nothing was converted to.
        mismatched (list[str]): Keys whose shapes differ (with shapes).
        duplicated (list[str]): mmkw keys produced by several official keys.
    """
    unmapped: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)
    duplicated: List[str] = field(default_factory=list)

    @property
    def num_problems(self) -> int:
        return (len(self.unmapped) + len(self.unexpected) + len(self.missing) +
                len(self.mismatched) + len(self.duplicated))

    def summary(self) -> str:
        """One line per non-empty category: count and the first keys."""
        parts = []
        for title in ('unmapped', 'unexpected', 'missing', 'mismatched',
                      'duplicated'):
            keys = getattr(self, title)
            if keys:
                parts.append(f'{len(keys)} {title}: {_first(keys)}')
        return '; '.join(parts) or 'no problems'


def _convert(state_dict: Mapping[str, torch.Tensor], model: nn.Module,
             family: OfficialFamily):
    """Convert without raising; returns the state dict and a report."""
    report = ConversionReport()
    warehouses = model_warehouse_keys(model)
    converted: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(OFFICIAL_WAREHOUSE_PREFIX):
            index = key[len(OFFICIAL_WAREHOUSE_PREFIX):]
            if not index.isdigit() or int(index) >= len(warehouses):
                report.unmapped.append(
                    f'{key} (the model has {len(warehouses)} warehouses)')
                continue
            new_key = warehouses[int(index)][0]
        else:
            try:
                new_key = family.rename(key)
            except KeyError:
                report.unmapped.append(key)
                continue
        if new_key in converted:
            report.duplicated.append(new_key)
        converted[new_key] = value
    # The official code keeps tau outside the state dict; converted models
    # start at tau = 0 (the learnt attention alone).
    for name, module in model.named_modules():
        if isinstance(module, KWAttention):
            converted[f'{name}.temperature'] = torch.zeros(())

    target = model.state_dict()
    for key, value in converted.items():
        if key not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.mismatched.append(f'{key} {tuple(value.shape)} != '
                                     f'{tuple(target[key].shape)}')
    report.missing = [k for k in target if k not in converted]
    ordered = OrderedDict((k, converted[k]) for k in target if k in converted)
    ordered.update((k, v) for k, v in converted.items() if k not in ordered)
    return ordered, report


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    model: nn.Module,
    family: Optional[OfficialFamily] = None
) -> 'OrderedDict[str, torch.Tensor]':
    """Convert an official state dict to the keys of an mmkw model.

    Args:
        state_dict (Mapping[str, Tensor]): Official model state dict.
        model (nn.Module): The mmkw ``ImageClassifier`` (or any module with
            the same keys) to convert for; it may live on the meta device.
        family (OfficialFamily, optional): The official family; detected
            from the keys if None. Defaults to None.

    Returns:
        OrderedDict[str, Tensor]: A state dict that loads strictly into
        ``model`` (in the model's key order), with every attention
        temperature set to 0.

    Raises:
        ValueError: If any official key cannot be mapped, any model key is
            left without a value, or any shape differs.
    """
    if family is None:
        family = detect_family(state_dict.keys())
    converted, report = _convert(state_dict, model, family)
    if report.num_problems:
        raise ValueError(f'the official {family.name} checkpoint does not fit '
                         f'{type(model).__name__}: {report.summary()}')
    return converted


def find_matching_config(
        state_dict: Mapping[str, torch.Tensor],
        config_dir: Union[str, Path]) -> Tuple[Path, OfficialFamily]:
    """Find the mmkw config whose model an official state dict fits exactly.

    Detects the family, then builds (on the meta device, so no memory is
    allocated) the model of every config matching ``family.config_pattern``
    in sorted order and converts into it; the first exact fit wins.

    Args:
        state_dict (Mapping[str, Tensor]): Official model state dict.
        config_dir (str | Path): Directory of the mmkw configs.

    Returns:
        tuple[Path, OfficialFamily]: The matching config and the family.

    Raises:
        ValueError: If the family is unknown or no config fits; the message
            names the configs tried and why the closest one failed.
    """
    family = detect_family(state_dict.keys())
    config_dir = Path(config_dir)
    candidates = sorted(config_dir.glob(family.config_pattern))
    if not candidates:
        raise ValueError(
            f'no config matches {family.config_pattern!r} in {config_dir} '
            f'for the official {family.name} checkpoint')
    closest = None
    for path in candidates:
        model = _meta_model(str(path.resolve()), path.stat().st_mtime_ns)
        _, report = _convert(state_dict, model, family)
        if not report.num_problems:
            return path, family
        if closest is None or report.num_problems < closest[1].num_problems:
            closest = (path, report)
    raise ValueError(
        f'no mmkw config fits the official {family.name} checkpoint; tried '
        f'{[p.name for p in candidates]}; the closest, {closest[0].name}, '
        f'has {closest[1].summary()}')


@functools.lru_cache(maxsize=32)
def _meta_model(path: str, mtime_ns: int) -> nn.Module:
    """Shape-only model of a config, kept for repeated (read-only) matching;
    ``mtime_ns`` invalidates the entry when the config file changes."""
    return build_model_from_config(path, device='meta')


def _first(keys, count: int = _SHOW) -> str:
    keys = list(keys)
    shown = ', '.join(str(k) for k in keys[:count])
    return f'[{shown}{", ..." if len(keys) > count else ""}]'
