"""Linear classification head whose fc draws from a KernelWarehouse."""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models.heads import LinearClsHead

from mmkw.cnn import (KWLayout, WarehouseManager, apply_layout,
                      reset_kw_attentions)
from mmkw.registry import register_model
from ..backbones.base import has_pretrained_init
from ..backbones.utils import attention_norm_layer

__all__ = ['KWLinearClsHead']


@register_model
class KWLinearClsHead(LinearClsHead):
    """MMPretrain's ``LinearClsHead`` with a KernelWarehouse ``fc``.

    ``fc`` is a :class:`~mmkw.cnn.KWLinear` with a bias, drawing from a
    warehouse of its own (named ``fc``) held by the head's own
    :class:`~mmkw.cnn.WarehouseManager`, as in the official KernelWarehouse
    MobileNetV2 b = 1/2 models (Li & Yao, ICML 2024): budget 1/2, cells of
    ``[num_classes, in_channels / 40, 1]`` (``cell_ratio=(1, 0.025)``, i.e.
    ``[1000, 32, 1]`` for 1280 input channels) and attention reduction 1/32.
    Its attention temperature follows :func:`mmkw.set_temperature` (and the
    temperature hook) like the backbone's layers; in a converted official
    checkpoint the head's warehouse comes after the backbone's.

    Args:
        num_classes (int): Number of categories.
        in_channels (int): Input feature channels.
        budget (float): Parameter budget of the fc warehouse.
            Defaults to 0.5.
        cell_ratio (float | tuple[float, float], optional): Cell size as a
            fraction of the output / input features, one value or
            ``(out_ratio, in_ratio)``; ``None`` picks 1 for ``b >= 1`` and
            0.5 below. Defaults to ``(1, 0.025)``.
        reduction (float): Attention hidden ratio. Defaults to 0.03125.
        attention_init (bool): Start at temperature 1 with the initial
            assignment (training from scratch); ``False`` pins it to 0
            (fine-tuning). Defaults to True.
        dropout (float): Dropout before ``fc`` (0.1 in the official b = 1/2
            models). Defaults to 0.
        attention_norm_cfg (dict, optional): Norm of the attention's hidden
            layer; None picks the official ``BN1d``. Defaults to None.
        init_cfg (dict, optional): Initialisation config. The KW fc
            initialises itself (Kaiming warehouse cells, zero bias), so
            nothing else is needed. Defaults to None.
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
                 budget: float = 0.5,
                 cell_ratio: Optional[Union[float, Tuple[float,
                                                         float]]] = (1, 0.025),
                 reduction: float = 0.03125,
                 attention_init: bool = True,
                 dropout: float = 0.0,
                 attention_norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f'dropout must be in [0, 1), got {dropout!r}')
        super().__init__(num_classes, in_channels, init_cfg=init_cfg, **kwargs)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.warehouse_manager = WarehouseManager(
            budget=budget,
            cell_ratio=cell_ratio,
            reduction=reduction,
            norm_layer=attention_norm_layer(attention_norm_cfg))
        # LinearClsHead's fc becomes a KW linear layer with its own warehouse.
        self.plan = apply_layout(
            self,
            KWLayout({'fc': (None, None)}, {'fc': 'fc'}),
            attention_init=attention_init)

    def init_weights(self):
        """LinearClsHead's ``init_cfg`` (Normal on Linear layers), then the
        official initialisation of the fc's attention over it (not over a
        ``Pretrained`` checkpoint)."""
        initialised = self._is_init
        super().init_weights()
        if not initialised and not has_pretrained_init(self.init_cfg):
            reset_kw_attentions(self)

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """Class scores of the last feature, dropout, then the KW fc."""
        return self.fc(self.dropout(self.pre_logits(feats)))
