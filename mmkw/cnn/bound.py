"""What binding gives a KW layer, as one immutable record, and the one walk
over the bound layers of a model."""
import dataclasses
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import torch.nn as nn

from .geometry import ConvGeometry
from .plan import LayerPlan

__all__ = ['BoundLayer', 'bound_layers']


@dataclass(frozen=True)
class BoundLayer:
    """A bound KW layer: where it sits and what it draws from.

    A :class:`~mmkw.cnn.WarehouseManager` makes one per layer when it binds
    a network (paths relative to that network); :func:`bound_layers` gives
    them relative to the model walked. Hooks, analysis tools and the
    converter read these records and pair data by :attr:`path`, never by
    position.

    Attributes:
        path (str): The layer's module path.
        manager_path (str): Its manager's module path.
        owner_path (str): Path of the network the manager bound (``''``: the
            model itself).
        plan (LayerPlan): Its place in the warehouse.
        geometry (ConvGeometry): Its convolution geometry.
        warehouse (str): Name of the warehouse it draws from.
        warehouse_shape (tuple[int]): That warehouse's shape, ``[n, c_o,
            c_i, 1, ...]``.
        attention_type (str): ``'kw'`` or ``'kw_star'``.
        attention_init (bool): False if the manager pins the temperature
            to 0 (fine-tuning).
    """
    path: str
    manager_path: str
    owner_path: str
    plan: LayerPlan
    geometry: ConvGeometry
    warehouse: str
    warehouse_shape: Tuple[int, ...]
    attention_type: str
    attention_init: bool

    @property
    def warehouse_key(self) -> str:
        """The warehouse's state-dict key (``backbone.warehouse_manager.
        weights.stage1``)."""
        return _join(self.manager_path, 'weights', self.warehouse)

    @property
    def qualified_warehouse(self) -> str:
        """The warehouse's name qualified by its owner (``backbone.stage1``;
        ``stage1`` when the model owns the manager)."""
        return _join(self.owner_path, self.warehouse)

    def rebased(self, prefix: str) -> 'BoundLayer':
        """The record with ``prefix`` (a module path) before every path."""
        if not prefix:
            return self
        return dataclasses.replace(
            self,
            path=_join(prefix, self.path),
            manager_path=_join(prefix, self.manager_path),
            owner_path=_join(prefix, self.owner_path))


def _join(*parts: str) -> str:
    return '.'.join(part for part in parts if part)


def bound_layers(model: nn.Module) -> Iterator[Tuple[BoundLayer, nn.Module]]:
    """Every bound KW layer of ``model`` as ``(record, layer)``, in module
    order (within a manager, its plan's order), with the record's paths
    relative to ``model``.

    Args:
        model (nn.Module): Any module (KW layers anywhere inside).
    """
    for name, layer in model.named_modules():
        record: Optional[BoundLayer] = getattr(layer, 'bound', None)
        if not isinstance(record, BoundLayer):
            continue
        if name.endswith('.' + record.path):  # bound by a submodule
            yield record.rebased(name[:-len(record.path) - 1]), layer
        else:  # bound by the model itself
            yield record, layer
