"""Temperature control of every KW layer of a model."""
import math

import torch.nn as nn

from .attention import KWAttention

__all__ = ['set_temperature', 'get_temperature']


def set_temperature(model: nn.Module, tau: float) -> int:
    """Set the attention temperature of every KW layer in ``model``.

    Args:
        model (nn.Module): Any module (wrapped models are walked too).
        tau (float): Temperature in ``[0, 1]``: 1 gives the initial
            assignment, 0 the learnt attention alone.

    Returns:
        int: Number of KW layers updated.
    """
    tau = float(tau)
    if not math.isfinite(tau) or not 0.0 <= tau <= 1.0:
        raise ValueError(f'temperature must be in [0, 1], got {tau!r}')
    count = 0
    for m in model.modules():
        if isinstance(m, KWAttention):
            m.temperature.fill_(tau)
            count += 1
    return count


def get_temperature(model: nn.Module):
    """The temperature of the model's KW layers, ``None`` if it has none.

    Raises:
        ValueError: If the layers disagree.
    """
    values = {float(m.temperature) for m in model.modules()
              if isinstance(m, KWAttention)}
    if not values:
        return None
    if len(values) > 1:
        raise ValueError(f'KW layers have different temperatures: '
                         f'{sorted(values)}')
    return values.pop()
