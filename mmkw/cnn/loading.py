"""What a KW model says when a checkpoint does not fit it.

A module sees only its own keys when PyTorch loads a state dict, so the
file a refusal should name, and the keys it holds, come from the loader that
read it: mmkw's checkpoint loaders (:mod:`mmkw.engine.checkpoint`) note them
here, per thread.
"""
import threading
from typing import Optional, Sequence, Tuple

__all__ = [
    'CHECKPOINT_HINT', 'note_checkpoint_source', 'checkpoint_name',
    'checkpoint_keys'
]

#: What to do about a checkpoint that does not fit a KW model.
CHECKPOINT_HINT = (
    'convert official KernelWarehouse checkpoints with '
    'tools/model_converters/kw_official_to_mmkw.py and check that the config '
    '(architecture, budget) matches')

_source = threading.local()


def note_checkpoint_source(name: Optional[str],
                           keys: Optional[Sequence[str]] = None) -> None:
    """Record the checkpoint file this thread has just read (and the keys
    of its state dict), so that a refusal can name it and say where its
    keys are: a loader sees the whole file, a module only its own keys.
    mmkw's checkpoint loaders call it; ``None`` forgets it."""
    _source.name = name
    _source.keys = tuple(keys) if keys is not None else None


def checkpoint_name() -> str:
    """``"checkpoint '<file>'"`` for the file noted by
    :func:`note_checkpoint_source`, else ``'the checkpoint'``."""
    name = getattr(_source, 'name', None)
    return f'checkpoint {name!r}' if name else 'the checkpoint'


def checkpoint_keys() -> Optional[Tuple[str, ...]]:
    """The state-dict keys of the file noted by
    :func:`note_checkpoint_source`, if known."""
    return getattr(_source, 'keys', None)
