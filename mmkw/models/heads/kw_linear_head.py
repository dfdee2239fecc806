"""Linear classification head whose fc draws from a KernelWarehouse."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import LinearClsHead

from mmkw.cnn import KWLayout
from mmkw.registry import register_model
from ..backbones.base import KWModelMixin
from ..kw_args import Budget, CellRatio, build_warehouse_manager

__all__ = ['KWLinearClsHead']


@register_model
class KWLinearClsHead(KWModelMixin, LinearClsHead):
    """MMPretrain's ``LinearClsHead`` with a KernelWarehouse ``fc``.

    ``fc`` is a :class:`~mmkw.cnn.KWLinear` with a bias drawing from a
    warehouse of its own (``fc``), as in the official KernelWarehouse
    MobileNetV2 1/2x models (Li & Yao, ICML 2024), whose classifier the
    defaults are: budget 1/2, cells of ``[num_classes, in_channels / 40,
    1]`` and reduction 1/32. Its temperature follows
    :func:`mmkw.set_temperature` and the temperature hook like a backbone's
    layers. The KW arguments are those of every mmkw model
    (docs/design.md).

    Args:
        num_classes (int): Number of categories.
        in_channels (int): Input feature channels.
        budget (float | dict): Parameter budget of the fc warehouse.
            Defaults to 0.5.
        reduction (float, optional): Attention hidden ratio; None: 1/32.
        cell_ratio (float | tuple[float, float], optional): Cell size as a
            fraction of the output / input features; None: 1 for
            ``b >= 1``, 0.5 below. Defaults to ``(1, 0.025)``.
        attention_type (str): ``'kw'`` or ``'kw_star'`` (KW*).
            Defaults to ``'kw'``.
        nonlocal_basis_ratio (float): Below 1, the attention's non-local
            basis mapping. Defaults to 1.
        attention_norm_cfg (dict, optional): Norm of the attention's hidden
            layer; None: ``BN1d``.
        attention_init (bool): Start at temperature 1 (training from
            scratch); False pins it to 0 (fine-tuning). Defaults to True.
        dropout (float): Dropout before ``fc`` (0.1 in the official 1/2x
            models). Defaults to 0.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of ``LinearClsHead``.

    Example:
        >>> import torch
        >>> from mmkw.models import KWLinearClsHead
        >>> self = KWLinearClsHead(num_classes=1000, in_channels=1280)
        >>> feats = (torch.rand(2, 1280), )
        >>> print(tuple(self(feats).shape))
        (2, 1000)
        >>> print(list(self.warehouse_manager.weights['fc'].shape))
        [20, 1000, 32, 1]
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 budget: Budget = 0.5,
                 reduction: Optional[float] = None,
                 cell_ratio: CellRatio = (1, 0.025),
                 attention_type: str = 'kw',
                 nonlocal_basis_ratio: float = 1.0,
                 attention_norm_cfg: Optional[dict] = None,
                 attention_init: bool = True,
                 dropout: float = 0.0,
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f'dropout must be in [0, 1), got {dropout!r}')
        manager = build_warehouse_manager(
            budget,
            reduction,
            cell_ratio,
            attention_type,
            nonlocal_basis_ratio,
            attention_norm_cfg,
            official_reduction=0.03125)
        super().__init__(num_classes, in_channels, init_cfg=init_cfg, **kwargs)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.convert_to_kw(manager, budget, attention_init)

    def kw_layout(self) -> KWLayout:
        """LinearClsHead's ``fc`` draws from its own warehouse, ``fc``."""
        return KWLayout({'fc': (None, None)}, {'fc': 'fc'})

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Class scores of the last feature, dropout, then the KW fc."""
        return self.fc(self.dropout(self.pre_logits(feats)))
