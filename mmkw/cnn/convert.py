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
"""
import fnmatch
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .layers import KWConvNd
from .layout import KWLayout, apply_layout
from .manager import WarehouseManager
from .plan import NetworkPlan

__all__ = ['RULES', 'convertible_convs', 'kw_layout_by_rule', 'convert_to_kw']

#: The named rules of :func:`convert_to_kw` (a dict is the third form).
RULES = ('stage', 'per_layer')

_Rule = Union[str, Mapping[str, str]]


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


def _area(size: Tuple[int, ...]) -> int:
    area = 1
    for side in size:
        area *= side
    return area


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
            name pattern (``{'stage3*': 2.0}``), first match wins; None or
            a number leaves every warehouse at the manager's budget.

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
            stage_size[name] = size_in if _area(size_out) < _area(size_in) \
                else size_out
        # Stages numbered from 0 in the order of falling resolution.
        sizes = sorted(set(stage_size.values()), key=_area, reverse=True)
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
        wh_budget = None
        if isinstance(budget, Mapping):
            wh_budget = next((b for pattern, b in budget.items()
                              if fnmatch.fnmatch(warehouse, pattern)), None)
        layout.warehouse(warehouse, wh_budget)
        layout.assign(name, warehouse)
    stays_plain = [n for n in convs if n not in layout.layers]
    if not layout.layers:
        raise ValueError(f'rule {rule!r} makes no conv of '
                         f'{type(network).__name__} KernelWarehouse')
    return layout, stays_plain


def convert_to_kw(network: nn.Module,
                  budget: Union[float, Mapping[str, float]] = 1.0,
                  rule: _Rule = 'stage',
                  plain: Optional[Sequence[str]] = None,
                  input_shape: Sequence[int] = (3, 224, 224),
                  attention_init: bool = True,
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
            warehouse name patterns to budgets (``'default'`` or ``'*'`` for
            the rest). Defaults to 1.
        rule (str | dict): ``'stage'``, ``'per_layer'`` or a dict of module
            path patterns to warehouse names. Defaults to ``'stage'``.
        plain (Sequence[str], optional): Module path patterns of convs that
            stay plain; None keeps the stem plain.
        input_shape (Sequence[int]): ``(C, H, W)`` of the dummy input of
            the ``'stage'`` rule. Defaults to (3, 224, 224).
        attention_init (bool): Start at temperature 1 with the initial
            assignment (training from scratch, with
            ``KWTemperatureHook``); False pins it to 0. Defaults to True.
        **manager_kwargs: ``cell_ratio``, ``reduction``,
            ``nonlocal_basis_ratio``, ``norm_layer`` of
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
    default = budget
    if isinstance(budget, Mapping):
        default = budget.get('default', budget.get('*', 1.0))
    layout, _ = kw_layout_by_rule(network, rule, plain, input_shape, budget)
    network.add_module('warehouse_manager',
                       WarehouseManager(budget=default, **manager_kwargs))
    try:
        return apply_layout(network, layout, attention_init=attention_init)
    except Exception:
        del network.warehouse_manager  # the network stays as it was
        raise
