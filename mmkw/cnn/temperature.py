"""Temperature control of every KW layer of a model."""
import math
from typing import List

import torch.nn as nn

from .attention import KWAttention
from .bound import bound_layers

__all__ = ['set_temperature', 'get_temperature', 'pinned_managers']


def pinned_managers(model: nn.Module) -> List[str]:
    """Module paths of the warehouse managers in ``model`` bound with
    ``attention_init=False`` (temperature pinned to 0: fine-tuning)."""
    return list(
        dict.fromkeys(record.manager_path for record, _ in bound_layers(model)
                      if not record.attention_init))


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
    # the attentions, and refuse before changing any if a layer is pinned.
    attentions = []
    for record, layer in bound_layers(model):
        if tau != 0.0 and not record.attention_init:
            raise ValueError(
                f'temperature {tau!r} asked of a model bound with '
                f'attention_init=False ({record.manager_path}), whose '
                f'temperature is pinned to 0 (fine-tuning)')
        attentions.append(layer.attention)
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
