"""What every KW model shares: its plain parent plus a layout."""
import abc
from typing import Dict, List, Tuple, Union

import torch.nn as nn

from mmkw.cnn import (KWConvNd, KWLayout, NetworkPlan, WarehouseManager,
                      apply_layout, reset_kw_attentions)
from mmkw.cnn.convert import apply_budget

__all__ = ['KWModelMixin', 'KWBackboneMixin', 'has_pretrained_init']


def has_pretrained_init(init_cfg) -> bool:
    """Whether an ``init_cfg`` loads a ``Pretrained`` checkpoint."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(
        isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'
        for cfg in cfgs)


class KWModelMixin(metaclass=abc.ABCMeta):
    """Turns a plain MMPretrain model (a backbone, a head), built unchanged
    by its own ``__init__``, into its KernelWarehouse version.

    A subclass (``class KWResNet(KWBackboneMixin, ResNet)``) checks its KW
    arguments with :func:`~mmkw.models.kw_args.build_warehouse_manager`,
    builds its parent, then calls :meth:`convert_to_kw`. It declares its
    layout in :meth:`kw_layout` (pure data over module paths) and, if any,
    the named groups of warehouses a ``budget`` dict may address in
    :meth:`kw_budget_groups`. The mixin swaps the layers, binds the
    warehouses (``self.warehouse_manager``, ``self.plan``) and gives the
    attentions their official initialisation in ``init_weights()``.
    """

    warehouse_manager: WarehouseManager
    plan: NetworkPlan

    @abc.abstractmethod
    def kw_layout(self) -> KWLayout:
        """The warehouses and the layers drawing from them (or staying
        plain), by module path, in warehouse index order."""

    def kw_budget_groups(self) -> Dict[str, Tuple[str, List[List[str]]]]:
        """Named groups of warehouses a ``budget`` dict may give a value
        (or one value per member) for: ``name -> (unit, members)``, each
        member a list of warehouse names. None by default."""
        return {}

    def convert_to_kw(self,
                      manager: WarehouseManager,
                      budget: Union[float, dict, None] = None,
                      attention_init: bool = True) -> None:
        """Apply :meth:`kw_layout`, with the per-warehouse budgets of a
        ``budget`` dict, with ``manager`` and bind it.

        Args:
            manager (WarehouseManager): From
                :func:`~mmkw.models.kw_args.build_warehouse_manager`.
            budget (float | dict, optional): The ``budget`` argument; the
                manager's if None.
            attention_init (bool): See ``WarehouseManager.bind``.
        """
        self.warehouse_manager = manager
        self.budget = manager.budget if budget is None else budget
        self.attention_init = attention_init
        layout = apply_budget(self.kw_layout(), self.budget,
                              self.kw_budget_groups())
        self.plan = apply_layout(self, layout, manager, attention_init)

    def init_weights(self):
        """The parent's initialisation (its ``init_cfg``, the warehouses),
        then the official one of the attentions, over any generic
        ``init_cfg`` (e.g. ConvNeXt's TruncNormal on every Linear), as the
        official code does; not over a ``Pretrained`` checkpoint."""
        initialised = self._is_init
        super().init_weights()
        if not initialised and not has_pretrained_init(self.init_cfg):
            reset_kw_attentions(self)


class KWBackboneMixin(KWModelMixin):
    """:class:`KWModelMixin` for a backbone with ``frozen_stages``.

    A subclass declares the modules its ``frozen_stages`` freezes in
    :meth:`frozen_modules`; the mixin freezes their warehouses too and makes
    ``train()`` return ``self``.
    """

    def frozen_modules(self) -> List[nn.Module]:
        """The modules ``frozen_stages`` freezes (their warehouses too)."""
        return []

    def convert_to_kw(self,
                      manager: WarehouseManager,
                      budget: Union[float, dict, None] = None,
                      attention_init: bool = True) -> None:
        super().convert_to_kw(manager, budget, attention_init)
        self._freeze_stages()

    def frozen_warehouses(self) -> List[str]:
        """Names of the warehouses a frozen module draws from."""
        names = {}
        for module in self.frozen_modules():
            for m in module.modules():
                if isinstance(m, KWConvNd):
                    names[m.warehouse] = None
        return list(names)

    def _freeze_stages(self):
        super()._freeze_stages()
        # The parent's __init__ freezes too, before any warehouse exists.
        manager = self._modules.get('warehouse_manager')
        if manager is None or manager.plan is None:
            return
        for name in self.frozen_warehouses():
            manager.weights[name].requires_grad = False

    def train(self, mode: bool = True):
        """Set the mode, keeping frozen stages and ``norm_eval``; returns
        ``self`` as ``nn.Module.train`` does (MMPretrain's returns None,
        which breaks ``model = backbone.eval()``)."""
        super().train(mode)
        return self
