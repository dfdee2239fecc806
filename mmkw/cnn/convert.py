"""Make any network KernelWarehouse: group its convs into warehouses by a
rule, then apply the resulting :class:`~mmkw.cnn.KWLayout`.

Rules:

- ``'stage'`` (default), the paper's principle: the convs of one stage (one
  output resolution) share a warehouse, and a conv that lowers the
  resolution (the first layer of a stage) joins the previous stage, as the
  official ResNet layout hands ``conv1`` and the downsample conv of a
  stage's first block to the previous stage's warehouse. Depthwise convs
  (``stage{i}_dw``) and other grouped convs (``stage{i}_grouped``) get a
  warehouse of their own per stage, as the depthwise convs do in the
  official MobileNetV2 and ConvNeXt layouts: sharing cells with dense convs
  would shrink those cells to the group width. The resolutions come from
  one forward pass of a dummy input.
- ``'per_layer'``: every conv has a warehouse of its own.
- a dict ``{module path pattern: warehouse name}`` (``fnmatch`` patterns,
  first match wins): explicit groups; convs no pattern matches stay plain.

A ``budget`` is one number for every warehouse or a dict of per-warehouse
budgets (:func:`apply_budget`), the same for these rules and for every mmkw
model.
"""
import fnmatch
import math
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .layers import KWConvNd
from .layout import KWLayout, apply_layout
from .manager import WarehouseManager
from .plan import NetworkPlan, check_positive

__all__ = [
    'RULES', 'convertible_convs', 'kw_layout_by_rule', 'convert_to_kw',
    'check_budget', 'default_budget', 'apply_budget'
]

#: The named rules of :func:`convert_to_kw` (a dict is the third form).
RULES = ('stage', 'per_layer')

_Rule = Union[str, Mapping[str, str]]
_Budget = Union[float, Mapping[str, Union[float, Sequence[float]]]]
#: Keys of a budget dict that give the budget of every other warehouse.
_DEFAULT_KEYS = ('default', '*')
#: ``group name -> (unit, members)``: a family's named sets of warehouses,
#: each member a list of warehouse names (e.g. ConvNeXt's ``'pointwise'``,
#: one member per stage).
_Groups = Mapping[str, Tuple[str, Sequence[Sequence[str]]]]


def check_budget(budget: _Budget) -> _Budget:
    """Validate a ``budget`` argument, before any warehouse exists.

    Args:
        budget (float | dict): A positive number, or a dict of them by key
            (see :func:`apply_budget`); a key other than ``'default'`` may
            give a sequence of positive numbers, one per member of a
            warehouse group.

    Returns:
        float | dict: ``budget`` (a dict as a plain ``dict``).

    Raises:
        ValueError: Naming the key and the value that is not a positive
            number.
    """
    if not isinstance(budget, Mapping):
        if isinstance(budget, (list, tuple)):
            raise ValueError(f'budget must be a positive number or a dict '
                             f'of them by warehouse, got {budget!r}')
        check_positive('budget', budget)
        return budget
    for key, value in budget.items():
        if not isinstance(key, str):
            raise ValueError(f'budget keys must be warehouse names, got '
                             f'{key!r}')
        values = value if isinstance(value, (list, tuple)) and \
            key not in _DEFAULT_KEYS else (value, )
        if not values:
            raise ValueError(f'budget[{key!r}] must be a positive number, '
                             f'got {value!r}')
        for one in values:
            check_positive(f'budget[{key!r}]', one)
    return dict(budget)


def default_budget(budget: _Budget) -> float:
    """The budget of every warehouse ``budget`` does not name: the number
    itself, or a dict's ``'default'`` (or ``'*'``), 1 if absent."""
    budget = check_budget(budget)
    if not isinstance(budget, Mapping):
        return budget
    return budget.get('default', budget.get('*', 1.0))


