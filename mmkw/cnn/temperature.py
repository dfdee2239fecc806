"""Temperature control of every KW layer of a model."""
import math
from typing import List

import torch.nn as nn

from .attention import KWAttention
from .manager import WarehouseManager

__all__ = ['set_temperature', 'get_temperature', 'pinned_managers']


def pinned_managers(model: nn.Module) -> List[str]:
    """Module paths of the warehouse managers in ``model`` bound with
    ``attention_init=False`` (temperature pinned to 0: fine-tuning)."""
    return [
        path or type(model).__name__ for path, m in model.named_modules()
        if _pinned(m)
    ]


def _pinned(module: nn.Module) -> bool:
    """A warehouse manager bound with ``attention_init=False``."""
    return isinstance(module, WarehouseManager) \
        and module.plan is not None and not module.attention_init


def set_temperature(model: nn.Module, tau: float) -> int:
    """Set the attention temperature of every KW layer in ``model``.

    Args:
        model (nn.Module): Any module (wrapped models are walked too).
        tau (float): Temperature in ``[0, 1]``: 1 gives the initial
            assignment, 0 the learnt attention alone.

    Returns:
        int: Number of KW layers updated.

    Raises:
        ValueError: If ``tau`` is outside ``[0, 1]``, or not 0 for a model
            bound with ``attention_init=False`` (pinned to 0).
    """
    tau = float(tau)
    if not math.isfinite(tau) or not 0.0 <= tau <= 1.0:
        raise ValueError(f'temperature must be in [0, 1], got {tau!r}')
    # One walk (the temperature hook calls this every iteration): collect
    # the attentions, and refuse before changing any if a manager is pinned.
    attentions = []
    for path, m in model.named_modules():
        if isinstance(m, KWAttention):
            attentions.append(m)
        elif tau != 0.0 and _pinned(m):
            raise ValueError(
                f'temperature {tau!r} asked of a model bound with '
                f'attention_init=False ({path or type(model).__name__}), '
                f'whose temperature is pinned to 0 (fine-tuning)')
    for attention in attentions:
        attention.temperature.fill_(tau)
    return len(attentions)


def get_temperature(model: nn.Module):
    """The temperature of the model's KW layers, ``None`` if it has none.

    Raises:
        ValueError: If the layers disagree.
    """
    values = {
        float(m.temperature)
        for m in model.modules() if isinstance(m, KWAttention)
    }
    if not values:
        return None
    if len(values) > 1:
        raise ValueError(f'KW layers have different temperatures: '
                         f'{sorted(values)}')
    return values.pop()
