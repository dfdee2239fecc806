"""ResNet with KernelWarehouse convolutions."""
from typing import List, Optional, Sequence

import torch.nn as nn
from mmpretrain.models.backbones.resnet import Bottleneck, ResNet

from mmkw.cnn import KWLayout
from mmkw.registry import register_model
from ..kw_args import Budget, CellRatio, build_warehouse_manager
from .base import KWBackboneMixin
from .utils import check_frozen_stages, check_out_indices

__all__ = ['KWResNet']


@register_model
class KWResNet(KWBackboneMixin, ResNet):
    """ResNet whose convolutions draw their kernels from KernelWarehouses.

    The official layout of KernelWarehouse (Li & Yao, ICML 2024): one
    warehouse per stage (``stage0`` ...), the first conv and the strided
    downsample conv of a stage's first block drawing from the previous
    stage's; the stem conv stays plain. Module names, state-dict keys and
    the other arguments are MMPretrain's ``ResNet``'s; ``frozen_stages``
    also freezes the frozen stages' warehouses. The KW arguments are those
    of every mmkw model (docs/design.md).

    Args:
        depth (int): Network depth, from {18, 34, 50, 101, 152}.
        budget (float | dict): Parameter budget ``b`` of every warehouse, or
            a dict by warehouse name or pattern. Defaults to 1.
        reduction (float, optional): Attention hidden ratio; None: 1/16.
        cell_ratio (float | tuple[float, float], optional): Cell channels
            as a fraction of the channel gcd; None: 1 for ``b >= 1``, 0.5
            below.
        attention_type (str): ``'kw'`` or ``'kw_star'`` (KW*).
            Defaults to ``'kw'``.
        nonlocal_basis_ratio (float): Below 1, the attention's non-local
            basis mapping (0.0625 in the official ResNet50 1/2x). Defaults
            to 1.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer; None: ``BN1d`` (or follows a SyncBN/GN/LN ``norm_cfg``).
        attention_init (bool): Start at temperature 1 (training from
            scratch); False pins it to 0 (fine-tuning). Defaults to True.
        zero_init_residual (bool): Zero-init the last norm of each block.
            Defaults to False.
        num_stages (int): Stages, 1 to 4. Defaults to 4.
        out_indices (Sequence[int]): Output from which stages.
            Defaults to ``(3, )``.
        frozen_stages (int): Stages to freeze, -1 for none. Defaults to -1.
        **kwargs: Other arguments of MMPretrain's ``ResNet``.

    Example:
        >>> import torch
        >>> from mmkw.models import KWResNet
        >>> self = KWResNet(depth=18, out_indices=(0, 1, 2, 3))
        >>> self.eval()
        >>> inputs = torch.rand(1, 3, 64, 64)
        >>> for out in self.forward(inputs):
        ...     print(tuple(out.shape))
        (1, 64, 16, 16)
        (1, 128, 8, 8)
        (1, 256, 4, 4)
        (1, 512, 2, 2)
    """

    def __init__(self,
                 depth: int,
                 budget: Budget = 1.0,
                 reduction: Optional[float] = None,
                 cell_ratio: CellRatio = None,
                 attention_type: str = 'kw',
                 nonlocal_basis_ratio: float = 1.0,
                 attention_norm_cfg: Optional[dict] = None,
                 attention_init: bool = True,
                 zero_init_residual: bool = False,
                 num_stages: int = 4,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 **kwargs):
        if depth not in self.arch_settings:
            raise ValueError(f'depth must be one of '
                             f'{sorted(self.arch_settings)}, got {depth!r}')
        if num_stages not in (1, 2, 3, 4):
            raise ValueError(f'num_stages must be 1-4, got {num_stages!r}')
        # Checked here, not left to ResNet's asserts (gone under python -O).
        if kwargs.get('style', 'pytorch') not in ('pytorch', 'caffe'):
            raise ValueError(f'style must be "pytorch" or "caffe", got '
                             f'{kwargs["style"]!r}')
        for key in ('strides', 'dilations'):
            if key in kwargs and len(kwargs[key]) != num_stages:
                raise ValueError(f'{key} needs one value per stage '
                                 f'({num_stages}), got {kwargs[key]!r}')
        out_indices = check_out_indices(out_indices, num_stages)
        check_frozen_stages(frozen_stages, num_stages)
        manager = build_warehouse_manager(
            budget,
            reduction,
            cell_ratio,
            attention_type,
            nonlocal_basis_ratio,
            attention_norm_cfg,
            norm_cfg=kwargs.get('norm_cfg'))
        super().__init__(
            depth,
            num_stages=num_stages,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            zero_init_residual=zero_init_residual,
            **kwargs)
        self.convert_to_kw(manager, budget, attention_init)

    def kw_layout(self) -> KWLayout:
        layout = KWLayout()
        for stage, name in enumerate(self.res_layers):
            own = layout.warehouse(f'stage{stage}')
            previous = f'stage{max(stage - 1, 0)}'
            for j, block in enumerate(getattr(self, name)):
                convs = ['conv1', 'conv2']
                if isinstance(block, Bottleneck):
                    convs.append('conv3')
                for conv in convs:
                    layout.assign(f'{name}.{j}.{conv}', own)
                if j > 0:
                    continue
                # The first block hands over from the previous stage's
                # warehouse.
                first = None if isinstance(block, Bottleneck) and stage == 0 \
                    else previous
                layout.assign(f'{name}.0.conv1', first)
                if block.downsample is not None:
                    idx = [isinstance(m, nn.Conv2d)
                           for m in block.downsample].index(True)
                    layout.assign(
                        f'{name}.0.downsample.{idx}',
                        None if self.strides[stage] == 1 else previous)
        return layout

    def frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        stem = [self.stem] if self.deep_stem else [self.conv1]
        return stem + [
            getattr(self, f'layer{i}')
            for i in range(1, self.frozen_stages + 1)
        ]
