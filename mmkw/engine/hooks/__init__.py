"""Training hooks of mmkw."""
from .attention_stats_hook import KWAttentionStatsHook, kw_layer_plans
from .temperature_hook import KWTemperatureHook

__all__ = ['KWTemperatureHook', 'KWAttentionStatsHook', 'kw_layer_plans']
