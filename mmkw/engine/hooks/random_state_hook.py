"""Random states saved with every checkpoint, for an exact ``--resume``."""
import logging
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from mmkw.registry import register_hook

__all__ = ['RandomStateHook', 'get_random_states', 'set_random_states']


def get_random_states() -> dict:
    """The states of Python's, NumPy's and PyTorch's (CPU and CUDA) global
    random generators, as plain types, arrays and tensors (they load with
    ``weights_only=True`` and mmkw's allow-list)."""
    states = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict) -> None:
    """Restore states from :func:`get_random_states`."""
    version, internal, gauss = states['python']
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(states['numpy']))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


@register_hook
class RandomStateHook(Hook):
    """Save the random generators' states with each checkpoint and restore
    them on resume, so a resumed run continues bit for bit.

    MMEngine saves the seed, and on ``--resume`` seeds the generators again:
    the data order (the sampler's seed and epoch) continues, but augmentation
    and dropout draw other numbers than the uninterrupted run would. This
    hook stores the states of Python's, NumPy's and PyTorch's (CPU, CUDA)
    generators in the checkpoint (``random_states``, one entry per rank).

    In epoch-based loops the states are taken when a training epoch ends
    and set again when the next one begins, both in the uninterrupted run
    and after ``--resume``; whatever validation draws in between does not
    change training. A deterministic run (``randomness=dict(seed=...,
    deterministic=True)``, data loading in the main process or in workers
    that are not persistent) then resumes to bit-identical weights.
    Iteration-based loops restore the states when training starts again
    (MMEngine then skips the consumed batches, which draws numbers of its
    own), which is close but not exact.

    ``tools/train.py`` adds the hook to every run.

    Example:
        >>> custom_hooks = [dict(type='RandomStateHook')]
    """

    priority = 'HIGH'  # before CheckpointHook (VERY_LOW) saves

    def __init__(self):
        self._epoch_end: Optional[List[dict]] = None
        self._resumed: Optional[List[dict]] = None

    def after_train_epoch(self, runner) -> None:
        """Take the states of every rank as the epoch ends."""
        self._epoch_end = self._gather()

    def before_train_epoch(self, runner) -> None:
        """Start the epoch from the states the previous one ended with."""
        states = self._resumed or self._epoch_end
        self._resumed = None
        if states is not None:
            self._apply(states)

    def before_train(self, runner) -> None:
        """Iteration-based loops: restore resumed states once."""
        if self._resumed is not None and not isinstance(
                runner.train_loop, EpochBasedTrainLoop):
            self._apply(self._resumed)
            self._resumed = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the states in the checkpoint (runs on rank 0 only)."""
        epoch_end = isinstance(runner.train_loop, EpochBasedTrainLoop) and \
            self._epoch_end is not None
        checkpoint['random_states'] = self._epoch_end if epoch_end else [
            get_random_states()
        ]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the states of a resumed checkpoint for the next epoch."""
        if getattr(runner, '_resume', False):
            self._resumed = checkpoint.get('random_states')
            if self._resumed is None:
                print_log(
                    'RandomStateHook: the resumed checkpoint holds no random '
                    'states (written without this hook); the run continues '
                    'from the re-seeded generators', 'current',
                    logging.WARNING)

    def _gather(self) -> List[dict]:
        _, world_size = get_dist_info()
        states = get_random_states()
        return all_gather_object(states) if world_size > 1 else [states]

    def _apply(self, states: List[dict]) -> None:
        rank, world_size = get_dist_info()
        if len(states) == world_size:
            set_random_states(states[rank])
        else:
            print_log(
                f'RandomStateHook: the checkpoint holds the random states of '
                f'{len(states)} processes, this run has {world_size}; they '
                f'are not restored', 'current', logging.WARNING)
