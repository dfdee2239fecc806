"""MobileNetV2 with KernelWarehouse convolutions."""
from typing import List, Optional, Sequence

import torch.nn as nn
from mmpretrain.models.backbones.mobilenet_v2 import MobileNetV2

from mmkw.cnn import KWLayout, check_positive
from mmkw.cnn.convert import default_budget
from mmkw.registry import register_model
from ..kw_args import Budget, CellRatio, build_warehouse_manager
from .base import KWBackboneMixin
from .utils import check_frozen_stages, check_out_indices

__all__ = ['KWMobileNetV2']


@register_model
class KWMobileNetV2(KWBackboneMixin, MobileNetV2):
    """MobileNetV2 whose convolutions draw their kernels from KernelWarehouses.

    The official layouts of KernelWarehouse (Li & Yao, ICML 2024): the
    stem has a warehouse of its own; ``layer1`` ... ``layer7`` form the
    warehouse stages ``[1, 2, 3, 4, 5, 6, 6]`` (``conv2`` joins stage 6),
    each with one warehouse for its depthwise convs and one or two for its
    1x1 convs, and the first block of a stage draws from the previous
    stage's. Below ``b = 1`` the hand-tuned official 1/2x layout applies
    (stem and depthwise warehouses at ``b = 1``, the 1x1 convs of stages
    1-5 plain). Module names and the other arguments are MMPretrain's
    ``MobileNetV2``'s; ``frozen_stages`` also freezes the warehouses the
    frozen modules draw from. The KW arguments are those of every mmkw
    model; docs/design.md describes the layouts.

    Args:
        widen_factor (float): Width multiplier (0.5 and 1.0 are official).
            Defaults to 1.0.
        budget (float | dict): Parameter budget ``b`` (1/2, 1 and 4 are
            official), or a dict by warehouse name or pattern whose
            ``'default'`` picks the layout. Defaults to 1.
        reduction (float, optional): Attention hidden ratio; None: the
            official 1/16 for ``b >= 1``, 1/32 below.
        cell_ratio (float | tuple[float, float], optional): Cell channels
            as a fraction of the channel gcd of the warehouses at budget
            ``b``; None: 1 for ``b >= 1``, 0.5 below.
        attention_type (str): ``'kw'`` or ``'kw_star'`` (KW*, paper Table
            17). Defaults to ``'kw'``.
        nonlocal_basis_ratio (float): Below 1, the attention's non-local
            basis mapping. Defaults to 1.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer; None: ``BN1d`` (or follows a SyncBN/GN/LN ``norm_cfg``).
        attention_init (bool): Start at temperature 1 (training from
            scratch); False pins it to 0 (fine-tuning). Defaults to True.
        separate_pointwise (bool, optional): A warehouse each for the
            expansion and projection 1x1 convs of a stage; None: the
            official choice, shared for ``b = 1`` only. Defaults to None.
        out_indices (Sequence[int]): Outputs, 0-6 (``layer1``-``layer7``)
            and 7 (``conv2``). Defaults to ``(7, )``.
        frozen_stages (int): Freeze the stem and ``layer1`` ...
            ``layerN``; -1 freezes nothing. Defaults to -1.
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
                 budget: Budget = 1.0,
                 reduction: Optional[float] = None,
                 cell_ratio: CellRatio = None,
                 attention_type: str = 'kw',
                 nonlocal_basis_ratio: float = 1.0,
                 attention_norm_cfg: Optional[dict] = None,
                 attention_init: bool = True,
                 separate_pointwise: Optional[bool] = None,
                 out_indices: Sequence[int] = (7, ),
                 frozen_stages: int = -1,
                 **kwargs):
        check_positive('widen_factor', widen_factor)
        if 'conv_cfg' in kwargs:
            raise ValueError('KWMobileNetV2 builds its own KW convs; '
                             f'conv_cfg is not accepted, got '
                             f'{kwargs["conv_cfg"]!r}')
        out_indices = check_out_indices(out_indices, len(self.layer_names))
        check_frozen_stages(frozen_stages, len(self.arch_settings))
        default = default_budget(budget)
        if separate_pointwise is None:
            separate_pointwise = default != 1
        manager = build_warehouse_manager(
            budget,
            reduction,
            cell_ratio,
            attention_type,
            nonlocal_basis_ratio,
            attention_norm_cfg,
            norm_cfg=kwargs.get('norm_cfg'),
            official_reduction=0.0625 if default >= 1 else 0.03125)
        super().__init__(
            widen_factor=widen_factor,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            **kwargs)
        self.separate_pointwise = separate_pointwise
        self.convert_to_kw(manager, budget, attention_init)

    def kw_layout(self) -> KWLayout:
        layout = KWLayout()
        tuned = self.warehouse_manager.budget < 1
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
