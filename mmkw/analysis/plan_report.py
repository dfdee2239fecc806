"""The warehouse plan of any KW model as tables, without allocating it.

:func:`plan_report` prints
every warehouse manager's plan as the paper's Table 14 (per warehouse: cell
shape, layers, ``m_t``, ``n``, parameters), the totals against the plain
counterpart, and optionally every KW layer.
"""
from typing import Dict, Iterator, List

import torch
import torch.nn as nn

from mmkw.cnn import ZERO_CELL, KWAttention, KWConvNd, bound_layers

__all__ = ['plan_report']


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
    by_manager: Dict[str, list] = {}
    for record, _ in bound_layers(model):
        by_manager.setdefault(record.manager_path, []).append(record)
    if not by_manager:
        raise ValueError(f'{type(model).__name__} has no KW layer (no bound '
                         f'WarehouseManager)')
    managers = [(path, model.get_submodule(path)) for path in by_manager]
    out = []
    for path, manager in managers:
        out.append(f'[{path}]\n{manager.plan.table()}')
        if layers:
            rows = [(r.plan.name,
                     'x'.join(str(s)
                              for s in r.geometry.weight_shape), r.warehouse,
                     '/'.join(str(g)
                              for g in r.plan.split), r.plan.num_mixtures,
                     r.plan.start, _beta_pattern(list(r.plan.beta)))
                    for r in by_manager[path]]
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
