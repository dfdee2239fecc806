"""ConvNeXt with KernelWarehouse convolutions."""
import numbers
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch.nn as nn
from mmpretrain.models.backbones.convnext import ConvNeXt

from mmkw.cnn import KWLayout, WarehouseManager
from mmkw.registry import register_model
from .base import KWBackboneMixin
from .utils import attention_norm_layer, check_frozen_stages, check_out_indices

__all__ = ['KWConvNeXt', 'parse_convnext_budget']

#: Keys of a per-warehouse ``budget`` dict of :class:`KWConvNeXt`.
BUDGET_KEYS = ('default', 'stem', 'downsample', 'depthwise', 'pointwise')


def _check_budget_value(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not value > 0:
        raise ValueError(f'budget[{key!r}] must be a positive number, got '
                         f'{value!r}')
    return float(value)


def parse_convnext_budget(budget: Union[float, Mapping],
                          num_stages: int) -> Dict[str, float]:
    """Resolve the ``budget`` argument of :class:`KWConvNeXt`.

    Args:
        budget (float | dict): One budget for every warehouse, or a dict
            with the optional keys ``default`` (every warehouse not named
            otherwise, 1 if absent), ``stem``, ``downsample`` (a number or
            one per downsample layer, ``num_stages - 1`` values),
            ``depthwise`` and ``pointwise`` (a number or one per stage,
            ``num_stages`` values).
        num_stages (int): Stages of the network.

    Returns:
        dict[str, float]: Budget of every warehouse, in declaration order
        (``stem``, ``downsample1`` ..., then ``stage{i}_depthwise`` and
        ``stage{i}_pointwise`` per stage).

    Example:
        >>> from mmkw.models.backbones.kw_convnext import (
        ...     parse_convnext_budget)
        >>> b = parse_convnext_budget(
        ...     dict(default=1, pointwise=(1, 1, 0.5, 0.5)), 4)
        >>> b['stage1_pointwise'], b['stage2_pointwise']
        (1.0, 0.5)
    """
    if isinstance(budget, Mapping):
        unknown = sorted(set(budget) - set(BUDGET_KEYS))
        if unknown:
            raise ValueError(f'budget has unknown keys {unknown}; allowed: '
                             f'{list(BUDGET_KEYS)}')
        spec = dict(budget)
    else:
        spec = dict(default=budget)
    default = _check_budget_value('default', spec.get('default', 1.0))

    def per_group(key: str, count: int):
        value = spec.get(key, default)
        if isinstance(value, (list, tuple)):
            if len(value) != count:
                unit = 'downsample layer' if key == 'downsample' else 'stage'
                raise ValueError(
                    f'budget[{key!r}] must be a number or {count} numbers '
                    f'(one per {unit}), got {value!r}')
            return [_check_budget_value(key, v) for v in value]
        return [_check_budget_value(key, value)] * count

    result = {'stem': per_group('stem', 1)[0]}
    for i, value in enumerate(per_group('downsample', num_stages - 1)):
        result[f'downsample{i + 1}'] = value
    depthwise = per_group('depthwise', num_stages)
    pointwise = per_group('pointwise', num_stages)
    for i in range(num_stages):
        result[f'stage{i}_depthwise'] = depthwise[i]
        result[f'stage{i}_pointwise'] = pointwise[i]
    return result


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

    The official KernelWarehouse layout (Li & Yao, ICML 2024): the stem
    conv, the downsample convs, and the depthwise and both pointwise convs
    of every block are KW convs with a bias; the classifier stays plain.
    Warehouses, in the official index order: the stem, each downsample
    conv, then per stage one for the depthwise convs and one shared by
    ``pointwise_conv1`` and ``pointwise_conv2``. The attention of every KW
    conv uses a LayerNorm (``eps=1e-5``) and its ``fc1`` has a bias.

    As in the official code the pointwise convs are 1x1 convs on
    channels-first tensors (MMPretrain's ``linear_pw_conv=False`` path) and
    the layer scale ``gamma`` has shape ``[1, C, 1, 1]``, so (like the
    official training) it is not a "flat" parameter for weight-decay
    settings. Everything else -- module names, ``arch``, ``out_indices``
    with a norm per output stage, ``gap_before_final_norm``,
    ``frozen_stages`` (which also freezes the frozen stages' warehouses),
    ``with_cp`` -- is MMPretrain's ``ConvNeXt``.

    ASCII view of stage ``i`` (``D_i``/``P_i`` = its depthwise/pointwise
    warehouses, ``S_i`` = the stem (i = 0) or downsample conv's own)::

        x ─> [LN ─> conv 2x2 S_i] ─> block ─> ... ─> block ─> (norm_i) ─>
        block: x ─> dw 7x7 [D_i] ─> LN ─> pw1 1x1 [P_i] ─> GELU
                  ─> pw2 1x1 [P_i] ─> * gamma ─> + x

    Args:
        arch (str | dict): ``ConvNeXt.arch_settings`` name or a dict with
            ``depths`` and ``channels``. Defaults to 'tiny'.
        budget (float | dict): Parameter budget ``b``. A number applies to
            every warehouse; a dict gives ``default`` and per-group budgets
            ``stem``, ``downsample``, ``depthwise``, ``pointwise`` (each a
            number or one value per stage, see
            :func:`parse_convnext_budget`). The paper's ``b = 3/4`` model is
            ``dict(default=1, pointwise=(1, 1, 0.5, 0.5))``. Warehouses with
            ``b < 1`` use half-gcd cells. Defaults to 1.
        attention_init (bool): Use the attention initialisation (temperature
            1 and the initial assignment), for training from scratch with a
            temperature schedule. ``False`` pins the temperature to 0, for
            fine-tuning a pretrained KW model. Defaults to True.
        reduction (float): Attention hidden ratio. Defaults to 0.0625.
        out_indices (Sequence[int] | int): Output from which stages.
            Defaults to -1 (the last one).
        frozen_stages (int): Freeze the stem/downsample layers, blocks and
            warehouses of the first ``frozen_stages`` stages; 0 or -1 freeze
            nothing. Defaults to 0.
        norm_eval (bool): Keep every norm layer in eval mode during
            training. ConvNeXt has only LayerNorms, whose output does not
            depend on the mode; the flag is kept for configs shared with the
            other KW backbones. Defaults to False.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer; None picks the official ``LN`` (or ``SyncBN`` when
            ``norm_cfg`` is SyncBN). Defaults to None.
        warehouse_groups (str | Sequence[int]): ``'official'`` (the
            released code: one depthwise and one pointwise warehouse per
            stage), ``'paper'`` (the paper's appendix: the third stage's
            blocks in three groups with warehouses of their own) or the
            number of consecutive block groups per stage. Groups of a split
            stage are named ``stage{i}g{k}_depthwise``/``_pointwise``.
            Defaults to ``'official'``.
        linear_pw_conv (bool): Must be False: the pointwise convs are KW 1x1
            convs (MMPretrain's ``linear_pw_conv=False`` path), as in the
            official code. Defaults to False.
        **kwargs: Other arguments of MMPretrain's ``ConvNeXt``
            (``in_channels``, ``stem_patch_size``, ``norm_cfg``,
            ``act_cfg``, ``drop_path_rate``, ``layer_scale_init_value``,
            ``gap_before_final_norm``, ``with_cp``, ``init_cfg``).

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
                 budget: Union[float, dict] = 1.0,
                 attention_init: bool = True,
                 reduction: float = 0.0625,
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = 0,
                 norm_eval: bool = False,
                 attention_norm_cfg: Optional[dict] = None,
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
        budgets = parse_convnext_budget(budget, num_stages)
        warehouse_groups = _check_groups(warehouse_groups, arch['depths'])
        warehouse_manager = WarehouseManager(
            budget=budgets['stem'],
            reduction=reduction,
            norm_layer=attention_norm_layer(
                attention_norm_cfg,
                kwargs.get('norm_cfg'),
                default=dict(type='LN')))
        super().__init__(
            arch=arch,
            out_indices=list(out_indices),
            frozen_stages=frozen_stages,
            linear_pw_conv=False,
            **kwargs)
        self.out_indices = out_indices
        self.budget = budget
        self.budgets = budgets
        self.warehouse_groups = warehouse_groups
        self.attention_init = attention_init
        self.norm_eval = norm_eval
        for stage in self.stages:
            for block in stage:
                if block.gamma is not None:
                    # The official [1, C, 1, 1] layer scale.
                    block.gamma = nn.Parameter(block.gamma.detach().reshape(
                        1, -1, 1, 1).clone())
        self.convert_to_kw(warehouse_manager, attention_init)

    def _group_of(self, stage: int, block: int) -> str:
        """``stage{i}`` or, for a stage split into warehouse groups,
        ``stage{i}g{k}`` (consecutive blocks, as equal as possible)."""
        groups = self.warehouse_groups[stage]
        if groups == 1:
            return f'stage{stage}'
        depth = len(self.stages[stage])
        return f'stage{stage}g{block * groups // depth}'

    def kw_layout(self) -> KWLayout:
        layout = KWLayout()
        # Declaration order is the official warehouse index order: the stem
        # and downsample layers, then per stage (or warehouse group) its
        # depthwise and pointwise warehouses.
        for name, value in self.budgets.items():
            if not name.startswith('stage'):
                layout.warehouse(name, value)
        for i, stage in enumerate(self.stages):
            groups = dict.fromkeys(
                self._group_of(i, j) for j in range(len(stage)))
            for group in groups:
                for kind in ('depthwise', 'pointwise'):
                    layout.warehouse(f'{group}_{kind}',
                                     self.budgets[f'stage{i}_{kind}'])
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
