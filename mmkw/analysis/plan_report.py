"""The warehouse plan of any KW model as tables, without allocating it.

:func:`plan_report` prints
every warehouse manager's plan as the paper's Table 14 (per warehouse: cell
shape, layers, ``m_t``, ``n``, parameters), the totals against the plain
counterpart, and optionally every KW layer.
"""
from typing import Iterator, List, Tuple

import torch
import torch.nn as nn

from mmkw.cnn import (ZERO_CELL, KWAttention, KWConvNd, WarehouseManager,
                      bound_layers)

__all__ = ['plan_report', 'managers_of']


def managers_of(model: nn.Module) -> List[Tuple[str, WarehouseManager]]:
    """``(module path, manager)`` of every bound manager, in model order."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, WarehouseManager) and m.plan is not None]


def _beta_pattern(beta: list) -> str:
    """``0-8`` for consecutive cells, ``z`` for the zero cell, runs joined
    by commas (the first 6 runs)."""
    runs, start, prev = [], None, None
    for cell in beta + [None]:
        if cell != ZERO_CELL and cell is not None and prev is not None \
                and prev != ZERO_CELL and cell == prev + 1:
            prev = cell
            continue
        if start is not None:
            runs.append(
                str(start)
                if start == prev or start == ZERO_CELL else f'{start}-{prev}')
        start = prev = cell
    text = ','.join(runs[:6])
    return text + (f',... ({len(runs)} runs)' if len(runs) > 6 else '')


def _table(header: tuple, rows: List[tuple]) -> str:
    rows = [tuple(str(c) for c in row) for row in [header] + rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        '  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
        for row in rows
    ]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def _numel(params: Iterator[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def plan_report(model: nn.Module, layers: bool = False) -> str:
    """The plans of every warehouse manager of ``model`` and the parameter
    totals against its plain counterpart.

    Args:
        model (nn.Module): A KW model (built on any device, ``meta`` too).
        layers (bool): Also list every KW layer. Defaults to False.

    Returns:
        str: The report.
    """
    managers = managers_of(model)
    if not managers:
        raise ValueError(f'{type(model).__name__} has no KW layer (no bound '
                         f'WarehouseManager)')
    out = []
    for name, manager in managers:
        out.append(f'[{name}]\n{manager.plan.table()}')
        if layers:
            plan = manager.plan
            rows = [(lp.name, 'x'.join(str(s) for s in layer.weight_shape),
                     plan.warehouses[lp.warehouse_index].name,
                     '/'.join(str(g)
                              for g in lp.split), lp.num_mixtures, lp.start,
                     _beta_pattern(list(lp.beta)))
                    for path, _, layer, lp in bound_layers(model)
                    if path == name]
            out.append(
                _table(('layer', 'kernel', 'warehouse', 'G_s/G_o/G_i', 'm',
                        'start', 'beta'), rows))
    kw_layers = [m for m in model.modules() if isinstance(m, KWConvNd)]
    warehouses = sum(_numel(m.parameters()) for _, m in managers)
    attention = sum(
        _numel(m.parameters()) for m in model.modules()
        if isinstance(m, KWAttention))
    plain_kernels = sum(torch.Size(m.weight_shape).numel() for m in kw_layers)
    total = _numel(model.parameters())
    rest = total - warehouses - attention
    plain_total = rest + plain_kernels
    rows = [
        ('warehouses', f'{warehouses:,}', f'{plain_kernels:,}',
         'the kernels of the KW layers'),
        ('attentions', f'{attention:,}', '0', f'{len(kw_layers)} KW layers'),
        ('everything else', f'{rest:,}', f'{rest:,}',
         'norms, biases, plain layers'),
        ('total', f'{total:,}', f'{plain_total:,}',
         f'{total / plain_total:.3f}x the plain model'),
    ]
    out.append(_table(('parameters', 'KW', 'plain', ''), rows))
    return '\n\n'.join(out)
