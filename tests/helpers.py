"""Shared test helpers: repository paths, golden data and config names,
thread control. (Fixtures live in ``conftest.py``, which is not imported.)

Tests read golden data only from ``tests/data/golden`` (a copy of the
project's golden files), never from outside the repository.
"""
import contextlib
import importlib.util
import json
from pathlib import Path
from typing import Iterator

import torch

__all__ = [
    'REPO_ROOT', 'CONFIG_DIR', 'GOLDEN_DIR', 'golden_names', 'load_golden',
    'load_golden_plan', 'golden_plan_names', 'fill_state_dict',
    'golden_config_name', 'assert_plan_matches_golden', 'load_script',
    'num_threads'
]

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / 'configs'
GOLDEN_DIR = REPO_ROOT / 'tests' / 'data' / 'golden'


def golden_names():
    """Names of the golden equivalence files present (``resnet18_kw1x``
    ...), sorted."""
    return sorted(p.stem for p in (GOLDEN_DIR / 'equivalence').glob('*.pt'))


def load_golden(name: str) -> dict:
    """A golden equivalence file: ``keys``, ``overrides``, ``input``,
    ``outputs``, ``reference_config`` (see ``golden/README.md``).

    Args:
        name (str): Golden name, e.g. ``'resnet18_kw1x'``.
    """
    return torch.load(
        GOLDEN_DIR / 'equivalence' / f'{name}.pt',
        map_location='cpu',
        weights_only=True)


def golden_plan_names(prefix: str = ''):
    """Names of the golden plans starting with ``prefix``, sorted."""
    return sorted(
        p.stem for p in (GOLDEN_DIR / 'plans').glob('*.json')
        if p.stem.startswith(prefix))


def load_golden_plan(name: str) -> dict:
    """The golden plan ``plans/NAME.json`` of an official model."""
    with open(GOLDEN_DIR / 'plans' / f'{name}.json') as f:
        return json.load(f)


_FILL = None


def _fill_module():
    global _FILL
    if _FILL is None:
        _FILL = load_script(GOLDEN_DIR / 'fill.py', 'golden_fill')
    return _FILL


def fill_state_dict(keys) -> dict:
    """Regenerate an official state dict from ``[[key, shape], ...]``."""
    return _fill_module().fill_state_dict(keys)


# Golden name prefix -> (config name before the budget, config suffix).
_CONFIG_FAMILIES = {
    'resnet18': ('resnet18', '8xb32_in1k'),
    'resnet50': ('resnet50', '8xb32_in1k'),
    'mobilenetv2_100': ('mobilenet-v2', '8xb32_in1k'),
    'mobilenetv2_050': ('mobilenet-v2-050', '8xb32_in1k'),
    'convnext_tiny': ('convnext-tiny', '32xb128_in1k'),
}


def golden_config_name(name: str) -> str:
    """The mmkw config of a golden model, as an absolute path.

    ``resnet18_kw1x`` -> ``configs/kw1x-resnet18_8xb32_in1k.py``,
    ``mobilenetv2_050_kw1d2x`` ->
    ``configs/kw1d2x-mobilenet-v2-050_8xb32_in1k.py``,
    ``convnext_tiny_kw1x`` -> ``configs/kw1x-convnext-tiny_32xb128_in1k.py``.

    Args:
        name (str): Golden name ``<arch>_kw<budget>``.

    Returns:
        str: Path of the config file.
    """
    arch, sep, budget = name.rpartition('_kw')
    if not sep or arch not in _CONFIG_FAMILIES:
        raise KeyError(f'unknown golden model {name!r}; known architectures: '
                       f'{sorted(_CONFIG_FAMILIES)}')
    config, suffix = _CONFIG_FAMILIES[arch]
    return str(CONFIG_DIR / f'kw{budget}-{config}_{suffix}.py')


def assert_plan_matches_golden(plan, golden: dict) -> None:
    """Assert a :class:`~mmkw.cnn.NetworkPlan` equals a golden plan:
    every warehouse (index, cell shape, n, m_t) and every KW layer (path,
    warehouse, split, m, beta), in order.

    Args:
        plan (NetworkPlan): The plan to check.
        golden (dict): A golden plan from :func:`load_golden_plan`.
    """
    assert [(wh.index, list(wh.cell_shape), wh.num_cells, wh.num_mixtures)
            for wh in plan.warehouses] == [(ref['index'], ref['cell_shape'],
                                            ref['n'], ref['m_total'])
                                           for ref in golden['warehouses']]
    assert [lp.name for lp in plan.layers
            ] == [ref['path'] for ref in golden['kw_layers']]
    for lp, ref in zip(plan.layers, golden['kw_layers']):
        split = ref['split']
        assert lp.split == (split['spatial'], split['out'], split['inp']), \
            lp.name
        assert lp.num_mixtures == ref['m'], lp.name
        assert lp.warehouse_index == ref['warehouse'], lp.name
        assert lp.beta == ref['beta'], lp.name


def load_script(path: Path, name: str):
    """Import a script (not a package module) as a module named ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def num_threads(count: int) -> Iterator[None]:
    """Run a block with ``count`` intra-op threads, then restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
