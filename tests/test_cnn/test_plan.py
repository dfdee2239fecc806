"""The warehouse plan: golden layouts, table and argument errors."""
import math
import re

import pytest
from helpers import (assert_plan_matches_golden, golden_plan_names,
                     load_golden_plan)

from mmkw.cnn import (ZERO_CELL, LayerSpec, WarehouseSpec, build_plan,
                      format_budget)


def _model_budget(name: str) -> float:
    token = name.rpartition('_kw')[2][:-1]  # '1d2', '4' ...
    if token.startswith('1d'):
        return 1 / int(token[2:])
    return float(token)


def _warehouse_budget(golden: dict, index: int) -> float:
    """Budget of one official warehouse, from the model name and the
    kernelwarehouse.md rules (no use of the golden ``n``)."""
    budget = _model_budget(golden['model'])
    if golden['model'].startswith('mobilenetv2') and budget < 1:
        # Hand-tuned b=1/2 MobileNetV2: stem and depthwise convs keep b=1.
        layers = [
            lay for lay in golden['kw_layers'] if lay['warehouse'] == index
        ]
        if all(lay['groups'] > 1 or lay['in_channels'] == 3 for lay in layers):
            return 1.0
    return budget


def _warehouse_cell_ratio(golden: dict, index: int):
    """The classifier warehouse of the b=1/2 MobileNetV2 has the hand-set
    cell ``[1000, 32, 1]`` (kernelwarehouse.md section 3)."""
    layers = [lay for lay in golden['kw_layers'] if lay['warehouse'] == index]
    if all(len(lay['kernel_size']) == 1 for lay in layers):
        return (1.0, 32 / layers[0]['in_channels'])
    return None


def _specs(golden: dict):
    layers = [
        LayerSpec(lay['path'], f"wh{lay['warehouse']}",
                  lay['in_channels'], lay['out_channels'],
                  tuple(lay['kernel_size']), lay['groups'])
        for lay in golden['kw_layers']
    ]
    warehouses = [
        WarehouseSpec(f"wh{wh['index']}",
                      _warehouse_budget(golden, wh['index']),
                      _warehouse_cell_ratio(golden, wh['index']))
        for wh in golden['warehouses']
    ]
    return layers, warehouses


@pytest.mark.parametrize('name', golden_plan_names())
def test_golden_plan_reproduced(name):
    golden = load_golden_plan(name)
    plan = build_plan(*_specs(golden))
    assert_plan_matches_golden(plan, golden)
    assert plan.num_warehouse_params == golden['params_warehouses']


@pytest.mark.parametrize('name', golden_plan_names())
def test_every_cell_assigned_once(name):
    plan = build_plan(*_specs(load_golden_plan(name)))
    for wh in plan.warehouses:
        owned = []
        for lp in wh.layers:
            owned.extend(range(lp.start, lp.start + lp.num_cells))
            cells = [c for c in lp.beta if c != ZERO_CELL]
            assert len(set(cells)) == len(cells), lp.name
            assert all(lp.start <= c < lp.start + lp.num_cells
                       for c in cells), lp.name
        # The layers' own slices partition the warehouse.
        assert sorted(owned) == list(range(wh.num_cells)), wh.name
        if wh.spec.budget <= 1:
            used = sorted(c for lp in wh.layers for c in lp.beta
                          if c != ZERO_CELL)
            assert used == list(range(wh.num_cells)), wh.name


def _two_layers(budget=1.0, out=(16, 32)):
    layers = [
        LayerSpec('a', 'w', 8, out[0], (3, 3)),
        LayerSpec('b', 'w', out[0], out[1], (1, 1)),
    ]
    return build_plan(layers, [WarehouseSpec('w', budget)])


