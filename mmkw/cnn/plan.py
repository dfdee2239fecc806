"""The warehouse plan: how KernelWarehouse layers share and split kernels.

A plan is pure data. It is computed from the shapes of the layers that share
each warehouse and the parameter budget, following the conventions of the
official KernelWarehouse code (Li & Yao, ICML 2024):

* the cell of a warehouse is ``[c_o, c_i, 1, ...]`` with ``c_o``/``c_i`` the
  greatest common divisor of its layers' output/input channels (times the
  cell ratio, 0.5 for the ``b < 1`` models);
* a layer is cut into ``m = G_s * G_o * G_i`` cells ("linear mixtures");
* a warehouse stores ``n = max(int(m_t * b), 1)`` cells, ``m_t`` being the
  mixtures of all its layers;
* the initial assignment ``beta`` hands warehouse cells to mixtures in layer
  order (``int(b)`` cells per mixture for ``b >= 1``, one cell every
  ``int(1 / b)`` mixtures otherwise, the zero cell in between).

The plan never touches tensors, so it can be built, printed and tested for a
whole network without allocating a single weight.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

__all__ = [
    'ZERO_CELL', 'LayerSpec', 'WarehouseSpec', 'LayerPlan', 'WarehousePlan',
    'NetworkPlan', 'build_plan', 'default_cell_ratio', 'format_budget',
    'MAX_WAREHOUSE_PARAMS', 'check_positive'
]

#: Marker of the zero cell in a ``beta`` list (it is never stored).
ZERO_CELL = 'z'
#: Most warehouse parameters a plan may hold (8 GB in float32): twenty times
#: the largest model of the paper (ResNet50 KW 4x, 100M), far below what an
#: absurd budget asks (``budget=1e4`` on ResNet18: 1.1e11).
MAX_WAREHOUSE_PARAMS = 2_000_000_000


def check_positive(name: str, value) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f'{name} must be a positive number, got {value!r}')


def default_cell_ratio(budget: float) -> float:
    """The official cell ratio: whole gcd cells for ``b >= 1``, half below."""
    return 1.0 if budget >= 1 else 0.5


def format_budget(budget: float) -> str:
    """Budget as the official model names write it (``1d2x``, ``4x`` ...)."""
    if budget >= 1 and float(budget).is_integer():
        return f'{int(budget)}x'
    inv = 1 / budget
    if float(inv).is_integer():
        return f'1d{int(inv)}x'
    return f'{budget:g}x'


@dataclass(frozen=True)
class LayerSpec:
    """What a KernelWarehouse layer declares about itself.

    Args:
        name (str): Module path of the layer (used in tables and errors).
        warehouse (str): Name of the warehouse it draws its cells from.
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (tuple[int]): Kernel size, one entry per spatial dim
            (``(1,)`` for a linear layer).
        groups (int): Convolution groups. Defaults to 1.
    """
    name: str
    warehouse: str
    in_channels: int
    out_channels: int
    kernel_size: Tuple[int, ...]
    groups: int = 1

    def __post_init__(self):
        for key in ('in_channels', 'out_channels', 'groups'):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f'{self.name}: {key} must be a positive '
                                 f'int, got {value!r}')
        if not self.kernel_size or any(not isinstance(k, int) or k <= 0
                                       for k in self.kernel_size):
            raise ValueError(f'{self.name}: kernel_size must be positive '
                             f'ints, got {self.kernel_size!r}')
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f'{self.name}: in_channels ({self.in_channels}) and '
                f'out_channels ({self.out_channels}) must be divisible by '
                f'groups ({self.groups})')

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        """Shape of the equivalent static kernel."""
        return (self.out_channels, self.in_channels // self.groups,
                *self.kernel_size)


@dataclass(frozen=True)
class WarehouseSpec:
    """Settings of one warehouse.

    Args:
        name (str): Warehouse name, unique in the network.
        budget (float): Parameter budget ``b = n / m_t`` (> 0).
        cell_ratio (float | tuple[float, float], optional): Cell channels as
            a fraction of the greatest common divisor of the layers'
            channels, one value or ``(out_ratio, in_ratio)``. ``None`` picks
            the official value, 1 for ``b >= 1`` and 0.5 below.
    """
    name: str
    budget: float = 1.0
    cell_ratio: Optional[Union[float, Tuple[float, float]]] = None

    def __post_init__(self):
        check_positive(f'budget of warehouse {self.name!r}', self.budget)
        if self.cell_ratio is not None:
            ratios = self.cell_ratio if isinstance(
                self.cell_ratio, (tuple, list)) else (self.cell_ratio, )
            if len(ratios) not in (1, 2):
                raise ValueError(
                    f'cell_ratio of warehouse {self.name!r} must be a number '
                    f'or (out_ratio, in_ratio), got {self.cell_ratio!r}')
            for ratio in ratios:
                check_positive(f'cell_ratio of warehouse {self.name!r}', ratio)
                if ratio > 1:
                    raise ValueError(
                        f'cell_ratio of warehouse {self.name!r} must be in '
                        f'(0, 1], got {self.cell_ratio!r}')

    @property
    def cell_ratios(self) -> Tuple[float, float]:
        """``(out_ratio, in_ratio)`` of the cell."""
        if self.cell_ratio is None:
            ratio = default_cell_ratio(self.budget)
            return ratio, ratio
        if isinstance(self.cell_ratio, (tuple, list)):
            return tuple(self.cell_ratio) * (3 - len(self.cell_ratio))
        return self.cell_ratio, self.cell_ratio


@dataclass
class LayerPlan:
    """A layer's place in its warehouse.

    Attributes:
        spec (LayerSpec): What the layer declared.
        warehouse_index (int): Index of its warehouse in the plan.
        split (tuple[int, int, int]): ``(G_s, G_o, G_i)``: spatial, output
            and input groups. Mixture ``j = s * G_o * G_i + o * G_i + i``.
        start (int): First warehouse cell handed to this layer.
        beta (list): For each mixture, its initial warehouse cell or
            :data:`ZERO_CELL`.
        num_cells (int): Number of warehouse cells the layer owns
            (``start ... start + num_cells``).
    """
    spec: LayerSpec
    warehouse_index: int
    split: Tuple[int, int, int]
    start: int
    beta: List
    num_cells: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_mixtures(self) -> int:
        return self.split[0] * self.split[1] * self.split[2]


@dataclass
class WarehousePlan:
    """A resolved warehouse.

    Attributes:
        spec (WarehouseSpec): Its settings.
        index (int): Position in the plan (= official warehouse index).
        cell_shape (tuple[int]): ``(c_o, c_i, 1, ...)``.
        num_cells (int): ``n``, cells stored.
        num_mixtures (int): ``m_t``, mixtures of all its layers.
        layers (list[LayerPlan]): Its layers, in network order.
    """
    spec: WarehouseSpec
    index: int
    cell_shape: Tuple[int, ...]
    num_cells: int
    num_mixtures: int
    layers: List[LayerPlan] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def shape(self) -> Tuple[int, ...]:
        """Shape of the warehouse parameter ``[n, c_o, c_i, 1, ...]``."""
        return (self.num_cells, *self.cell_shape)

    @property
    def num_params(self) -> int:
        return math.prod(self.shape)

    @property
    def num_assigned(self) -> int:
        return sum(layer.num_cells for layer in self.layers)


class NetworkPlan:
    """All warehouses of a network and the layers drawing from them.

    Build it with :func:`build_plan`. ``print(plan)`` shows the paper's
    Table 14 view (warehouse, cell shape, layers, m_t, n, parameters).
    """

    def __init__(self, warehouses: List[WarehousePlan],
                 layers: List[LayerPlan]):
        self.warehouses = warehouses
        self.layers = layers  # network (registration) order

    def warehouse(self, name: str) -> WarehousePlan:
        for wh in self.warehouses:
            if wh.name == name:
                return wh
        raise KeyError(f'no warehouse named {name!r}; the plan has '
                       f'{[wh.name for wh in self.warehouses]}')

    def layer(self, name: str) -> LayerPlan:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f'no KW layer named {name!r} in the plan')

    @property
    def num_warehouse_params(self) -> int:
        return sum(wh.num_params for wh in self.warehouses)

    def table(self) -> str:
        """The plan as a text table, one row per warehouse."""
        header = ('warehouse', 'budget', 'cell shape', 'layers', 'm_t', 'n',
                  'params')
        rows = [header]
        for wh in self.warehouses:
            rows.append((wh.name, format_budget(wh.spec.budget),
                         'x'.join(str(s) for s in wh.cell_shape),
                         str(len(wh.layers)), str(wh.num_mixtures),
                         str(wh.num_cells), f'{wh.num_params:,}'))
        rows.append(('total', '', '', str(len(self.layers)),
                     str(sum(wh.num_mixtures for wh in self.warehouses)),
                     str(sum(wh.num_cells for wh in self.warehouses)),
                     f'{self.num_warehouse_params:,}'))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = []
        for i, row in enumerate(rows):
            cells = [
                row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(
                    widths[2])
            ] + [c.rjust(w) for c, w in zip(row[3:], widths[3:])]
            lines.append('  '.join(cells).rstrip())
            if i == 0 or i == len(rows) - 2:
                lines.append('  '.join('-' * w for w in widths))
        return '\n'.join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return (f'NetworkPlan({len(self.warehouses)} warehouses, '
                f'{len(self.layers)} layers, '
                f'{self.num_warehouse_params:,} warehouse parameters)')


def _assign_cells(num_mixtures: int, budget: float,
                  start: int) -> Tuple[List, int]:
    """Initial assignment of one layer (kernelwarehouse.md section 2.3)."""
    beta: List = []
    if budget >= 1:
        step = int(budget)
        beta = [start + j * step for j in range(num_mixtures)]
        return beta, num_mixtures * step
    period = int(1 / budget)
    cell = start
    for j in range(num_mixtures):
        if j % period == (j // period) % period:
            beta.append(cell)
            cell += 1
        else:
            beta.append(ZERO_CELL)
    return beta, cell - start


def build_plan(layers: Sequence[LayerSpec],
               warehouses: Sequence[WarehouseSpec]) -> NetworkPlan:
    """Resolve cell shapes, mixtures, sizes and initial assignments.

    Args:
        layers (Sequence[LayerSpec]): Every KW layer in module registration
            order (cells are handed out in this order).
        warehouses (Sequence[WarehouseSpec]): Every warehouse, in the order
            their parameters are created (the official warehouse index).

    Returns:
        NetworkPlan: The resolved plan.
    """
    specs = {}
    for wh in warehouses:
        if wh.name in specs:
            raise ValueError(f'warehouse {wh.name!r} is declared twice')
        specs[wh.name] = wh
    members: Dict[str, List[LayerSpec]] = {name: [] for name in specs}
    seen = set()
    for layer in layers:
        if layer.name in seen:
            raise ValueError(f'KW layer {layer.name!r} is declared twice')
        seen.add(layer.name)
        if layer.warehouse not in specs:
            raise ValueError(
                f'layer {layer.name!r} draws from warehouse '
                f'{layer.warehouse!r}, which is not declared; declared: '
                f'{list(specs)}')
        members[layer.warehouse].append(layer)

    plans = []
    for index, (name, spec) in enumerate(specs.items()):
        group = members[name]
        if not group:
            raise ValueError(f'warehouse {name!r} has no layers')
        dims = {len(layer.kernel_size) for layer in group}
        if len(dims) != 1:
            raise ValueError(
                f'warehouse {name!r} mixes layers of different kernel '
                f'dimensions: ' + ', '.join(f'{layer.name} {layer.kernel_size}'
                                            for layer in group))
        gcd_out = math.gcd(*(layer.out_channels for layer in group))
        gcd_in = math.gcd(*(layer.in_channels // layer.groups
                            for layer in group))
        ratio_out, ratio_in = spec.cell_ratios
        c_o = max(int(gcd_out * ratio_out), 1)
        c_i = max(int(gcd_in * ratio_in), 1)
        cell_shape = (c_o, c_i) + (1, ) * dims.pop()
        wh_plan = WarehousePlan(spec, index, cell_shape, 0, 0)
        for layer in group:
            out_per_group = layer.out_channels
            in_per_group = layer.in_channels // layer.groups
            if out_per_group % c_o or in_per_group % c_i:
                raise ValueError(
                    f'layer {layer.name!r} ({layer.in_channels}->'
                    f'{layer.out_channels}, groups={layer.groups}) cannot be '
                    f'split into cells of {c_o}x{c_i} channels of warehouse '
                    f'{name!r} (cell_ratio={spec.cell_ratios}); out channels '
                    f'and in channels per group must be multiples of the cell')
            split = (math.prod(layer.kernel_size), out_per_group // c_o,
                     in_per_group // c_i)
            wh_plan.layers.append(LayerPlan(layer, index, split, 0, [], 0))
        wh_plan.num_mixtures = sum(lp.num_mixtures for lp in wh_plan.layers)
        wh_plan.num_cells = max(int(wh_plan.num_mixtures * spec.budget), 1)
        plans.append(wh_plan)
    total = sum(wh.num_params for wh in plans)
    if total > MAX_WAREHOUSE_PARAMS:
        raise ValueError(
            'the budgets (' + ', '.join(f'{wh.name}: {wh.spec.budget!r}'
                                        for wh in plans) +
            f') would need {total:,} warehouse parameters ({total * 4e-9:.1f}'
            f' GB in float32), more than the {MAX_WAREHOUSE_PARAMS:,} mmkw '
            f'allows; the paper uses budgets from 1/4 to 4')

    # Hand out cells in network order, one running counter per warehouse.
    counters = [0] * len(plans)
    by_name = {lp.name: lp for wh in plans for lp in wh.layers}
    for layer in layers:
        lp = by_name[layer.name]
        wh = plans[lp.warehouse_index]
        lp.start = counters[lp.warehouse_index]
        lp.beta, lp.num_cells = _assign_cells(lp.num_mixtures, wh.spec.budget,
                                              lp.start)
        counters[lp.warehouse_index] += lp.num_cells
    for wh, used in zip(plans, counters):
        if used > wh.num_cells:
            raise ValueError(
                f'budget {wh.spec.budget!r} of warehouse {wh.name!r} gives '
                f'n={wh.num_cells} cells but the initial assignment needs '
                f'{used} (m_t={wh.num_mixtures}); use a budget whose int(b) '
                f'or int(1/b) matches it, e.g. 1/4, 1/2, 1, 2 or 4')

    return NetworkPlan(plans, [by_name[layer.name] for layer in layers])
