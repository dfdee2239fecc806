"""MMEngine integration: checkpoint loading, efficient ConvBN, hooks."""
from .checkpoint import (CheckpointLoadError, load_from_http, load_from_local,
                         safe_checkpoint_globals, url_cache_path)
from .checkpoint_saving import (is_readable_checkpoint,
                                latest_readable_checkpoint, save_checkpoint,
                                save_then_prune)
from .efficient_conv_bn import (KWTracer,
                                efficient_conv_bn_eval_graph_transform,
                                kw_conv_bn_eval_control,
                                turn_on_efficient_conv_bn_eval)
from .hooks import (CheckpointCoverageHook, KWAttentionStatsHook,
                    KWTemperatureHook, RandomStateHook, checkpoint_coverage,
                    get_random_states, set_random_states)
from .launch import (TOOL_HOOKS, add_cfg_options, add_common_args,
                     add_tool_hooks, build_runner, load_config,
                     parse_common_args, setup_cpu_distributed)
from .optim_wrapper import CPUAutocastOptimWrapper
from .preflight import MissingInputsError, check_inputs, find_missing_inputs

__all__ = [
    'CheckpointLoadError', 'load_from_local', 'load_from_http',
    'safe_checkpoint_globals', 'url_cache_path', 'save_checkpoint',
    'save_then_prune', 'is_readable_checkpoint', 'latest_readable_checkpoint',
    'TOOL_HOOKS', 'add_tool_hooks', 'KWTracer',
    'efficient_conv_bn_eval_graph_transform', 'kw_conv_bn_eval_control',
    'turn_on_efficient_conv_bn_eval', 'add_cfg_options', 'add_common_args',
    'parse_common_args', 'build_runner', 'load_config',
    'setup_cpu_distributed', 'MissingInputsError', 'check_inputs',
    'find_missing_inputs', 'CPUAutocastOptimWrapper', 'KWTemperatureHook',
    'KWAttentionStatsHook', 'CheckpointCoverageHook', 'checkpoint_coverage',
    'RandomStateHook', 'get_random_states', 'set_random_states'
]
