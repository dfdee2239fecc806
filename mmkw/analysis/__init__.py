"""Analysis of KW models: warehouse plans, complexity (FLOPs, parameters)
against the plain counterpart, attention maps."""
from .attention_maps import (AttentionRecorder, draw_warehouse_map,
                             layer_statistics, warehouse_maps)
from .complexity import KW_FLOP_HANDLES, count_complexity, plain_counterpart
from .plan_report import plan_report

__all__ = [
    'KW_FLOP_HANDLES', 'count_complexity', 'plain_counterpart', 'plan_report',
    'AttentionRecorder', 'draw_warehouse_map', 'layer_statistics',
    'warehouse_maps'
]
