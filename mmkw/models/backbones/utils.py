"""Checks shared by the KW backbones: ``out_indices``, ``frozen_stages``.
(The KW arguments are checked in :mod:`mmkw.models.kw_args`.)"""
from typing import Sequence, Tuple

__all__ = ['check_out_indices', 'check_frozen_stages']


def check_out_indices(out_indices: Sequence[int],
                      num_stages: int) -> Tuple[int, ...]:
    """Validate ``out_indices`` (negative values count from the end).

    Returns:
        tuple[int]: The indices, made non-negative.
    """
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    if not isinstance(out_indices, Sequence) or isinstance(
            out_indices, str) or not out_indices:
        raise ValueError(f'out_indices must be a non-empty sequence of ints, '
                         f'got {out_indices!r}')
    result = []
    for index in out_indices:
        if not isinstance(index, int) or not -num_stages <= index < num_stages:
            raise ValueError(
                f'out_indices must be in [{-num_stages}, {num_stages - 1}] '
                f'for {num_stages} stages, got {index!r}')
        result.append(index % num_stages)
    return tuple(result)


def check_frozen_stages(frozen_stages: int, num_stages: int) -> None:
    """Validate ``frozen_stages``: -1 (nothing) to ``num_stages``."""
    if not isinstance(frozen_stages, int) \
            or not -1 <= frozen_stages <= num_stages:
        raise ValueError(f'frozen_stages must be an int in [-1, {num_stages}] '
                         f'(-1 freezes nothing), got {frozen_stages!r}')
