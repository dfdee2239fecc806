"""The warehouse manager: owns the warehouses and binds KW layers to them."""
import math
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

from .attention import KWAttention
from .layers import KWConvNd
from .plan import NetworkPlan, WarehouseSpec, build_plan

__all__ = ['WarehouseManager']


class WarehouseManager(nn.Module):
    """Holds the warehouses of a network, one parameter each.

    Usage: build the network with KW layers naming their warehouses, then
    call :meth:`bind` once with the network. Binding walks the network in
    module registration order, computes the :class:`~mmkw.cnn.NetworkPlan`,
    creates one ``[n, c_o, c_i, 1, ...]`` parameter per warehouse (stored
    once, however many layers share it) and gives every layer its attention.

    Args:
        budget (float): Default parameter budget ``b`` of every warehouse.
            Defaults to 1.
        cell_ratio (float, optional): Default cell ratio; ``None`` picks 1
            for ``b >= 1`` and 0.5 below. Defaults to None.
        reduction (float): Attention hidden ratio. Defaults to 0.0625.
        nonlocal_basis_ratio (float): Values below 1 enable the non-local
            basis mapping of the attention. Defaults to 1.
        norm_layer (Callable): Attention hidden norm. Defaults to
            ``nn.BatchNorm1d``.
    """

    def __init__(self,
                 budget: float = 1.0,
                 cell_ratio: Optional[float] = None,
                 reduction: float = 0.0625,
                 nonlocal_basis_ratio: float = 1.0,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm1d):
        super().__init__()
        WarehouseSpec('default', budget, cell_ratio)  # validates
        if not 0 < reduction <= 1:
            raise ValueError(f'reduction must be in (0, 1], got {reduction!r}')
        if not 0 < nonlocal_basis_ratio <= 1:
            raise ValueError('nonlocal_basis_ratio must be in (0, 1], got '
                             f'{nonlocal_basis_ratio!r}')
        self.budget = budget
        self.cell_ratio = cell_ratio
        self.reduction = reduction
        self.nonlocal_basis_ratio = nonlocal_basis_ratio
        self.norm_layer = norm_layer
        self.specs: Dict[str, WarehouseSpec] = {}
        self.weights = nn.ParameterDict()
        self.plan: Optional[NetworkPlan] = None
        # The bound layers, outside the module tree (like each layer's
        # ``_manager``), so init_weights() reaches their attentions even
        # where mmengine's init_weights() does not descend (nn.Sequential).
        self._layers: tuple = ()

    def declare(self,
                name: str,
                budget: Optional[float] = None,
                cell_ratio: Optional[float] = None) -> str:
        """Declare a warehouse; declaration order is the warehouse index.

        Args:
            name (str): Warehouse name.
            budget (float, optional): Its budget; the manager's if None.
            cell_ratio (float, optional): Its cell ratio; the manager's (or
                the official default for its budget) if None.

        Returns:
            str: ``name``.
        """
        if self.plan is not None:
            raise RuntimeError('warehouses must be declared before bind()')
        if name in self.specs:
            raise ValueError(f'warehouse {name!r} is declared twice')
        if not name.isidentifier():
            raise ValueError(f'warehouse name must be an identifier, got '
                             f'{name!r}')
        budget = self.budget if budget is None else budget
        if cell_ratio is None and budget == self.budget:
            cell_ratio = self.cell_ratio
        self.specs[name] = WarehouseSpec(name, budget, cell_ratio)
        return name

    def bind(self, network: nn.Module, attention_init: bool = True) -> NetworkPlan:
        """Plan the warehouses of ``network`` and bind its KW layers.

        Args:
            network (nn.Module): The module holding the KW layers (usually
                the one that owns this manager).
            attention_init (bool): Start at temperature 1 with the initial
                assignment (training from scratch). If False the temperature
                is 0 (fine-tuning). Defaults to True.

        Returns:
            NetworkPlan: The resolved plan, also kept as ``self.plan``.
        """
        if self.plan is not None:
            raise RuntimeError('WarehouseManager.bind() was already called')
        layers: List[tuple] = [(name, m) for name, m in network.named_modules()
                               if isinstance(m, KWConvNd)]
        if not layers:
            raise ValueError(f'{type(network).__name__} has no KW layers')
        for name, layer in layers:
            if layer.warehouse not in self.specs:
                raise ValueError(
                    f'KW layer {name!r} draws from warehouse '
                    f'{layer.warehouse!r}, which was not declared; declared: '
                    f'{list(self.specs)}')
        specs = [layer.layer_spec(name) for name, layer in layers]
        used = {spec.warehouse for spec in specs}
        plan = build_plan(specs,
                          [s for s in self.specs.values() if s.name in used])
        for wh in plan.warehouses:
            self.weights[wh.name] = nn.Parameter(torch.empty(wh.shape))
        for (name, layer), lp in zip(layers, plan.layers):
            wh = plan.warehouses[lp.warehouse_index]
            nonlocal_basis = None
            if self.nonlocal_basis_ratio < 1:
                nonlocal_basis = (int(wh.spec.budget * lp.num_mixtures),
                                  lp.start, self.nonlocal_basis_ratio)
            attention = KWAttention(
                layer.in_channels,
                lp.num_mixtures,
                wh.num_cells,
                lp.beta,
                reduction=self.reduction,
                norm_layer=self.norm_layer,
                nonlocal_basis=nonlocal_basis)
            attention.temperature.fill_(1.0 if attention_init else 0.0)
            layer.bind(self, lp, attention)
        self.plan = plan
        self._layers = tuple(layer for _, layer in layers)
        network.register_load_state_dict_pre_hook(self.check_checkpoint)
        self.init_weights()
        return plan

    @torch.no_grad()
    def init_weights(self) -> None:
        """Kaiming normal (fan_out) over each layer's own slice of cells,
        and the official initialisation of every bound layer's attention."""
        if self.plan is None:
            return
        for wh in self.plan.warehouses:
            weight = self.weights[wh.name]
            slices = [(lp.start, lp.start + lp.num_cells) for lp in wh.layers]
            assigned = sum(b - a for a, b in slices)
            if assigned < wh.num_cells:  # cells no mixture starts from
                slices.append((assigned, wh.num_cells))
            for begin, end in slices:
                if end > begin:
                    nn.init.kaiming_normal_(
                        weight[begin:end].view(-1, *wh.cell_shape[1:]),
                        mode='fan_out',
                        nonlinearity='relu')
        for layer in self._layers:
            layer.attention.init_weights()

    def check_checkpoint(self, network: nn.Module, state_dict: dict,
                         prefix: str, *args) -> None:
        """Refuse a checkpoint whose warehouses do not fit this network.

        A load-state-dict pre-hook of the network :meth:`bind` was given, so
        it sees the network's whole state dict. MMEngine loads ``load_from``
        and ``init_cfg=dict(type='Pretrained')`` non-strictly, where a wrong
        warehouse would only be logged and the model would go on with random
        cells. A warehouse of another shape (another budget or
        architecture), some warehouses missing, or weights for the network
        without any warehouse (a plain network's, an unconverted official
        checkpoint) raise a ValueError naming the keys.

        Args:
            network (nn.Module): The module that was bound.
            state_dict (dict): The state dict being loaded.
            prefix (str): The network's prefix in ``state_dict``.
        """
        own = next((name for name, m in network.named_modules() if m is self),
                   None)
        if self.plan is None or own is None:
            return
        own = prefix + (own + '.' if own else '')
        expected = {
            own + 'weights.' + wh.name: wh.shape
            for wh in self.plan.warehouses
        }
        found = [key for key in expected if key in state_dict]
        hint = ('convert official KernelWarehouse checkpoints with '
                'tools/model_converters/kw_official_to_mmkw.py and check that '
                'the config (architecture, budget) matches')
        for key in found:
            shape = tuple(state_dict[key].shape)
            if shape != expected[key]:
                raise ValueError(
                    f'checkpoint warehouse {key!r} has shape {list(shape)}, '
                    f'but this model needs {list(expected[key])} (cells x '
                    f'cell shape); it was saved for another budget or '
                    f'architecture: {hint}')
        if found and len(found) < len(expected):
            missing = sorted(set(expected) - set(found))
            raise ValueError(
                f'checkpoint lacks {len(missing)} of the model\'s '
                f'{len(expected)} warehouses ({missing[:3]}); {hint}')
        if not found and any(key.startswith(prefix) for key in state_dict):
            raise ValueError(
                f'checkpoint has weights for {type(network).__name__} '
                f'{prefix!r} but none of its KernelWarehouse warehouses '
                f'({sorted(expected)[:3]}...): it is not a checkpoint of this '
                f'KW model; {hint}')

    def extra_repr(self) -> str:
        if self.plan is None:
            return f'budget={self.budget}, unbound'
        return '\n'.join(
            f'({wh.name}): {list(wh.shape)} for {len(wh.layers)} layers'
            for wh in self.plan.warehouses)