@pytest.mark.parametrize('budget', [0.25, 0.5, 1, 2, 4])
def test_small_plan(budget):
    plan = _two_layers(budget)
    wh = plan.warehouses[0]
    # gcd(16, 32) = 16 out, gcd(8, 16) = 8 in; halved below b = 1.
    ratio = 1 if budget >= 1 else 0.5
    assert wh.cell_shape == (int(16 * ratio), int(8 * ratio), 1, 1)
    a, b = plan.layers
    assert a.split == (9, 16 // wh.cell_shape[0], 8 // wh.cell_shape[1])
    assert b.split == (1, 32 // wh.cell_shape[0], 16 // wh.cell_shape[1])
    m_t = a.num_mixtures + b.num_mixtures
    assert wh.num_mixtures == m_t
    assert wh.num_cells == max(int(m_t * budget), 1)
    assert b.start == a.num_cells
    if budget >= 1:
        assert a.beta[:3] == [0, int(budget), 2 * int(budget)]
    else:
        period = int(1 / budget)
        assert a.beta[0] == 0
        assert a.beta[1:period + 1] == [ZERO_CELL] * period
        assert a.beta[period + 1] == 1


def test_table():
    plan = _two_layers(0.5)
    table = plan.table()
    lines = table.splitlines()
    for column in ('warehouse', 'budget', 'cell shape', 'layers', 'm_t', 'n',
                   'params'):
        assert column in lines[0]
    wh = plan.warehouses[0]
    row = lines[2].split()
    assert row[:3] == ['w', format_budget(0.5), '8x4x1x1']
    assert row[3:] == [
        '2',
        str(wh.num_mixtures),
        str(wh.num_cells), f'{wh.num_params:,}'
    ]
    total = lines[-1].split()
    assert total[0] == 'total'
    assert total[-1] == f'{plan.num_warehouse_params:,}'
    assert str(plan) == table
    assert '1 warehouses' in repr(plan)


@pytest.mark.parametrize('budget, text', [(1, '1x'), (4, '4x'), (0.5, '1d2x'),
                                          (0.25, '1d4x'), (0.75, '0.75x')])
def test_format_budget(budget, text):
    assert format_budget(budget) == text


@pytest.mark.parametrize('budget', [0, -1, float('nan'), float('inf'), '1'])
def test_bad_budget(budget):
    with pytest.raises(ValueError, match=re.escape(repr(budget))):
        WarehouseSpec('w', budget)


def test_bad_cell_ratio():
    with pytest.raises(ValueError, match=r'\(0, 1\].*1\.5'):
        WarehouseSpec('w', 1, cell_ratio=1.5)


def test_cells_must_divide_channels():
    # gcd 5 halved -> 2-channel cells, which do not divide 5 channels.
    layers = [LayerSpec('odd', 'w', 5, 5, (3, 3))]
    with pytest.raises(ValueError, match=r"'odd'.*2x2"):
        build_plan(layers, [WarehouseSpec('w', 0.5)])


def test_mixed_kernel_dims():
    layers = [
        LayerSpec('conv', 'w', 8, 8, (3, 3)),
        LayerSpec('linear', 'w', 8, 8, (1, )),
    ]
    with pytest.raises(ValueError, match='different kernel dimensions'):
        build_plan(layers, [WarehouseSpec('w')])


def test_undeclared_warehouse():
    layers = [LayerSpec('conv', 'nowhere', 8, 8, (3, 3))]
    with pytest.raises(ValueError, match="'nowhere'.*not declared"):
        build_plan(layers, [WarehouseSpec('w')])


def test_assignment_overflow():
    # b = 0.3: n = int(9 * 0.3) = 2 but one cell every int(1/0.3) = 3
    # mixtures needs 3 cells.
    layers = [LayerSpec('conv', 'w', 8, 8, (3, 3))]
    with pytest.raises(ValueError, match=r'budget 0\.3 .*n=2.*needs 3'):
        build_plan(layers, [WarehouseSpec('w', 0.3, cell_ratio=1)])


def test_declared_twice_and_empty():
    layers = [LayerSpec('conv', 'w', 8, 8, (3, 3))]
    with pytest.raises(ValueError, match="'w' is declared twice"):
        build_plan(layers, [WarehouseSpec('w'), WarehouseSpec('w')])
    with pytest.raises(ValueError, match="'conv' is declared twice"):
        build_plan(layers * 2, [WarehouseSpec('w')])
    with pytest.raises(ValueError, match="'empty' has no layers"):
        build_plan(layers, [WarehouseSpec('w'), WarehouseSpec('empty')])


@pytest.mark.parametrize('kwargs, bad', [
    (dict(in_channels=0), 'in_channels'),
    (dict(kernel_size=(3, 0)), 'kernel_size'),
    (dict(in_channels=6, groups=4), 'groups'),
])
def test_bad_layer_spec(kwargs, bad):
    args = dict(
        name='x',
        warehouse='w',
        in_channels=8,
        out_channels=8,
        kernel_size=(3, 3))
    args.update(kwargs)
    with pytest.raises(ValueError, match=bad):
        LayerSpec(**args)


def test_lookup():
    plan = _two_layers()
    assert plan.layer('b').start == plan.layers[0].num_cells
    assert plan.warehouse('w').num_params == math.prod(
        plan.warehouses[0].shape)
    with pytest.raises(KeyError, match='missing'):
        plan.layer('missing')
    with pytest.raises(KeyError, match='missing'):
        plan.warehouse('missing')
