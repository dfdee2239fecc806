"""ConvNeXt with KernelWarehouse convolutions."""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmpretrain.models.backbones.convnext import ConvNeXt

from mmkw.cnn import KWLayout
from mmkw.registry import register_model
from ..kw_args import Budget, CellRatio, build_warehouse_manager
from .base import KWBackboneMixin
from .utils import check_frozen_stages, check_out_indices

__all__ = ['KWConvNeXt']


def _check_arch(arch, arch_settings: Mapping) -> Dict[str, list]:
    if isinstance(arch, str):
        if arch not in arch_settings:
            raise ValueError(f'arch must be one of {sorted(arch_settings)} '
                             f'or a dict with depths and channels, got '
                             f'{arch!r}')
        arch = arch_settings[arch]
    if not isinstance(arch, Mapping) or not {'depths', 'channels'
                                             } <= set(arch):
        raise ValueError(f'arch must be a name or a dict with "depths" and '
                         f'"channels", got {arch!r}')
    depths, channels = arch['depths'], arch['channels']
    ok = (
        isinstance(depths,
                   (list, tuple)) and isinstance(channels, (list, tuple))
        and len(depths) == len(channels) and len(depths) >= 1 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0
            for v in list(depths) + list(channels)))
    if not ok:
        raise ValueError(f'arch needs "depths" and "channels" as sequences '
                         f'of positive ints of the same length, got '
                         f'depths={depths!r}, channels={channels!r}')
    return dict(depths=list(depths), channels=list(channels))


def _check_groups(groups, depths) -> tuple:
    """Resolve ``warehouse_groups``: ``'official'`` (one group per stage),
    ``'paper'`` (the third stage in three) or one positive int per stage,
    at most the stage's depth."""
    if groups == 'official':
        return (1, ) * len(depths)
    if groups == 'paper':
        if len(depths) < 3:
            raise ValueError(f'warehouse_groups="paper" splits the third '
                             f'stage; this arch has {len(depths)} stages')
        return tuple(3 if i == 2 else 1 for i in range(len(depths)))
    if isinstance(groups, str) or not isinstance(groups, Sequence) or \
            len(groups) != len(depths) or not all(
                isinstance(g, int) and not isinstance(g, bool) and
                1 <= g <= d for g, d in zip(groups, depths)):
        raise ValueError(f'warehouse_groups must be "official", "paper" or '
                         f'one int per stage in [1, depth] (depths '
                         f'{list(depths)}), got {groups!r}')
    return tuple(groups)


