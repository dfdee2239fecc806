"""KernelWarehouse core: plan, attention, layers and manager (torch only)."""
from .attention import (ATTENTION_TYPES, AttentionOutput, KWAttention,
                        KWStarAttention)
from .blocked import kw_conv_blocked
from .bound import BoundLayer, bound_layers
from .convert import RULES, convert_to_kw, convertible_convs, kw_layout_by_rule
from .functional import (IMPLEMENTATIONS, assemble_kernels, kw_conv,
                         kw_conv_implementation, kw_conv_reference,
                         kw_conv_unfold)
from .geometry import ConvGeometry
from .layers import KWConv1d, KWConv2d, KWConvNd, KWLinear
from .layout import (KWLayout, apply_layout, kw_layer_like, plain_layer_like,
                     reset_kw_attentions)
from .loading import note_checkpoint_source
from .manager import WarehouseManager
from .plan import (MAX_WAREHOUSE_PARAMS, ZERO_CELL, LayerPlan, LayerSpec,
                   NetworkPlan, WarehousePlan, WarehouseSpec, build_plan,
                   check_positive, default_cell_ratio, format_budget)
from .temperature import get_temperature, pinned_managers, set_temperature

__all__ = [
    'KWAttention', 'KWStarAttention', 'ATTENTION_TYPES', 'AttentionOutput',
    'ConvGeometry', 'assemble_kernels', 'kw_conv', 'kw_conv_reference',
    'kw_conv_unfold', 'kw_conv_blocked', 'kw_conv_implementation',
    'IMPLEMENTATIONS', 'KWConvNd', 'note_checkpoint_source', 'KWConv1d',
    'KWConv2d', 'KWLinear', 'WarehouseManager', 'BoundLayer', 'bound_layers',
    'MAX_WAREHOUSE_PARAMS', 'ZERO_CELL', 'LayerSpec', 'LayerPlan',
    'NetworkPlan', 'WarehousePlan', 'WarehouseSpec', 'build_plan',
    'default_cell_ratio', 'check_positive', 'format_budget', 'set_temperature',
    'get_temperature', 'pinned_managers', 'KWLayout', 'apply_layout',
    'kw_layer_like', 'plain_layer_like', 'reset_kw_attentions', 'RULES',
    'convert_to_kw', 'convertible_convs', 'kw_layout_by_rule'
]
