"""Helpers shared by the KW backbones: argument checks, the attention
norm."""
import functools
import math
from typing import Callable, Optional, Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import build_norm_layer

__all__ = ['check_out_indices', 'check_frozen_stages', 'attention_norm_layer']


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


def _build_norm(cfg: dict, num_features: int) -> nn.Module:
    return build_norm_layer(cfg, num_features)[1]


def _group_norm(num_groups: int, num_features: int) -> nn.Module:
    """GroupNorm with the most groups, up to ``num_groups``, that divide
    ``num_features`` (an attention's hidden width varies per layer)."""
    return nn.GroupNorm(math.gcd(num_groups, num_features), num_features)


#: Backbone norms that use no batch statistics.
_BATCH_INDEPENDENT = ('GN', 'LN', 'LN2d', 'IN', 'IN1d', 'IN2d')


def attention_norm_layer(
        attention_norm_cfg: Optional[dict],
        norm_cfg: Optional[dict] = None,
        default: Optional[dict] = None) -> Callable[[int], nn.Module]:
    """The norm of every KW attention's hidden layer, from a config.

    Args:
        attention_norm_cfg (dict, optional): An mmcv norm config (``BN1d``,
            ``SyncBN``, ``GN``, ``LN``, ...). None follows the backbone
            where it matters: ``SyncBN`` when ``norm_cfg`` is SyncBN (in DDP
            the attention statistics are synchronised like the
            backbone's); a batch-independent norm when ``norm_cfg`` is one
            (GN: a GroupNorm with a group count dividing the hidden width;
            LN, IN: a LayerNorm), since a user picks those to avoid batch
            statistics; else ``default``.
        norm_cfg (dict, optional): The backbone's norm config.
        default (dict, optional): The official norm of the backbone;
            ``dict(type='BN1d')`` if None.

    Returns:
        Callable: Builds the norm from the hidden width (picklable).
    """
    backbone_norm = (norm_cfg or {}).get('type')
    if attention_norm_cfg is None and backbone_norm in _BATCH_INDEPENDENT:
        if backbone_norm == 'GN':
            return functools.partial(_group_norm,
                                     int(norm_cfg.get('num_groups', 32)))
        return nn.LayerNorm
    if attention_norm_cfg is None:
        if backbone_norm == 'SyncBN':
            attention_norm_cfg = dict(type='SyncBN')
        else:
            attention_norm_cfg = default or dict(type='BN1d')
    if not isinstance(attention_norm_cfg, dict) or \
            'type' not in attention_norm_cfg:
        raise ValueError(f'attention_norm_cfg must be a norm config dict '
                         f'such as dict(type="BN1d"), got '
                         f'{attention_norm_cfg!r}')
    _build_norm(attention_norm_cfg, 16)  # fails early on a bad config
    return functools.partial(_build_norm, dict(attention_norm_cfg))