def apply_budget(layout: KWLayout,
                 budget: _Budget,
                 groups: Optional[_Groups] = None) -> KWLayout:
    """The layout with the per-warehouse budgets of a budget dict.

    A number leaves ``layout`` as it is (its warehouses without a budget of
    their own take the manager's, that number). A dict gives, per
    warehouse, the first of: its own name (``'stage3'``); a group holding it
    (``groups``, e.g. KWConvNeXt's ``'pointwise'``; the value is a number or
    one per member of the group); the first ``fnmatch`` pattern matching it,
    in dict order (``'stage3*'``, ``'*'``); else the layout's own budget, or
    ``'default'`` (1 if absent), the manager's. Every key must name
    something: a key that is no warehouse, no group and no pattern matching
    a warehouse raises a ``ValueError`` listing the allowed names.

    Args:
        layout (KWLayout): The layout (left unchanged).
        budget (float | dict): The budget argument.
        groups (dict, optional): ``name -> (unit, members)``, each member a
            list of warehouse names; ``unit`` names a member in errors
            (``'stage'``).

    Returns:
        KWLayout: A new layout with the budgets set.
    """
    budget = check_budget(budget)
    if not isinstance(budget, Mapping):
        return layout
    groups = dict(groups or {})
    names = list(layout.warehouses)
    own: Dict[str, float] = {}
    by_group: Dict[str, float] = {}
    patterns: List[Tuple[str, float]] = []
    for key, value in budget.items():
        if key == 'default':
            continue
        sequence = isinstance(value, (list, tuple))
        if key in groups:
            unit, members = groups[key]
            values = value if sequence else [value] * len(members)
            if len(values) != len(members):
                raise ValueError(
                    f'budget[{key!r}] must be a number or {len(members)} '
                    f'numbers (one per {unit}), got {value!r}')
            for member, one in zip(members, values):
                for name in member:
                    by_group.setdefault(name, float(one))
            continue
        matches = key in layout.warehouses or any(
            fnmatch.fnmatchcase(name, key) for name in names)
        if not matches:
            allowed = f'warehouses {names}'
            if groups:
                allowed += f', groups {list(groups)}'
            raise ValueError(
                f'budget keys must be \'default\', a warehouse name'
                f'{", a warehouse group" if groups else ""} or a pattern '
                f'matching warehouse names; {key!r} is none of them '
                f'({allowed})')
        if sequence:
            raise ValueError(f'budget[{key!r}] must be a number ({key!r} is '
                             f'not a warehouse group), got {value!r}')
        if key in layout.warehouses:
            own[key] = float(value)
        else:
            patterns.append((key, float(value)))
    warehouses = OrderedDict()
    for name, (wh_budget, cell_ratio) in layout.warehouses.items():
        chosen = own.get(name, by_group.get(name))
        if chosen is None:
            chosen = next((value for pattern, value in patterns
                           if fnmatch.fnmatchcase(name, pattern)), wh_budget)
        warehouses[name] = (chosen, cell_ratio)
    return KWLayout(warehouses, OrderedDict(layout.layers))


def convertible_convs(network: nn.Module) -> 'OrderedDict[str, nn.Module]':
    """The ``nn.Conv1d``/``nn.Conv2d`` layers a KW layer can replace (zero
    padding given as numbers, not transposed), by module path, in
    registration order."""
    convs = OrderedDict()
    for name, m in network.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and not isinstance(
                m, KWConvNd) and not m.transposed and \
                m.padding_mode == 'zeros' and not isinstance(m.padding, str):
            convs[name] = m
    return convs


def _resolutions(
    network: nn.Module, convs: Mapping[str,
                                       nn.Module], input_shape: Sequence[int]
) -> Dict[str, Tuple[int, Tuple[int, ...], Tuple[int, ...]]]:
    """``path -> (call order, input spatial size, output spatial size)`` of
    every conv a forward pass of a zero image ``[1, *input_shape]``
    reaches."""
    seen: Dict[str, tuple] = {}

    def record(name):

        def hook(module, args, output):
            if name not in seen:
                seen[name] = (len(seen), tuple(args[0].shape[2:]),
                              tuple(output.shape[2:]))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in convs.items()]
    was_training = network.training
    try:
        network.eval()
        param = next(network.parameters(), None)
        x = torch.zeros(
            1, *input_shape, device=None if param is None else param.device)
        with torch.no_grad():
            network(x)
    finally:
        network.train(was_training)
        for handle in handles:
            handle.remove()
    return seen


def _kind(conv: nn.Module) -> str:
    """Warehouse suffix: depthwise and other grouped convs keep apart from
    dense ones, whose cells they would shrink to their group width."""
    if conv.groups == 1:
        return ''
    return '_dw' if conv.groups == conv.in_channels else '_grouped'


