"""Analysis of KW models: complexity (FLOPs, parameters) against the plain
counterpart."""
from .complexity import (KW_FLOP_HANDLES, count_complexity,
                         plain_counterpart)

__all__ = ['KW_FLOP_HANDLES', 'count_complexity', 'plain_counterpart']
