"""MobileNetV2 with KernelWarehouse convolutions."""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmpretrain.models.backbones.mobilenet_v2 import MobileNetV2

from mmkw.cnn import KWLayout, WarehouseManager
from mmkw.registry import register_model
from .base import KWBackboneMixin
from .utils import attention_norm_layer, check_frozen_stages, check_out_indices

__all__ = ['KWMobileNetV2']


@register_model
class KWMobileNetV2(KWBackboneMixin, MobileNetV2):
    """MobileNetV2 whose convolutions draw their kernels from KernelWarehouses.

    The official KernelWarehouse layouts (Li & Yao, ICML 2024). The seven
    inverted-residual settings (``layer1`` ... ``layer7``) form the warehouse
    stages ``[1, 2, 3, 4, 5, 6, 6]``; the stem ``conv1`` has a warehouse of
    its own and the last 1x1 conv ``conv2`` (to 1280 channels) joins stage 6.
    The first block of a new stage draws from the previous stage's
    warehouses (``layer2.0`` from stage 1, ..., ``layer6.0`` from stage 5;
    ``layer7.0`` stays in stage 6).

    - ``budget >= 1`` (the official 1x and 4x models): every conv is KW. The
      depthwise convs of a stage share one warehouse; its 1x1 expansion and
      projection convs share a second one (``separate_pointwise=False``,
      official for b = 1) or have one each (official for b = 4).
    - ``budget < 1`` (the hand-tuned official 1/2x model): the stem and the
      depthwise convs are KW with b = 1 (cells of the whole channel gcd); the
      1x1 convs of stages 1-5 are plain ``nn.Conv2d``; in stage 6 the
      expansion convs share one warehouse and the projection convs plus
      ``conv2`` another, both with budget ``budget`` and half-gcd cells. The
      official model also has a KW classifier, see
      :class:`~mmkw.models.KWLinearClsHead`, and ``reduction`` 1/32.

    Warehouses are declared in the order of their first use in the network,
    which is the official warehouse index order: the official checkpoint's
    ``warehouse_manager.weights.K`` is the ``K``-th warehouse of
    ``self.plan``.

    Module names, ``out_indices`` (0-6: ``layer1``-``layer7``, 7: ``conv2``,
    for FPN use), ``frozen_stages``, ``norm_eval``, ``with_cp`` and
    ``init_cfg`` are those of MMPretrain's ``MobileNetV2``. ``frozen_stages``
    also freezes every warehouse that a frozen module draws from (and puts
    the stem's norm in eval mode), so a frozen stage's output does not
    change. Stage ``k``'s warehouses are shared with
    the first block of the next setting (``layer{k+1}.0``): with
    ``frozen_stages=k`` that block mixes its kernels from frozen cells, while
    its attention and norms keep training.

    ASCII view of an inverted residual block of stage ``s`` (``D_s``:
    depthwise warehouse, ``P_s``: pointwise warehouse(s) of stage ``s``)::

        x ─> 1x1 expand [P_s] ─> 3x3 dw [D_s] ─> 1x1 project [P_s] ─> (+ x)

    Args:
        widen_factor (float): Width multiplier (0.5 and 1.0 are the official
            models). Defaults to 1.0.
        budget (float): Parameter budget ``b`` (1/2, 1 and 4 are official;
            1/4 and 2 are supported too). Defaults to 1.
        attention_init (bool): Use the attention initialisation (temperature
            1 and the initial assignment), for training from scratch with a
            temperature schedule. ``False`` pins the temperature to 0, for
            fine-tuning a pretrained KW model. Defaults to True.
        reduction (float, optional): Attention hidden ratio; ``None`` picks
            the official value, 1/16 for ``b >= 1`` and 1/32 below.
            Defaults to None.
        cell_ratio (float | tuple[float, float], optional): Cell channels as
            a fraction of the channel gcd for the warehouses of budget
            ``budget``; ``None`` picks 1 for ``b >= 1`` and 0.5 below.
            Defaults to None.
        separate_pointwise (bool, optional): Give the expansion and the
            projection 1x1 convs of a stage a warehouse each. ``None`` picks
            the official choice: shared for ``b = 1``, separate otherwise.
            Defaults to None.
        out_indices (Sequence[int]): Outputs to return, from 0 (``layer1``)
            to 7 (``conv2``); negative values count from the end.
            Defaults to ``(7, )``.
        frozen_stages (int): Freeze the stem and ``layer1`` ... ``layerN``
            (and their warehouses); -1 freezes nothing, 0 the stem only.
            Defaults to -1.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer; None picks the official ``BN1d``, or ``SyncBN`` when
            ``norm_cfg`` is SyncBN. Defaults to None.
        attention_type (str): ``'kw'``, or ``'kw_star'`` for KW* (the
            paper's Table 17: ODConv's input-channel, output-channel and
            spatial attentions on top, see
            :class:`~mmkw.cnn.KWStarAttention`). Defaults to ``'kw'``.
        **kwargs: ``norm_cfg``, ``act_cfg``, ``norm_eval``, ``with_cp`` and
            ``init_cfg`` of MMPretrain's ``MobileNetV2``.

    Example:
        >>> import torch
        >>> from mmkw.models import KWMobileNetV2
        >>> self = KWMobileNetV2(budget=1.0, out_indices=(1, 2, 4, 7))
        >>> self.eval()
        >>> inputs = torch.rand(1, 3, 64, 64)
        >>> for out in self.forward(inputs):
        ...     print(tuple(out.shape))
        (1, 24, 16, 16)
        (1, 32, 8, 8)
        (1, 96, 4, 4)
        (1, 1280, 2, 2)
    """

    # Warehouse stage of each row of ``arch_settings`` (expand_ratio,
    # channel, num_blocks, stride), i.e. of ``layer1`` ... ``layer7``.
    # The stem is stage 0; ``conv2`` joins the last stage.
    kw_stages = (1, 2, 3, 4, 5, 6, 6)
    # The modules ``out_indices`` refers to, in order.
    layer_names = tuple(f'layer{i + 1}' for i in range(7)) + ('conv2', )

    def __init__(self,
                 widen_factor: float = 1.0,
                 budget: float = 1.0,
                 attention_init: bool = True,
                 reduction: Optional[float] = None,
                 cell_ratio: Optional[Union[float, Tuple[float,
                                                         float]]] = None,
                 separate_pointwise: Optional[bool] = None,
                 out_indices: Sequence[int] = (7, ),
                 frozen_stages: int = -1,
                 attention_norm_cfg: Optional[dict] = None,
                 attention_type: str = 'kw',
                 **kwargs):
        for name, value in (('widen_factor', widen_factor), ('budget',
                                                             budget)):
            if not isinstance(value, (int, float)) or isinstance(
                    value, bool) or not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f'{name} must be a positive number, got {value!r}')
        if 'conv_cfg' in kwargs:
            raise ValueError('KWMobileNetV2 builds its own KW convs; '
                             f'conv_cfg is not accepted, got '
                             f'{kwargs["conv_cfg"]!r}')
        out_indices = check_out_indices(out_indices, len(self.layer_names))
        check_frozen_stages(frozen_stages, len(self.arch_settings))
        if reduction is None:
            reduction = 0.0625 if budget >= 1 else 0.03125
        if separate_pointwise is None:
            separate_pointwise = budget != 1
        warehouse_manager = WarehouseManager(
            budget=budget,
            cell_ratio=cell_ratio,
            reduction=reduction,
            norm_layer=attention_norm_layer(attention_norm_cfg,
                                            kwargs.get('norm_cfg')),
            attention_type=attention_type)
        super().__init__(
            widen_factor=widen_factor,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            **kwargs)
        self.budget = budget
        self.attention_init = attention_init
        self.separate_pointwise = separate_pointwise
        self.convert_to_kw(warehouse_manager, attention_init)

    def kw_layout(self) -> KWLayout:
        layout = KWLayout()
        tuned = self.budget < 1
        # The tuned (b < 1) layout keeps the stem and depthwise convs at b=1.
        dense_budget = 1.0 if tuned else None
        last_stage = self.kw_stages[-1]

        def assign(path: str,
                   warehouse: Optional[str],
                   budget: Optional[float] = None) -> None:
            if warehouse is not None:
                layout.warehouse(warehouse, budget)
            layout.assign(path + '.conv', warehouse)

        def pointwise(stage: int, role: str) -> Optional[str]:
            if tuned and stage != last_stage:
                return None  # plain 1x1 conv
            if not self.separate_pointwise:
                return f'stage{stage}_pw'
            return f'stage{stage}_{role}'

        assign('conv1', 'stem', dense_budget)
        for i, stage in enumerate(self.kw_stages):
            layer = getattr(self, f'layer{i + 1}')
            for j, block in enumerate(layer):
                own = stage
                if j == 0 and i > 0 and self.kw_stages[i - 1] != stage:
                    own = self.kw_stages[i - 1]  # hand over from the last
                path = f'layer{i + 1}.{j}.conv'
                last = len(block.conv) - 1
                if last == 2:
                    assign(f'{path}.0', pointwise(own, 'expand'))
                assign(f'{path}.{last - 1}', f'stage{own}_dw', dense_budget)
                assign(f'{path}.{last}', pointwise(own, 'project'))
        assign('conv2', pointwise(last_stage, 'project'))
        return layout

    def frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.conv1] + [
            getattr(self, f'layer{i}')
            for i in range(1, self.frozen_stages + 1)
        ]

    def _freeze_stages(self):
        super()._freeze_stages()
        if self.frozen_stages >= 0:
            # MobileNetV2 freezes the stem's parameters but leaves its norm
            # in training mode; keep its statistics frozen too.
            self.conv1.eval()
