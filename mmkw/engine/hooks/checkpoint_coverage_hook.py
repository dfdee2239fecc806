"""Refuse a ``load_from`` checkpoint that leaves most of the model
uninitialised."""
import re
from typing import Dict, List, Mapping, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmkw.registry import register_hook

__all__ = ['CheckpointCoverageHook', 'checkpoint_coverage']


def checkpoint_coverage(
        model_state: Mapping,
        state_dict: Mapping) -> Tuple[float, List[str], List[str]]:
    """How much of a model a state dict fills.

    Args:
        model_state (Mapping): The model's state dict.
        state_dict (Mapping): The checkpoint's.

    Returns:
        tuple: The fraction of the model's values (elements of its
        floating-point tensors) that the checkpoint gives under the same
        name and shape, the model's keys it does not fill, and the
        checkpoint's keys the model does not have.
    """
    total = matched = 0
    missing = []
    for key, value in model_state.items():
        if not value.is_floating_point():
            continue
        total += value.numel()
        other = state_dict.get(key)
        if hasattr(other, 'shape') and tuple(other.shape) == tuple(
                value.shape):
            matched += value.numel()
        else:
            missing.append(key)
    unexpected = [key for key in state_dict if key not in model_state]
    return (matched / total if total else 1.0), missing, unexpected


def _prefix_hint(model_keys: List[str], file_keys: List[str]) -> str:
    """Where the file's keys would match the model's: under one of the
    model's top-level modules (a backbone-only file) or without one of the
    file's (a file of a larger model)."""
    model_set = set(model_keys)
    heads = {k.split('.', 1)[0] for k in model_keys if '.' in k}
    for head in sorted(heads):
        if sum(f'{head}.{k}' in model_set for k in file_keys) > \
                len(file_keys) // 2:
            return (f'; its keys are those of the model\'s {head!r}: load it '
                    f'there with model.{head}.init_cfg=dict(type='
                    f'\'Pretrained\', checkpoint=...)')
    heads = {k.split('.', 1)[0] for k in file_keys if '.' in k}
    for head in sorted(heads):
        inner = [k[len(head) + 1:] for k in file_keys if k.startswith(head)]
        if sum(k in model_set for k in inner) > len(model_keys) // 2:
            return (f'; the model\'s keys are the file\'s under {head!r}: '
                    f'load it with init_cfg=dict(type=\'Pretrained\', '
                    f'checkpoint=..., prefix=\'{head}.\')')
    return ''


@register_hook
class CheckpointCoverageHook(Hook):
    """Refuse to go on from a checkpoint that fills too little of the model.

    MMEngine loads ``load_from`` (and the checkpoint of ``tools/test.py``)
    non-strictly: a checkpoint of another model, or one whose keys sit under
    another prefix, only logs "missing keys", and the run evaluates or
    trains a randomly initialised model. This hook checks the checkpoint
    before it is loaded: if it gives less than ``min_fraction`` of the
    model's values (by name and shape), it raises a ValueError that names
    the file, says what matched and what did not, and where its keys would
    fit. Fine-tuning with a new head (a few mismatched layers) passes; the
    parts that do load keep MMEngine's non-strict behaviour.

    ``tools/train.py`` and ``tools/test.py`` add the hook to every run.

    Args:
        min_fraction (float): Least fraction of the model's values the
            checkpoint must give. Defaults to 0.5.
    """

    priority = 'VERY_HIGH'

    def __init__(self, min_fraction: float = 0.5):
        if isinstance(min_fraction, bool) or not isinstance(
                min_fraction, (int, float)) or not 0 <= min_fraction <= 1:
            raise ValueError(f'min_fraction must be a number in [0, 1], got '
                             f'{min_fraction!r}')
        self.min_fraction = min_fraction

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state_dict: Dict = checkpoint.get('state_dict', checkpoint)
        # MMEngine's Runner.load_checkpoint strips the DDP prefix likewise.
        state_dict = {
            re.sub(r'^module\.', '', k): v
            for k, v in state_dict.items()
        }
        model_state = model.state_dict()
        fraction, missing, unexpected = checkpoint_coverage(
            model_state, state_dict)
        if fraction >= self.min_fraction:
            return
        source = getattr(runner, '_load_from', None) or 'the checkpoint'
        tensors = [k for k, v in model_state.items() if v.is_floating_point()]
        raise ValueError(
            f'checkpoint {source!r} fills {fraction:.1%} of the model '
            f'({len(tensors) - len(missing)} of {len(tensors)} tensors match '
            f'by name and shape; at least {self.min_fraction:.0%} of its '
            f'values are needed): missing e.g. {missing[:3]}, and '
            f'{len(unexpected)} keys the model does not have, e.g. '
            f'{unexpected[:3]}'
            f'{_prefix_hint(list(model_state), list(state_dict))}. Check '
            f'that the config and the checkpoint belong together.')
