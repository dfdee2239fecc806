"""The warehouse manager: owns the warehouses and binds KW layers to them."""
import functools
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from .attention import ATTENTION_TYPES
from .bound import BoundLayer
from .layers import KWConvNd
from .loading import CHECKPOINT_HINT, checkpoint_keys, checkpoint_name
from .plan import NetworkPlan, WarehouseSpec, build_plan

__all__ = ['WarehouseManager']


def _key_prefixes(keys: Sequence[str], limit: int = 6) -> str:
    """The distinct first components of ``keys``, e.g. ``'backbone.',
    'neck.'``."""
    heads = list(
        dict.fromkeys(
            k.split('.', 1)[0] + ('.' if '.' in k else '') for k in keys))
    shown = ', '.join(repr(h) for h in heads[:limit])
    return shown + (f' and {len(heads) - limit} more'
                    if len(heads) > limit else '')


def _pin_temperatures(layer_paths: Sequence[str], network: nn.Module,
                      incompatible_keys) -> None:
    """Load-state-dict post-hook of a network bound with
    ``attention_init=False``: whatever temperature a checkpoint held (one
    saved mid-schedule holds tau > 0), the layers stay at 0."""
    for path in layer_paths:
        layer = network.get_submodule(path)
        if isinstance(layer, KWConvNd) and layer.attention is not None:
            layer.attention.temperature.fill_(0.0)


def _follow_replica(manager_path: str, layer_paths: Sequence[str],
                    network: nn.Module, args) -> None:
    """Forward pre-hook of a bound network: point its layers at the manager
    inside *this* network. A DataParallel replica copies each layer's
    handle, which still names the original manager; ``copy.deepcopy``
    copies handles consistently and needs nothing. A network whose KW layers
    were made plain again (no manager) is left alone."""
    try:
        manager = network.get_submodule(manager_path)
        first = network.get_submodule(layer_paths[0])
    except AttributeError:
        return
    if not isinstance(first, KWConvNd) or (first._manager
                                           and first._manager[0] is manager):
        return
    for path in layer_paths:
        network.get_submodule(path)._manager = (manager, )


