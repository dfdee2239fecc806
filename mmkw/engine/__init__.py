"""MMEngine integration: checkpoint loading and training hooks."""
from .checkpoint import (CheckpointLoadError, load_from_local,
                         safe_checkpoint_globals)
from .hooks import *  # noqa: F401,F403
from .hooks import __all__ as _hooks
from .launch import (add_common_args, build_runner, load_config,
                     parse_common_args, setup_cpu_distributed)

__all__ = [
    'CheckpointLoadError', 'load_from_local', 'safe_checkpoint_globals',
    'add_common_args', 'parse_common_args', 'build_runner', 'load_config',
    'setup_cpu_distributed'
] + list(_hooks)