def kw_layout_by_rule(
    network: nn.Module,
    rule: _Rule = 'stage',
    plain: Optional[Sequence[str]] = None,
    input_shape: Sequence[int] = (3, 224, 224),
    budget: Optional[Union[float, Mapping[str, float]]] = None
) -> Tuple[KWLayout, List[str]]:
    """The layout that ``rule`` gives ``network`` (nothing is changed).

    Args:
        network (nn.Module): Any network with ``nn.Conv1d``/``nn.Conv2d``
            layers.
        rule (str | dict): ``'stage'``, ``'per_layer'`` or a dict of module
            path patterns to warehouse names (see the module doc).
        plain (Sequence[str], optional): Module path patterns of convs that
            stay plain. None keeps the first conv the input meets (the stem)
            plain, as every official layout does.
        input_shape (Sequence[int]): ``(C, H, W)`` of the dummy input of
            the ``'stage'`` rule (and of the stem search). Defaults to
            (3, 224, 224).
        budget (float | dict, optional): Per-warehouse budgets by warehouse
            name or pattern (``{'stage3*': 2.0}``), see
            :func:`apply_budget`; None or a number leaves every warehouse
            at the manager's budget.

    Returns:
        tuple[KWLayout, list[str]]: The layout, and the convs that stay
        plain (listed or never reached by the dummy input).
    """
    convs = convertible_convs(network)
    if not convs:
        raise ValueError(f'{type(network).__name__} has no nn.Conv1d/Conv2d '
                         f'layer to make KernelWarehouse')
    if not (isinstance(rule, Mapping) or rule in RULES):
        raise ValueError(f'rule must be one of {RULES} or a dict of module '
                         f'path patterns to warehouse names, got {rule!r}')
    needs_forward = plain is None or rule == 'stage'
    calls = _resolutions(network, convs, input_shape) if needs_forward \
        else {}
    if plain is None:
        plain = [min(calls, key=lambda n: calls[n][0])] if calls else []
    kept = [n for n in convs if any(fnmatch.fnmatch(n, p) for p in plain)]

    assignments: Dict[str, Optional[str]] = OrderedDict()
    if rule == 'stage':
        stage_size = {}
        for name, conv in convs.items():
            if name not in calls or name in kept or len(conv.kernel_size) != 2:
                continue
            _, size_in, size_out = calls[name]
            # A conv that lowers the resolution joins the previous stage.
            lowers = math.prod(size_out) < math.prod(size_in)
            stage_size[name] = size_in if lowers else size_out
        # Stages numbered from 0 in the order of falling resolution.
        sizes = sorted(set(stage_size.values()), key=math.prod, reverse=True)
        for name, size in stage_size.items():
            assignments[name] = f'stage{sizes.index(size)}' + _kind(
                convs[name])
    elif rule == 'per_layer':
        for name in convs:
            assignments[name] = 'w_' + name.replace('.', '_')
    else:
        for name in convs:
            match = next((wh for pattern, wh in rule.items()
                          if fnmatch.fnmatch(name, pattern)), None)
            if match is not None:
                assignments[name] = match

    layout = KWLayout()
    for name, warehouse in assignments.items():
        if name in kept:
            continue
        layout.warehouse(warehouse)
        layout.assign(name, warehouse)
    stays_plain = [n for n in convs if n not in layout.layers]
    if not layout.layers:
        raise ValueError(f'rule {rule!r} makes no conv of '
                         f'{type(network).__name__} KernelWarehouse')
    if budget is not None:
        layout = apply_budget(layout, budget)
    return layout, stays_plain


def convert_to_kw(network: nn.Module,
                  budget: Union[float, Mapping[str, float]] = 1.0,
                  rule: _Rule = 'stage',
                  plain: Optional[Sequence[str]] = None,
                  input_shape: Sequence[int] = (3, 224, 224),
                  attention_init: bool = True,
                  manager: Optional[WarehouseManager] = None,
                  **manager_kwargs) -> NetworkPlan:
    """Turn the convs of ``network`` into KW convs, in place.

    Every other module, name and output shape stays the same; the warehouses
    live in a new ``network.warehouse_manager``. Convs are grouped into
    warehouses by ``rule`` (see the module doc); warehouses are declared in
    the order of their first layer.

    Args:
        network (nn.Module): Any network (an MM backbone, a torchvision
            model ...); it must not have a ``warehouse_manager`` yet.
        budget (float | dict): The budget of every warehouse, or a dict of
            budgets by warehouse name or pattern (``'default'`` for the
            rest), see :func:`apply_budget`. Defaults to 1.
        rule (str | dict): ``'stage'``, ``'per_layer'`` or a dict of module
            path patterns to warehouse names. Defaults to ``'stage'``.
        plain (Sequence[str], optional): Module path patterns of convs that
            stay plain; None keeps the stem plain.
        input_shape (Sequence[int]): ``(C, H, W)`` of the dummy input of
            the ``'stage'`` rule. Defaults to (3, 224, 224).
        attention_init (bool): Start at temperature 1 with the initial
            assignment (training from scratch, with
            ``KWTemperatureHook``); False pins it to 0. Defaults to True.
        manager (WarehouseManager, optional): The (unbound) manager to
            use, its budget that of the warehouses ``budget`` does not
            name; one is built from ``manager_kwargs`` if None.
        **manager_kwargs: ``cell_ratio``, ``reduction``,
            ``nonlocal_basis_ratio``, ``norm_layer``, ``attention_type`` of
            :class:`~mmkw.cnn.WarehouseManager`.

    Returns:
        NetworkPlan: The plan (``network.warehouse_manager.plan``); its
        ``table()`` prints it.

    Example:
        >>> import torchvision
        >>> from mmkw import convert_to_kw
        >>> net = torchvision.models.resnet18()
        >>> plan = convert_to_kw(net, budget=1.0)
        >>> [wh.name for wh in plan.warehouses]
        ['stage0', 'stage1', 'stage2', 'stage3']
    """
    if 'warehouse_manager' in dict(network.named_children()):
        raise ValueError(f'{type(network).__name__} already has a '
                         f'warehouse_manager: it is KernelWarehouse already')
    if manager is not None and manager_kwargs:
        raise TypeError(f'convert_to_kw takes a manager or the arguments of '
                        f'one, not both: got {sorted(manager_kwargs)}')
    layout, _ = kw_layout_by_rule(network, rule, plain, input_shape, budget)
    if manager is None:
        manager = WarehouseManager(
            budget=default_budget(budget), **manager_kwargs)
    network.add_module('warehouse_manager', manager)
    try:
        return apply_layout(network, layout, attention_init=attention_init)
    except Exception:
        del network.warehouse_manager  # the network stays as it was
        raise
