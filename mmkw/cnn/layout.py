"""A KW layout: which layers of a network draw from which warehouse, as data.

A KW network is its plain counterpart, built unchanged, plus a
:class:`KWLayout`: the warehouses (in index order, each with its budget and
cell ratio) and, per layer (by module path), the warehouse it draws from or
``None`` for "stays plain". :func:`apply_layout` swaps the layers for KW (or
plain) layers of the same geometry in place, so every other module, name and
state-dict key stays the plain network's, then binds the warehouses.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

import torch.nn as nn

from .attention import KWAttention
from .layers import KWConv1d, KWConv2d, KWConvNd, KWLinear
from .manager import WarehouseManager
from .plan import NetworkPlan

__all__ = [
    'KWLayout', 'kw_layer_like', 'plain_layer_like', 'apply_layout',
    'reset_kw_attentions'
]


@dataclass
class KWLayout:
    """Warehouses and the layers that draw from them.

    Args:
        warehouses (dict): ``name -> (budget, cell_ratio)`` in declaration
            (index) order; ``None`` entries take the manager's defaults.
        layers (dict): ``module path -> warehouse name``, or ``None`` for a
            layer that stays (or becomes) a plain conv.
    """
    warehouses: Dict[str, Tuple[Optional[float], Optional[float]]] = field(
        default_factory=OrderedDict)
    layers: Dict[str, Optional[str]] = field(default_factory=OrderedDict)

    def warehouse(self,
                  name: str,
                  budget: Optional[float] = None,
                  cell_ratio: Optional[float] = None) -> str:
        """Declare warehouse ``name`` (once) and return it."""
        if name not in self.warehouses:
            self.warehouses[name] = (budget, cell_ratio)
        return name

    def assign(self, path: str, warehouse: Optional[str]) -> None:
        """Let the layer at ``path`` draw from ``warehouse`` (None: plain)."""
        if warehouse is not None and warehouse not in self.warehouses:
            raise ValueError(f'layer {path!r} draws from warehouse '
                             f'{warehouse!r}, which is not declared; '
                             f'declared: {list(self.warehouses)}')
        self.layers[path] = warehouse


_KW_OF = {nn.Conv1d: KWConv1d, nn.Conv2d: KWConv2d}


def _conv_geometry(layer: nn.Module) -> dict:
    """The constructor arguments a conv (plain or KW) shares with its
    counterpart."""
    return dict(
        in_channels=layer.in_channels,
        out_channels=layer.out_channels,
        kernel_size=layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        bias=layer.bias is not None)


def kw_layer_like(layer: nn.Module, warehouse: str) -> KWConvNd:
    """A KW layer with the geometry of ``layer`` (``nn.Conv1d``,
    ``nn.Conv2d``, ``nn.Linear`` or a KW layer) drawing from
    ``warehouse``; a KW layer is re-targeted in place."""
    if isinstance(layer, KWConvNd):
        layer.warehouse = warehouse
        return layer
    if isinstance(layer, nn.Linear):
        return KWLinear(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            warehouse=warehouse)
    kw_type = next(
        (kw for plain, kw in _KW_OF.items() if isinstance(layer, plain)), None)
    if kw_type is None or layer.transposed or layer.padding_mode != 'zeros' \
            or isinstance(layer.padding, str):
        raise ValueError(
            f'cannot make a KW layer of {layer!r}: only nn.Conv1d/Conv2d '
            f'(zero padding given as numbers, not transposed) and nn.Linear '
            f'are supported')
    return kw_type(**_conv_geometry(layer), warehouse=warehouse)


def plain_layer_like(layer: nn.Module) -> nn.Module:
    """The plain conv with the geometry of an (unbound) KW conv, Kaiming
    (fan_out) initialised as mmcv's ``ConvModule`` does; other layers are
    returned as they are."""
    if not isinstance(layer, KWConvNd):
        return layer
    if isinstance(layer, KWLinear):
        return nn.Linear(
            layer.in_channels, layer.out_channels, bias=layer.bias is not None)
    conv_type = nn.Conv1d if layer.dims == 1 else nn.Conv2d
    conv = conv_type(**_conv_geometry(layer))
    nn.init.kaiming_normal_(conv.weight, mode='fan_out', nonlinearity='relu')
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def apply_layout(network: nn.Module,
                 layout: KWLayout,
                 manager: Union[WarehouseManager, None] = None,
                 attention_init: bool = True) -> NetworkPlan:
    """Swap the layers of ``layout`` in place and bind the warehouses.

    Args:
        network (nn.Module): The network; it must own ``manager`` (as a
            submodule) for the warehouses to be saved with it.
        layout (KWLayout): The layout.
        manager (WarehouseManager, optional): The manager to declare the
            warehouses in; ``network.warehouse_manager`` if None.
        attention_init (bool): Start at temperature 1 with the initial
            assignment (training from scratch); False pins it to 0.
            Defaults to True.

    Returns:
        NetworkPlan: The plan, in module registration order.
    """
    manager = network.warehouse_manager if manager is None else manager
    for name, (budget, cell_ratio) in layout.warehouses.items():
        manager.declare(name, budget=budget, cell_ratio=cell_ratio)
    swapped = []
    try:
        for path, warehouse in layout.layers.items():
            parent_path, _, attr = path.rpartition('.')
            parent = network.get_submodule(parent_path)
            layer = getattr(parent, attr)
            new = plain_layer_like(layer) if warehouse is None else \
                kw_layer_like(layer, warehouse)
            if new is not layer:
                setattr(parent, attr, new)
                swapped.append((parent, attr, layer))
        return manager.bind(network, attention_init=attention_init)
    except Exception:
        # A layout that does not fit leaves the network as it was.
        for parent, attr, layer in reversed(swapped):
            setattr(parent, attr, layer)
        raise


def reset_kw_attentions(module: nn.Module) -> int:
    """Give every KW attention in ``module`` its official initialisation.

    Returns:
        int: The number of attentions reset.
    """
    attentions = [m for m in module.modules() if isinstance(m, KWAttention)]
    for attention in attentions:
        attention.init_weights()
    return len(attentions)
