"""KernelWarehouse core: plan, attention, layers and manager (torch only)."""
from .attention import KWAttention
from .functional import assemble_kernels, kw_conv, kw_conv_reference
from .kw_conv import KWConv1d, KWConv2d, KWConvNd, KWLinear
from .manager import WarehouseManager
from .plan import (ZERO_CELL, LayerPlan, LayerSpec, NetworkPlan,
                   WarehousePlan, WarehouseSpec, build_plan,
                   default_cell_ratio, format_budget)
from .temperature import get_temperature, set_temperature

__all__ = [
    'KWAttention', 'assemble_kernels', 'kw_conv', 'kw_conv_reference',
    'KWConvNd', 'KWConv1d', 'KWConv2d', 'KWLinear', 'WarehouseManager',
    'ZERO_CELL', 'LayerSpec', 'LayerPlan', 'NetworkPlan', 'WarehousePlan',
    'WarehouseSpec', 'build_plan', 'default_cell_ratio', 'format_budget',
    'set_temperature', 'get_temperature'
]
