"""The KW arguments every mmkw model takes, checked in one place.

Every KW backbone, :class:`~mmkw.models.KWLinearClsHead` and
:func:`~mmkw.models.KWConverted` take the arguments of :data:`KW_ARGS`, with
the defaults of :data:`KW_DEFAULTS` (the head's ``budget`` and
``cell_ratio`` excepted: it is the official 1/2x MobileNetV2 classifier).
``None`` picks the family's official value; docs/design.md tables them.
"""
import functools
import math
from typing import Callable, Optional, Tuple, Union

import torch.nn as nn
from mmcv.cnn import build_norm_layer

from mmkw.cnn import WarehouseManager, check_positive
from mmkw.cnn.convert import check_budget, default_budget

__all__ = [
    'KW_ARGS', 'KW_DEFAULTS', 'build_warehouse_manager', 'attention_norm_layer'
]

#: The KW arguments of every KW model, in signature order.
KW_ARGS: Tuple[str, ...] = ('budget', 'reduction', 'cell_ratio',
                            'attention_type', 'nonlocal_basis_ratio',
                            'attention_norm_cfg', 'attention_init')

#: Their defaults (``None``: the family's official value).
KW_DEFAULTS = dict(
    budget=1.0,
    reduction=None,
    cell_ratio=None,
    attention_type='kw',
    nonlocal_basis_ratio=1.0,
    attention_norm_cfg=None,
    attention_init=True)

Budget = Union[float, dict]
CellRatio = Optional[Union[float, Tuple[float, float]]]


def build_warehouse_manager(
        budget: Budget = 1.0,
        reduction: Optional[float] = None,
        cell_ratio: CellRatio = None,
        attention_type: str = 'kw',
        nonlocal_basis_ratio: float = 1.0,
        attention_norm_cfg: Optional[dict] = None,
        *,
        norm_cfg: Optional[dict] = None,
        official_reduction: float = 0.0625,
        official_norm: Optional[dict] = None) -> WarehouseManager:
    """Check the KW arguments of a model and build its (unbound) manager.

    Called before the model's plain parent is built, so that a bad value
    fails fast with a ``ValueError`` naming the argument and the value. The
    keys of a ``budget`` dict are checked when the layout is known
    (:func:`mmkw.cnn.convert.apply_budget`); ``attention_init`` when the
    manager binds.

    Args:
        budget (float | dict): A number for every warehouse, or a dict of
            budgets by warehouse name, warehouse group or pattern, with
            ``'default'`` for the rest (1 if absent).
        reduction (float, optional): Attention hidden ratio, in (0, 1];
            None picks ``official_reduction``.
        cell_ratio (float | tuple[float, float], optional): Cell channels
            as a fraction of the channel gcd (or ``(out, in)``) of the
            warehouses at the default budget; None: 1 for ``b >= 1``, 0.5
            below.
        attention_type (str): ``'kw'`` or ``'kw_star'`` (KW*).
        nonlocal_basis_ratio (float): In (0, 1]; below 1 enables the
            attention's non-local basis mapping.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer, see :func:`attention_norm_layer`.
        norm_cfg (dict, optional): The model's own norm config.
        official_reduction (float): The family's official reduction.
        official_norm (dict, optional): The family's official attention
            norm; ``BN1d`` if None.

    Returns:
        WarehouseManager: Its budget is the default one.
    """
    budget = check_budget(budget)
    if reduction is None:
        reduction = official_reduction
    check_positive('reduction', reduction)
    check_positive('nonlocal_basis_ratio', nonlocal_basis_ratio)
    return WarehouseManager(
        budget=default_budget(budget),
        cell_ratio=cell_ratio,
        reduction=reduction,
        nonlocal_basis_ratio=nonlocal_basis_ratio,
        norm_layer=attention_norm_layer(attention_norm_cfg, norm_cfg,
                                        official_norm),
        attention_type=attention_type)


def _build_norm(cfg: dict, num_features: int) -> nn.Module:
    return build_norm_layer(cfg, num_features)[1]


def _group_norm(num_groups: int, num_features: int) -> nn.Module:
    """GroupNorm with the most groups, up to ``num_groups``, that divide
    ``num_features`` (an attention's hidden width varies per layer)."""
    return nn.GroupNorm(math.gcd(num_groups, num_features), num_features)


#: Model norms that use no batch statistics.
_BATCH_INDEPENDENT = ('GN', 'LN', 'LN2d', 'IN', 'IN1d', 'IN2d')


def attention_norm_layer(
        attention_norm_cfg: Optional[dict],
        norm_cfg: Optional[dict] = None,
        default: Optional[dict] = None) -> Callable[[int], nn.Module]:
    """The norm of every KW attention's hidden layer, from a config.

    Args:
        attention_norm_cfg (dict, optional): An mmcv norm config (``BN1d``,
            ``SyncBN``, ``GN``, ``LN``, ...). None follows the model where
            it matters: ``SyncBN`` when ``norm_cfg`` is SyncBN (in DDP the
            attention statistics are synchronised like the model's); a
            batch-independent norm when ``norm_cfg`` is one (GN: a GroupNorm
            with a group count dividing the hidden width; LN, IN: a
            LayerNorm), since a user picks those to avoid batch statistics;
            else ``default``.
        norm_cfg (dict, optional): The model's norm config.
        default (dict, optional): The family's official norm;
            ``dict(type='BN1d')`` if None.

    Returns:
        Callable: Builds the norm from the hidden width (picklable).
    """
    model_norm = (norm_cfg or {}).get('type')
    if attention_norm_cfg is None and model_norm in _BATCH_INDEPENDENT:
        if model_norm == 'GN':
            return functools.partial(_group_norm,
                                     int(norm_cfg.get('num_groups', 32)))
        return nn.LayerNorm
    if attention_norm_cfg is None:
        if model_norm == 'SyncBN':
            attention_norm_cfg = dict(type='SyncBN')
        else:
            attention_norm_cfg = default or dict(type='BN1d')
    if not isinstance(attention_norm_cfg, dict) or \
            'type' not in attention_norm_cfg:
        raise ValueError(f'attention_norm_cfg must be a norm config dict '
                         f'such as dict(type="BN1d"), got '
                         f'{attention_norm_cfg!r}')
    _build_norm(attention_norm_cfg, 16)  # fails early on a bad config
    return functools.partial(_build_norm, dict(attention_norm_cfg))