@register_model
class KWConvNeXt(KWBackboneMixin, ConvNeXt):
    """ConvNeXt whose convolutions draw their kernels from KernelWarehouses.

    The official layout of KernelWarehouse (Li & Yao, ICML 2024): the stem
    conv, the downsample convs and the depthwise and both pointwise convs
    of every block are KW convs with a bias, drawing from warehouses
    ``stem``, ``downsample1`` ... and, per stage, ``stage{i}_depthwise``
    and ``stage{i}_pointwise``; the attentions use a LayerNorm. As in the
    official code the pointwise convs are 1x1 convs (``linear_pw_conv=False``)
    and the layer scale has shape ``[1, C, 1, 1]``. Module names and the
    other arguments are MMPretrain's ``ConvNeXt``'s; ``frozen_stages`` also
    freezes the frozen stages' warehouses. The KW arguments are those of
    every mmkw model; docs/design.md describes the layouts.

    Args:
        arch (str | dict): ``ConvNeXt.arch_settings`` name or a dict with
            ``depths`` and ``channels``. Defaults to 'tiny'.
        budget (float | dict): Parameter budget ``b`` of every warehouse, or
            a dict by warehouse, pattern or group (``stem``,
            ``downsample``, ``depthwise``, ``pointwise``: a number or one
            per stage); the paper's 3/4x is
            ``dict(default=1, pointwise=(1, 1, 0.5, 0.5))``. Defaults to 1.
        reduction (float, optional): Attention hidden ratio; None: 1/16.
        cell_ratio (float | tuple[float, float], optional): Cell channels
            as a fraction of the channel gcd of the warehouses at the
            default budget; None: 1 for ``b >= 1``, 0.5 below.
        attention_type (str): ``'kw'`` or ``'kw_star'`` (KW*).
            Defaults to ``'kw'``.
        nonlocal_basis_ratio (float): Below 1, the attention's non-local
            basis mapping. Defaults to 1.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer; None: the official ``LN`` (``SyncBN`` for a SyncBN
            ``norm_cfg``).
        attention_init (bool): Start at temperature 1 (training from
            scratch); False pins it to 0 (fine-tuning). Defaults to True.
        out_indices (Sequence[int] | int): Output from which stages.
            Defaults to -1.
        frozen_stages (int): Stages to freeze; 0 or -1 freeze nothing.
            Defaults to 0.
        norm_eval (bool): Keep every norm in eval mode while training.
            Defaults to False.
        warehouse_groups (str | Sequence[int]): ``'official'`` (one
            depthwise and one pointwise warehouse per stage), ``'paper'``
            (the third stage in three groups) or the block groups per
            stage. Defaults to ``'official'``.
        linear_pw_conv (bool): Must be False. Defaults to False.
        **kwargs: Other arguments of MMPretrain's ``ConvNeXt``.

    Example:
        >>> import torch
        >>> from mmkw.models import KWConvNeXt
        >>> self = KWConvNeXt(arch='tiny', out_indices=(0, 1, 2, 3),
        ...                   gap_before_final_norm=False)
        >>> self.eval()
        >>> inputs = torch.rand(1, 3, 64, 64)
        >>> for out in self.forward(inputs):
        ...     print(tuple(out.shape))
        (1, 96, 16, 16)
        (1, 192, 8, 8)
        (1, 384, 4, 4)
        (1, 768, 2, 2)
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 budget: Budget = 1.0,
                 reduction: Optional[float] = None,
                 cell_ratio: CellRatio = None,
                 attention_type: str = 'kw',
                 nonlocal_basis_ratio: float = 1.0,
                 attention_norm_cfg: Optional[dict] = None,
                 attention_init: bool = True,
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = 0,
                 norm_eval: bool = False,
                 warehouse_groups: Union[str, Sequence[int]] = 'official',
                 linear_pw_conv: bool = False,
                 **kwargs):
        if linear_pw_conv is not False:
            raise ValueError('KWConvNeXt runs its pointwise convs as KW 1x1 '
                             'convs, as the official code does: '
                             'linear_pw_conv must be False, got '
                             f'{linear_pw_conv!r}')
        if kwargs.get('use_grn', False):
            raise ValueError('KWConvNeXt is ConvNeXt v1; use_grn=True '
                             '(ConvNeXt v2) is not supported')
        arch = _check_arch(arch, self.arch_settings)
        num_stages = len(arch['depths'])
        out_indices = check_out_indices(out_indices, num_stages)
        check_frozen_stages(frozen_stages, num_stages)
        warehouse_groups = _check_groups(warehouse_groups, arch['depths'])
        manager = build_warehouse_manager(
            budget,
            reduction,
            cell_ratio,
            attention_type,
            nonlocal_basis_ratio,
            attention_norm_cfg,
            norm_cfg=kwargs.get('norm_cfg'),
            official_norm=dict(type='LN'))
        super().__init__(
            arch=arch,
            out_indices=list(out_indices),
            frozen_stages=frozen_stages,
            linear_pw_conv=False,
            **kwargs)
        self.out_indices = out_indices
        self.warehouse_groups = warehouse_groups
        self.norm_eval = norm_eval
        for stage in self.stages:
            for block in stage:
                if block.gamma is not None:
                    # The official [1, C, 1, 1] layer scale.
                    block.gamma = nn.Parameter(block.gamma.detach().reshape(
                        1, -1, 1, 1).clone())
        self.convert_to_kw(manager, budget, attention_init)

    def _group_of(self, stage: int, block: int) -> str:
        """``stage{i}`` or, for a stage split into warehouse groups,
        ``stage{i}g{k}`` (consecutive blocks, as equal as possible)."""
        groups = self.warehouse_groups[stage]
        if groups == 1:
            return f'stage{stage}'
        depth = len(self.stages[stage])
        return f'stage{stage}g{block * groups // depth}'

    def _stage_groups(self, stage: int) -> List[str]:
        """``stage{i}``, or the warehouse groups of a split stage."""
        depth = len(self.stages[stage])
        return list(
            dict.fromkeys(self._group_of(stage, j) for j in range(depth)))

    def kw_layout(self) -> KWLayout:
        layout = KWLayout()
        # Declaration order is the official warehouse index order: the stem
        # and downsample layers, then per stage (or warehouse group) its
        # depthwise and pointwise warehouses.
        layout.warehouse('stem')
        for i in range(1, len(self.stages)):
            layout.warehouse(f'downsample{i}')
        for i in range(len(self.stages)):
            for group in self._stage_groups(i):
                for kind in ('depthwise', 'pointwise'):
                    layout.warehouse(f'{group}_{kind}')
        layout.assign('downsample_layers.0.0', 'stem')
        for i in range(1, len(self.stages)):
            layout.assign(f'downsample_layers.{i}.1', f'downsample{i}')
        for i, stage in enumerate(self.stages):
            for j in range(len(stage)):
                block, group = f'stages.{i}.{j}.', self._group_of(i, j)
                layout.assign(block + 'depthwise_conv', f'{group}_depthwise')
                for pointwise in ('pointwise_conv1', 'pointwise_conv2'):
                    layout.assign(block + pointwise, f'{group}_pointwise')
        return layout

    def kw_budget_groups(self) -> Dict[str, Tuple[str, List[List[str]]]]:
        """``stem``, ``downsample`` (one member per downsample layer),
        ``depthwise`` and ``pointwise`` (one member per stage)."""
        num_stages = len(self.stages)
        groups = {
            'stem': ('stem', [['stem']]),
            'downsample': ('downsample layer', [[f'downsample{i}']
                                                for i in range(1, num_stages)])
        }
        for kind in ('depthwise', 'pointwise'):
            groups[kind] = ('stage', [[
                f'{group}_{kind}' for group in self._stage_groups(i)
            ] for i in range(num_stages)])
        return groups

    def frozen_modules(self) -> List[nn.Module]:
        return [
            module for i in range(self.frozen_stages)
            for module in (self.downsample_layers[i], self.stages[i])
        ]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and getattr(self, 'norm_eval', False):
            for m in self.modules():
                if isinstance(m, (nn.modules.batchnorm._BatchNorm,
                                  nn.LayerNorm, nn.GroupNorm)):
                    m.eval()
        return self
