"""``type='KWConverted'``: any registered backbone, made KernelWarehouse."""
from typing import Mapping, Optional, Sequence, Union

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.registry import MODELS as ROOT_MODELS

from mmkw.cnn import convert_to_kw
from mmkw.registry import register_model
from .backbones.utils import attention_norm_layer

__all__ = ['KWConverted']


def KWConverted(backbone: dict,
                budget: Union[float, Mapping[str, float]] = 1.0,
                rule: Union[str, Mapping[str, str]] = 'stage',
                plain: Optional[Sequence[str]] = None,
                input_shape: Sequence[int] = (3, 224, 224),
                attention_init: bool = True,
                reduction: float = 0.0625,
                cell_ratio: Optional[float] = None,
                nonlocal_basis_ratio: float = 1.0,
                attention_norm_cfg: Optional[dict] = None) -> nn.Module:
    """Build ``backbone`` from its config and make its convs KW.

    A builder registered as a model type (MMEngine builds functions as it
    builds classes), so that what it returns is the backbone itself: its
    class, module names, ``init_cfg``, ``frozen_stages`` and outputs are
    unchanged, and the warehouses live in ``backbone.warehouse_manager``.
    See :func:`mmkw.convert_to_kw` for the rules; the plan is logged.

    Args:
        backbone (dict): Config of any backbone, e.g.
            ``dict(type='mmdet.CSPDarknet', deepen_factor=0.33, ...)`` (a
            type without scope is looked up in the current default scope).
        budget, rule, plain, input_shape, attention_init: As
            :func:`mmkw.convert_to_kw`.
        reduction (float): Attention hidden ratio. Defaults to 0.0625.
        cell_ratio (float, optional): Cell channels as a fraction of the
            channel gcd. Defaults to None (1 for ``b >= 1``, 0.5 below).
        nonlocal_basis_ratio (float): Below 1 enables the attention's
            non-local basis mapping, which keeps the attention small when
            a warehouse holds many small cells (grouped convs). Defaults
            to 1.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer; None picks ``BN1d`` (``SyncBN`` when the backbone's
            ``norm_cfg`` is SyncBN). Defaults to None.

    Returns:
        nn.Module: The converted backbone.

    Example:
        >>> backbone = dict(
        ...     type='KWConverted',
        ...     backbone=dict(type='mmdet.CSPDarknet', deepen_factor=0.33,
        ...                   widen_factor=0.5),
        ...     budget=1.0, rule='stage')
    """
    model = ROOT_MODELS.build(backbone)
    plan = convert_to_kw(
        model,
        budget=budget,
        rule=rule,
        plain=plain,
        input_shape=input_shape,
        attention_init=attention_init,
        reduction=reduction,
        cell_ratio=cell_ratio,
        nonlocal_basis_ratio=nonlocal_basis_ratio,
        norm_layer=attention_norm_layer(attention_norm_cfg,
                                        backbone.get('norm_cfg')))
    print_log(
        f'KWConverted {type(model).__name__} (rule={rule!r}):\n' +
        plan.table(),
        logger='current')
    return model


register_model(KWConverted)
