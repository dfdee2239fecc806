"""Vision Transformers (DeiT) with KernelWarehouse value and MLP layers."""
import numbers
from typing import List, Mapping, Optional, Union

import torch
import torch.nn as nn
from mmpretrain.models.backbones import VisionTransformer

from mmkw.cnn import KWLayout, WarehouseManager
from mmkw.registry import register_model
from .base import KWBackboneMixin
from .utils import attention_norm_layer

__all__ = ['KWVisionTransformer', 'SplitQKV']


class SplitQKV(nn.Module):
    """MMPretrain's fused ``qkv`` projection as two layers, ``qk`` (query
    and key, static) and ``v`` (value, which a layout can make KW); the
    output is the fused one, ``[q, k, v]`` along the last axis."""

    def __init__(self, qkv: nn.Linear):
        super().__init__()
        dims = qkv.in_features
        if qkv.out_features != 3 * dims:
            raise ValueError(f'expected a fused qkv projection {dims} -> '
                             f'{3 * dims}, got {qkv}')
        bias = qkv.bias is not None
        self.qk = nn.Linear(dims, 2 * dims, bias=bias)
        self.v = nn.Linear(dims, dims, bias=bias)
        with torch.no_grad():
            self.qk.weight.copy_(qkv.weight[:2 * dims])
            self.v.weight.copy_(qkv.weight[2 * dims:])
            if bias:
                self.qk.bias.copy_(qkv.bias[:2 * dims])
                self.v.bias.copy_(qkv.bias[2 * dims:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.qk(x), self.v(x)], dim=-1)


def _check_budget(budget) -> dict:
    if isinstance(budget, Mapping):
        unknown = sorted(set(budget) - {'value', 'mlp'})
        if unknown:
            raise ValueError(f'budget keys must be "value" and "mlp", got '
                             f'{unknown}')
        budgets = dict(
            value=budget.get('value', 1.0), mlp=budget.get('mlp', 1.0))
    else:
        budgets = dict(value=budget, mlp=budget)
    for key, value in budgets.items():
        if isinstance(
                value,
                bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(f'budget[{key!r}] must be a positive number, '
                             f'got {value!r}')
    return budgets


@register_model
class KWVisionTransformer(KWBackboneMixin, VisionTransformer):
    """DeiT / ViT whose value projections and MLPs draw from warehouses.

    The paper (Li & Yao, ICML 2024, Table 11): "each of the partitioned
    cells of the weight matrices for the value and MLP layers of each DeiT
    backbone is represented as a linear mixture of a kernel warehouse
    shared across multiple multi-head self-attention blocks and MLP blocks,
    except the query and key matrices." It gives no more than that and no
    code exists; mmkw's layout (the one that reproduces the paper's
    parameter counts best, see the README): the blocks form consecutive
    groups of ``blocks_per_warehouse``; each group has a warehouse for its
    value projections and one for its MLP layers (``fc1`` and ``fc2``),
    cells of the channel gcd. The fused ``qkv`` projection is split into a
    static ``qk`` and a KW ``v`` (:class:`SplitQKV`, module
    ``layers.i.attn.qkv``); the output projection stays static. The
    attention of a KW linear layer pools over all tokens, class token
    included, and uses a LayerNorm.

    Everything else (``arch``, ``img_size``, ``patch_size``,
    ``out_indices``, ``out_type``, ``with_cls_token``, ``frozen_stages``,
    ``init_cfg``, module names) is MMPretrain's ``VisionTransformer``;
    ``frozen_stages`` also freezes every warehouse a frozen block draws
    from.

    Args:
        arch (str | dict): MMPretrain ViT arch, e.g. ``'deit-tiny'``,
            ``'deit-small'``. Defaults to ``'deit-tiny'``.
        budget (float | dict): ``b`` of every warehouse, or
            ``dict(value=..., mlp=...)``. Defaults to 1.
        blocks_per_warehouse (int): Blocks sharing one pair of warehouses.
            Defaults to 6.
        attention_init (bool): Start at temperature 1 with the initial
            assignment (training from scratch with ``KWTemperatureHook``);
            False pins it to 0. Defaults to True.
        reduction (float): Attention hidden ratio. Defaults to 0.0625.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer. Defaults to ``dict(type='LN')``.
        **kwargs: Other arguments of MMPretrain's ``VisionTransformer``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'deit-tiny',
                 budget: Union[float, dict] = 1.0,
                 blocks_per_warehouse: int = 6,
                 attention_init: bool = True,
                 reduction: float = 0.0625,
                 attention_norm_cfg: Optional[dict] = None,
                 **kwargs):
        budgets = _check_budget(budget)
        if isinstance(blocks_per_warehouse, bool) or not isinstance(
                blocks_per_warehouse, int) or blocks_per_warehouse < 1:
            raise ValueError(f'blocks_per_warehouse must be a positive int, '
                             f'got {blocks_per_warehouse!r}')
        manager = WarehouseManager(
            budget=budgets['value'],
            reduction=reduction,
            norm_layer=attention_norm_layer(
                attention_norm_cfg, default=dict(type='LN')))
        super().__init__(arch=arch, **kwargs)
        self.budget = budget
        self.budgets = budgets
        self.blocks_per_warehouse = blocks_per_warehouse
        self.attention_init = attention_init
        for layer in self.layers:
            layer.attn.qkv = SplitQKV(layer.attn.qkv)
        self.convert_to_kw(manager, attention_init)

    def kw_layout(self) -> KWLayout:
        layout = KWLayout()
        for i in range(len(self.layers)):
            group = i // self.blocks_per_warehouse
            value = layout.warehouse(f'group{group}_value',
                                     self.budgets['value'])
            mlp = layout.warehouse(f'group{group}_mlp', self.budgets['mlp'])
            layout.assign(f'layers.{i}.attn.qkv.v', value)
            layout.assign(f'layers.{i}.ffn.layers.0.0', mlp)
            layout.assign(f'layers.{i}.ffn.layers.1', mlp)
        return layout

    def frozen_modules(self) -> List[nn.Module]:
        return [self.layers[i] for i in range(max(self.frozen_stages, 0))]

    def _freeze_stages(self):
        # VisionTransformer freezes (the embeddings too) only for
        # frozen_stages > 0.
        if self.frozen_stages > 0:
            super()._freeze_stages()
