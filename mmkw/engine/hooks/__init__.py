"""Training hooks of mmkw."""
from .attention_stats_hook import KWAttentionStatsHook
from .checkpoint_coverage_hook import (CheckpointCoverageHook,
                                       checkpoint_coverage)
from .random_state_hook import (RandomStateHook, get_random_states,
                                set_random_states)
from .temperature_hook import KWTemperatureHook

__all__ = [
    'KWTemperatureHook', 'KWAttentionStatsHook', 'CheckpointCoverageHook',
    'checkpoint_coverage', 'RandomStateHook', 'get_random_states',
    'set_random_states'
]
