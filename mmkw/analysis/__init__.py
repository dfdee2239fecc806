"""Analysis of KW models: warehouse plans, complexity (FLOPs, parameters)
against the plain counterpart."""
from .complexity import (KW_FLOP_HANDLES, count_complexity,
                         plain_counterpart)
from .plan_report import build_on_meta, managers_of, plan_report

__all__ = [
    'KW_FLOP_HANDLES', 'count_complexity', 'plain_counterpart',
    'build_on_meta', 'managers_of', 'plan_report'
]
