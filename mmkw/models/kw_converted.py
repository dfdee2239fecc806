"""``type='KWConverted'``: any registered backbone, made KernelWarehouse."""
from typing import Mapping, Optional, Sequence, Union

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.registry import MODELS as ROOT_MODELS

from mmkw.cnn import convert_to_kw
from mmkw.registry import register_model
from .kw_args import Budget, CellRatio, build_warehouse_manager

__all__ = ['KWConverted']


def KWConverted(
    backbone: dict,
    budget: Budget = 1.0,
    reduction: Optional[float] = None,
    cell_ratio: CellRatio = None,
    attention_type: str = 'kw',
    nonlocal_basis_ratio: float = 1.0,
    attention_norm_cfg: Optional[dict] = None,
    attention_init: bool = True,
    rule: Union[str, Mapping[str, str]] = 'stage',
    plain: Optional[Sequence[str]] = None,
    input_shape: Sequence[int] = (3, 224, 224)
) -> nn.Module:
    """Build ``backbone`` from its config and make its convs KW.

    A builder registered as a model type (MMEngine builds functions as it
    builds classes), so that what it returns is the backbone itself: its
    class, module names, ``init_cfg``, ``frozen_stages`` and outputs are
    unchanged, and the warehouses live in ``backbone.warehouse_manager``.
    See :func:`mmkw.convert_to_kw` for the rules; the plan is logged. The
    KW arguments are those of every mmkw model (docs/design.md).

    Args:
        backbone (dict): Config of any backbone, e.g.
            ``dict(type='mmdet.CSPDarknet', deepen_factor=0.33, ...)`` (a
            type without scope is looked up in the current default scope).
        budget (float | dict): Parameter budget of every warehouse, or a
            dict by warehouse name or pattern (``{'stage3*': 2.0,
            'default': 1.0}``). Defaults to 1.
        reduction (float, optional): Attention hidden ratio; None: 1/16.
        cell_ratio (float | tuple[float, float], optional): Cell channels
            as a fraction of the channel gcd of the warehouses at the
            default budget; None: 1 for ``b >= 1``, 0.5 below.
        attention_type (str): ``'kw'`` or ``'kw_star'`` (KW*).
            Defaults to ``'kw'``.
        nonlocal_basis_ratio (float): Below 1, the attention's non-local
            basis mapping, which keeps the attention small when a warehouse
            holds many small cells (grouped convs). Defaults to 1.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer; None: ``BN1d`` (or follows the backbone's SyncBN/GN/LN
            ``norm_cfg``).
        attention_init (bool): Start at temperature 1 (training from
            scratch); False pins it to 0 (fine-tuning). Defaults to True.
        rule, plain, input_shape: As :func:`mmkw.convert_to_kw`.

    Returns:
        nn.Module: The converted backbone.

    Example:
        >>> backbone = dict(
        ...     type='KWConverted',
        ...     backbone=dict(type='mmdet.CSPDarknet', deepen_factor=0.33,
        ...                   widen_factor=0.5),
        ...     budget=1.0, rule='stage')
    """
    manager = build_warehouse_manager(
        budget,
        reduction,
        cell_ratio,
        attention_type,
        nonlocal_basis_ratio,
        attention_norm_cfg,
        norm_cfg=backbone.get('norm_cfg'))
    model = ROOT_MODELS.build(backbone)
    plan = convert_to_kw(
        model,
        budget=budget,
        rule=rule,
        plain=plain,
        input_shape=input_shape,
        attention_init=attention_init,
        manager=manager)
    print_log(
        f'KWConverted {type(model).__name__} (rule={rule!r}):\n' +
        plan.table(),
        logger='current')
    return model


register_model(KWConverted)