class WarehouseManager(nn.Module):
    """Holds the warehouses of a network, one parameter each.

    Usage: build the network with KW layers naming their warehouses (or
    apply a :class:`~mmkw.cnn.KWLayout`), make the manager a submodule of
    the network, then call :meth:`bind` once with the network. Binding walks
    the network in module registration order, computes the
    :class:`~mmkw.cnn.NetworkPlan`, creates one ``[n, c_o, c_i, 1, ...]``
    parameter per warehouse (stored once, however many layers share it) and
    gives every layer its attention.

    Ownership runs one way: the manager owns the warehouses (its state-dict
    entries ``weights.<name>``), a layer holds a handle to its manager that
    ``copy.deepcopy`` copies along, and the network's forward pre-hook points
    the layers of a DataParallel replica at the replica's manager. The
    manager checks a checkpoint's warehouses when it is loaded
    (:meth:`_load_from_state_dict`).

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
        attention_type (str): ``'kw'`` (KernelWarehouse's attention) or
            ``'kw_star'`` (KW*: plus ODConv's input-channel, output-channel
            and spatial attentions, :class:`~mmkw.cnn.KWStarAttention`).
            Defaults to ``'kw'``.
    """

    def __init__(self,
                 budget: float = 1.0,
                 cell_ratio: Optional[float] = None,
                 reduction: float = 0.0625,
                 nonlocal_basis_ratio: float = 1.0,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm1d,
                 attention_type: str = 'kw'):
        super().__init__()
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(f'attention_type must be one of '
                             f'{list(ATTENTION_TYPES)}, got '
                             f'{attention_type!r}')
        self.attention_type = attention_type
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
        #: Module paths of the bound layers, relative to the bound network.
        self.layer_paths: tuple = ()
        #: False: the temperature of the bound layers is pinned to 0.
        self.attention_init = True

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

    def bind(self,
             network: nn.Module,
             attention_init: bool = True) -> NetworkPlan:
        """Plan the warehouses of ``network`` and bind its KW layers.

        Args:
            network (nn.Module): The module holding the KW layers (usually
                the one that owns this manager).
            attention_init (bool): Start at temperature 1 with the initial
                assignment (training from scratch). False pins the
                temperature to 0 for the model's whole life (fine-tuning):
                loading a checkpoint keeps it at 0, and
                :func:`~mmkw.cnn.set_temperature` and the temperature hook
                refuse to change it. Defaults to True.

        Returns:
            NetworkPlan: The resolved plan, also kept as ``self.plan``.
        """
        if self.plan is not None:
            raise RuntimeError('WarehouseManager.bind() was already called')
        if not isinstance(attention_init, bool):
            raise ValueError(
                f'attention_init must be True (train from scratch: '
                f'temperature 1 -> 0) or False (fine-tune: temperature '
                f'pinned to 0), got {attention_init!r}')
        layers: List[tuple] = [(name, m)
                               for name, m in network.named_modules()
                               if isinstance(m, KWConvNd)]
        if not layers:
            raise ValueError(f'{type(network).__name__} has no KW layers')
        for name, layer in layers:
            if layer.warehouse not in self.specs:
                raise ValueError(
                    f'KW layer {name!r} draws from warehouse '
                    f'{layer.warehouse!r}, which was not declared; declared: '
                    f'{list(self.specs)}')
        own_path = next(
            (name for name, m in network.named_modules() if m is self), None)
        if own_path is None:
            raise ValueError(
                f'the WarehouseManager must be a submodule of the '
                f'{type(network).__name__} it binds (its warehouses are '
                f'saved in that network\'s state dict): assign it, e.g. '
                f'network.warehouse_manager = manager, before bind()')
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
            attention = ATTENTION_TYPES[self.attention_type].for_layer(
                layer,
                lp,
                wh.num_cells,
                reduction=self.reduction,
                norm_layer=self.norm_layer,
                nonlocal_basis=nonlocal_basis)
            attention.temperature.fill_(1.0 if attention_init else 0.0)
            record = BoundLayer(
                path=name,
                manager_path=own_path,
                owner_path='',
                plan=lp,
                geometry=layer.conv_geometry(lp.split),
                warehouse=wh.name,
                warehouse_shape=tuple(wh.shape),
                attention_type=self.attention_type,
                attention_init=attention_init)
            layer.bind(self, record, attention)
        self.plan = plan
        self.attention_init = attention_init
        self.layer_paths = tuple(name for name, _ in layers)
        if not attention_init:
            network.register_load_state_dict_post_hook(
                functools.partial(_pin_temperatures, self.layer_paths))
        network.register_forward_pre_hook(
            functools.partial(_follow_replica, own_path, self.layer_paths))
        self.init_weights()
        return plan

    @torch.no_grad()
    def init_weights(self) -> None:
        """Kaiming normal (fan_out) over each layer's own slice of cells.
        (The attentions are initialised by the network, see
        :func:`~mmkw.cnn.reset_kw_attentions`.)"""
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

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args):
        """Refuse a checkpoint whose warehouses do not fit this network.

        MMEngine loads ``load_from`` and ``init_cfg=dict(type='Pretrained')``
        non-strictly, where a wrong or absent warehouse would only be logged
        and the model would go on with random cells. So, strict or not, a
        checkpoint that gives none of the warehouses (another prefix, another
        model, an empty file), only some of them, numbered ones (an
        unconverted official checkpoint) or one of another shape (another
        budget or architecture) raises a ValueError naming the file, the keys
        expected and the prefixes the file has. (A plain network's
        checkpoint is refused by the KW layers, which find plain kernels
        under their names.)
        """
        if self.plan is not None:
            self._check_warehouses(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _check_warehouses(self, state_dict: dict, prefix: str) -> None:
        source = checkpoint_name()
        expected = {
            prefix + 'weights.' + wh.name: wh.shape
            for wh in self.plan.warehouses
        }
        found = [key for key in expected if key in state_dict]
        for key in found:
            shape = tuple(state_dict[key].shape)
            if shape != expected[key]:
                raise ValueError(
                    f'{source}: warehouse {key!r} has shape {list(shape)}, '
                    f'but this model needs {list(expected[key])} (cells x '
                    f'cell shape); it was saved for another budget or '
                    f'architecture: {CHECKPOINT_HINT}')
        if found and len(found) < len(expected):
            missing = sorted(set(expected) - set(found))
            raise ValueError(f'{source} lacks {len(missing)} of the model\'s '
                             f'{len(expected)} warehouses ({missing[:3]}); '
                             f'{CHECKPOINT_HINT}')
        if found:
            return
        others = sorted(
            key for key in state_dict if key.startswith(prefix + 'weights.'))
        if others:
            raise ValueError(
                f'{source}: warehouses {others[:3]} are not the model\'s '
                f'({sorted(expected)[:3]}): numbered warehouses come from an '
                f'unconverted official checkpoint; {CHECKPOINT_HINT}')
        raise ValueError(
            self._nothing_matches(source, state_dict, prefix, expected))

    def _nothing_matches(self, source: str, state_dict: dict, prefix: str,
                         expected: dict) -> str:
        """The refusal of a checkpoint holding none of the warehouses.

        A module sees only the keys under its own prefix, so what the file
        holds comes from the loader that read it
        (:func:`~mmkw.cnn.note_checkpoint_source`)."""
        message = (f'{source} gives this model none of its '
                   f'{len(expected)} warehouses (expected '
                   f'{sorted(expected)[:3]})')
        keys = checkpoint_keys()
        if keys is None:
            return message + (f': the state dict has no key under '
                              f'{prefix + "weights."!r}; {CHECKPOINT_HINT}')
        if not keys:
            return message + ': it holds no weights at all'
        message += f'; its {len(keys)} keys start with {_key_prefixes(keys)}'
        suffix = 'weights.' + self.plan.warehouses[0].name
        elsewhere = sorted(key[:-len(suffix)] for key in keys
                           if key == suffix or key.endswith('.' + suffix))
        if not elsewhere:
            return message + f'; {CHECKPOINT_HINT}'
        there, here = elsewhere[0], prefix
        if there.endswith(here) and there != here:
            hint = (f'load it with init_cfg=dict(type=\'Pretrained\', '
                    f'checkpoint=..., prefix='
                    f'{there[:len(there) - len(here)]!r})')
        elif here.endswith(there):
            owner = here[:len(here) - len(there)].rstrip('.')
            hint = (f'it is the checkpoint of {owner!r} alone: load it there '
                    f'with init_cfg=dict(type=\'Pretrained\', '
                    f'checkpoint=...), not into the whole model')
        else:
            hint = 'rename its keys or pass the matching prefix'
        return message + (f'; it has the warehouses under {there!r} where '
                          f'this model expects {here!r}: {hint}')

    def extra_repr(self) -> str:
        if self.plan is None:
            return f'budget={self.budget}, unbound'
        return '\n'.join(
            f'({wh.name}): {list(wh.shape)} for {len(wh.layers)} layers'
            for wh in self.plan.warehouses)
