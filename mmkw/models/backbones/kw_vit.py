"""Vision Transformers (DeiT) with KernelWarehouse value and MLP layers."""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models.backbones import VisionTransformer

from mmkw.cnn import KWLayout
from mmkw.registry import register_model
from ..kw_args import Budget, CellRatio, build_warehouse_manager
from .base import KWBackboneMixin
from .utils import check_frozen_stages, check_out_indices

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


def _num_layers(arch, arch_zoo: Mapping) -> int:
    """The layers of ``arch`` (checked as ``VisionTransformer`` asserts)."""
    if isinstance(arch, str):
        if arch.lower() not in arch_zoo:
            raise ValueError(f'arch must be one of {sorted(arch_zoo)} or a '
                             f'dict, got {arch!r}')
        return arch_zoo[arch.lower()]['num_layers']
    keys = {'embed_dims', 'num_layers', 'num_heads', 'feedforward_channels'}
    if not isinstance(arch, Mapping) or not keys <= set(arch):
        raise ValueError(f'arch must be a name or a dict with the keys '
                         f'{sorted(keys)}, got {arch!r}')
    num_layers = arch['num_layers']
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) \
            or num_layers < 1:
        raise ValueError(f'arch["num_layers"] must be a positive int, got '
                         f'{num_layers!r}')
    return num_layers


@register_model
class KWVisionTransformer(KWBackboneMixin, VisionTransformer):
    """DeiT / ViT whose value projections and MLPs draw from warehouses.

    The paper (Li & Yao, ICML 2024, Table 11) makes the value and MLP
    layers of DeiT KW, with warehouses shared across blocks, and gives no
    code. mmkw's layout: the blocks form groups of ``blocks_per_warehouse``,
    each with a warehouse for its value projections (``group{k}_value``)
    and one for its MLP layers (``group{k}_mlp``); the fused ``qkv`` is split
    into a static ``qk`` and a KW ``v`` (:class:`SplitQKV`). Module names
    and the other arguments are MMPretrain's ``VisionTransformer``'s;
    ``frozen_stages`` also freezes the frozen blocks' warehouses. The KW
    arguments are those of every mmkw model; docs/model_zoo.md explains the
    layout.

    Args:
        arch (str | dict): MMPretrain ViT arch, e.g. ``'deit-tiny'``,
            ``'deit-small'``. Defaults to ``'deit-tiny'``.
        budget (float | dict): Parameter budget ``b`` of every warehouse, or
            a dict by warehouse, pattern or group (``value``, ``mlp``: a
            number or one per block group). Defaults to 1.
        reduction (float, optional): Attention hidden ratio; None: 1/16.
        cell_ratio (float | tuple[float, float], optional): Cell channels
            as a fraction of the channel gcd of the warehouses at the
            default budget; None: 1 for ``b >= 1``, 0.5 below.
        attention_type (str): ``'kw'`` or ``'kw_star'`` (KW*).
            Defaults to ``'kw'``.
        nonlocal_basis_ratio (float): Below 1, the attention's non-local
            basis mapping. Defaults to 1.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer; None: ``LN``.
        attention_init (bool): Start at temperature 1 (training from
            scratch); False pins it to 0 (fine-tuning). Defaults to True.
        blocks_per_warehouse (int): Blocks sharing one pair of warehouses.
            Defaults to 6.
        out_indices (Sequence[int] | int): Output from which blocks.
            Defaults to -1.
        frozen_stages (int): Blocks to freeze, -1 for none. Defaults to -1.
        **kwargs: Other arguments of MMPretrain's ``VisionTransformer``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'deit-tiny',
                 budget: Budget = 1.0,
                 reduction: Optional[float] = None,
                 cell_ratio: CellRatio = None,
                 attention_type: str = 'kw',
                 nonlocal_basis_ratio: float = 1.0,
                 attention_norm_cfg: Optional[dict] = None,
                 attention_init: bool = True,
                 blocks_per_warehouse: int = 6,
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = -1,
                 **kwargs):
        if isinstance(blocks_per_warehouse, bool) or not isinstance(
                blocks_per_warehouse, int) or blocks_per_warehouse < 1:
            raise ValueError(f'blocks_per_warehouse must be a positive int, '
                             f'got {blocks_per_warehouse!r}')
        num_layers = _num_layers(arch, self.arch_zoo)
        out_indices = check_out_indices(out_indices, num_layers)
        check_frozen_stages(frozen_stages, num_layers)
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
            **kwargs)
        self.blocks_per_warehouse = blocks_per_warehouse
        for layer in self.layers:
            layer.attn.qkv = SplitQKV(layer.attn.qkv)
        self.convert_to_kw(manager, budget, attention_init)

    def kw_layout(self) -> KWLayout:
        layout = KWLayout()
        for i in range(len(self.layers)):
            group = i // self.blocks_per_warehouse
            value = layout.warehouse(f'group{group}_value')
            mlp = layout.warehouse(f'group{group}_mlp')
            layout.assign(f'layers.{i}.attn.qkv.v', value)
            layout.assign(f'layers.{i}.ffn.layers.0.0', mlp)
            layout.assign(f'layers.{i}.ffn.layers.1', mlp)
        return layout

    def kw_budget_groups(self) -> Dict[str, Tuple[str, List[List[str]]]]:
        """``value`` and ``mlp``, one member per block group."""
        groups = range((len(self.layers) - 1) // self.blocks_per_warehouse + 1)
        return {
            kind: ('block group', [[f'group{g}_{kind}'] for g in groups])
            for kind in ('value', 'mlp')
        }

    def frozen_modules(self) -> List[nn.Module]:
        return [self.layers[i] for i in range(max(self.frozen_stages, 0))]

    def _freeze_stages(self):
        # VisionTransformer freezes (the embeddings too) only for
        # frozen_stages > 0.
        if self.frozen_stages > 0:
            super()._freeze_stages()
