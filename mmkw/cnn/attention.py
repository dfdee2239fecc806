"""The attention of a KernelWarehouse layer (contrasting-driven attention)."""
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Type

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .plan import ZERO_CELL

__all__ = [
    'AttentionOutput', 'KWAttention', 'KWStarAttention', 'ATTENTION_TYPES'
]


class AttentionOutput(NamedTuple):
    """What the attention of a KW layer gives its convolution.

    Attributes:
        alpha (Tensor): ``[B * m, n]`` mixture weights over the warehouse
            cells.
        in_scale (Tensor, optional): ``[B, C_in]`` factors of the input
            channels (KW*), applied before the convolution.
        out_scale (Tensor, optional): ``[B, C_out]`` factors of the output
            channels (KW*), applied before the bias.
    """
    alpha: torch.Tensor
    in_scale: Optional[torch.Tensor] = None
    out_scale: Optional[torch.Tensor] = None


#: Norms whose affine parameters the official initialisation resets.
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _synced(norm: nn.Module) -> bool:
    """A SyncBatchNorm with other processes to share a batch with."""
    return isinstance(norm, nn.SyncBatchNorm) and dist.is_available() \
        and dist.is_initialized() and dist.get_world_size() > 1


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """The global average pool, ``[B, C, *spatial] -> [B, C]``.

    A bf16 tensor on the CPU (under autocast) is summed (float32
    accumulation, a bf16 result) and then divided: PyTorch's bf16 ``mean``
    on the CPU copies its input to float32 first, and took 19 ms for a
    ``[8, 96, 112, 112]`` MobileNetV2 activation against 0.4 ms for the
    sum (2 threads); in KW-MobileNetV2 at batch 8 the pools took a sixth of
    the step.
    """
    flat = x.flatten(2)
    if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 \
            and x.device.type == 'cpu':
        return flat.sum(dim=-1).div_(flat.shape[-1])
    return flat.mean(dim=-1)


class KWAttention(nn.Module):
    """Mixture weights of a KW layer's cells over its warehouse.

    For an input ``x`` of shape ``[B, C, *spatial]`` it returns an
    :class:`AttentionOutput` whose ``alpha`` has shape ``[B * m, n]``: one
    row per linear mixture, one column per warehouse cell
    (kernelwarehouse.md section 2.2):

    ``pool -> fc1 -> norm1 -> ReLU -> fc2 -> [B*m, n+1]`` (the last column
    belongs to the zero cell), then ``z / (sum|z| + 1e-3)`` (the
    contrasting-driven attention function), then
    ``(1 - tau) * z + tau * beta`` and the zero-cell column is dropped.

    With ``nonlocal_basis`` the logits of the cells owned by other layers are
    produced from a small basis by ``fc3``, which saves parameters when the
    warehouse is much larger than the layer.

    Args:
        in_channels (int): Channels of the layer input.
        num_mixtures (int): ``m``, mixtures (cells) of the layer.
        num_cells (int): ``n``, cells of the warehouse.
        beta (Sequence): Initial assignment, a warehouse cell index or
            ``'z'`` (the zero cell) per mixture.
        reduction (float): Hidden width ratio, ``h = max(int(C * r), 16)``.
            Defaults to 0.0625.
        norm_layer (Callable): Builds the hidden norm from ``h``. ``fc1`` has
            a bias unless the norm is a batch norm. A batch norm training on
            a batch of one uses its running statistics (see
            :meth:`_normalize`). Defaults to ``nn.BatchNorm1d``.
        nonlocal_basis (tuple[int, int, float], optional):
            ``(num_local_cells, start, ratio)`` to use the non-local basis
            mapping, ``None`` for a plain ``fc2``. Defaults to None.
        min_hidden (int): Smallest hidden width. Defaults to 16.
    """

    def __init__(self,
                 in_channels: int,
                 num_mixtures: int,
                 num_cells: int,
                 beta: Sequence,
                 reduction: float = 0.0625,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm1d,
                 nonlocal_basis: Optional[tuple] = None,
                 min_hidden: int = 16):
        super().__init__()
        if len(beta) != num_mixtures:
            raise ValueError(f'beta has {len(beta)} entries, expected one per '
                             f'mixture ({num_mixtures})')
        self.in_channels = in_channels
        self.num_mixtures = num_mixtures
        self.num_cells = num_cells
        hidden = max(int(in_channels * reduction), min_hidden)
        self.hidden_channels = hidden
        norm = norm_layer(hidden)
        with_bias = not isinstance(norm, nn.modules.batchnorm._BatchNorm)
        self.fc1 = nn.Linear(in_channels, hidden, bias=with_bias)
        self.norm1 = norm
        self.act1 = nn.ReLU(inplace=True)
        per_mixture = num_cells + 1
        if nonlocal_basis is None:
            self.num_local_cells = None
            self.fc2 = nn.Linear(hidden, num_mixtures * per_mixture)
        else:
            num_local, start, ratio = nonlocal_basis
            num_nonlocal = num_cells - num_local
            if num_local < 0 or num_nonlocal < 0 or \
                    not 0 <= start <= num_nonlocal:
                raise ValueError(
                    f'invalid non-local basis: {num_local} local cells '
                    f'from cell {start} in a warehouse of {num_cells}')
            self.num_local_cells = num_local
            self.start = start
            self.num_basis = max(int(num_nonlocal * ratio), min_hidden)
            self.fc2 = nn.Linear(
                hidden, (num_local + self.num_basis + 1) * num_mixtures,
                bias=False)
            self.fc3 = nn.Linear(self.num_basis, num_nonlocal, bias=False)
            self.basis_bias = nn.Parameter(
                torch.zeros(num_mixtures * per_mixture))
        # tau: part of the training state, saved with the model.
        self.register_buffer('temperature', torch.zeros(()))
        # beta: derived from the plan, recomputed on construction.
        assignment = torch.zeros(num_mixtures, per_mixture)
        for j, cell in enumerate(beta):
            assignment[j, num_cells if cell == ZERO_CELL else cell] = 1
        self.register_buffer('init_assignment', assignment, persistent=False)
        self._add_heads(hidden)
        self.init_weights()

    @classmethod
    def for_layer(cls, layer: nn.Module, plan, num_cells: int,
                  **options) -> 'KWAttention':
        """The attention of a KW layer bound by ``plan``
        (:class:`~mmkw.cnn.LayerPlan`) to a warehouse of ``num_cells``
        cells; ``options`` are the manager's (``reduction``,
        ``norm_layer``, ``nonlocal_basis``)."""
        return cls(layer.in_channels, plan.num_mixtures, num_cells, plan.beta,
                   **options)

    def _add_heads(self, hidden: int) -> None:
        """Heads of a subclass reading the hidden features (none here)."""

    def init_weights(self) -> None:
        """Official initialisation: Kaiming (fan_out) Linear, unit norms."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(
                    m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, _NORMS) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.num_local_cells is not None:
            nn.init.zeros_(self.basis_bias)

    def _map_to_cells(self, logits: torch.Tensor) -> torch.Tensor:
        """Non-local basis logits -> logits over all warehouse cells."""
        local_and_basis = logits.reshape(
            -1, self.num_local_cells + self.num_basis + 1)
        local = local_and_basis[:, :self.num_local_cells]
        basis = local_and_basis[:, self.num_local_cells:-1]
        zero = local_and_basis[:, -1:]
        other = self.fc3(basis)
        full = torch.cat(
            [other[:, :self.start], local, other[:, self.start:], zero], dim=1)
        return full.reshape(-1, self.num_mixtures *
                            (self.num_cells + 1)) + self.basis_bias

    def _normalize(self, hidden: torch.Tensor) -> torch.Tensor:
        """``norm1``; a batch norm training on a single sample or none
        (which have no batch statistics: PyTorch refuses them) normalises
        with its running statistics instead, as in eval mode, and leaves
        them unchanged. A ``torch.fx`` trace records the plain norm call."""
        norm = self.norm1
        batch_norm = isinstance(norm, nn.modules.batchnorm._BatchNorm)
        if self.training and batch_norm \
                and not isinstance(hidden, torch.fx.Proxy) \
                and hidden.shape[0] <= 1 and not _synced(norm):
            return F.batch_norm(hidden, norm.running_mean, norm.running_var,
                                norm.weight, norm.bias, False, 0.0, norm.eps)
        return norm(hidden)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Pool, ``fc1``, norm, ReLU: the features every head reads."""
        return self.act1(self._normalize(self.fc1(_spatial_mean(x))))

    def forward(self, x: torch.Tensor) -> AttentionOutput:
        return AttentionOutput(self._mixture(self._hidden(x)))

    def _mixture(self, hidden: torch.Tensor) -> torch.Tensor:
        """``alpha`` ``[B * m, n]`` from the hidden features."""
        logits = self.fc2(hidden)
        if self.num_local_cells is not None:
            logits = self._map_to_cells(logits)
        z = logits.reshape(-1, self.num_cells + 1)
        z = z / (z.abs().sum(dim=1, keepdim=True) + 1e-3)
        # (1 - tau) * z + tau * beta, written so that every operation takes
        # z: torch.fx then records tau as the live buffer instead of baking
        # ``1 - tau`` into a traced model as a constant. Bit-identical to the
        # official form at tau = 0, 1/2 and 1.
        tau = self.temperature
        z = z.reshape(-1, self.num_mixtures, self.num_cells + 1)
        z = (z - tau * z).addcmul(tau, self.init_assignment)
        return z.reshape(-1, self.num_cells + 1)[:, :-1]

    def extra_repr(self) -> str:
        s = (f'mixtures={self.num_mixtures}, cells={self.num_cells}, '
             f'temperature={float(self.temperature):.4g}')
        if self.num_local_cells is not None:
            s += (f', local_cells={self.num_local_cells}, '
                  f'basis={self.num_basis}')
        return s


class KWStarAttention(KWAttention):
    """KW* (paper Table 17): the KW attention plus ODConv's input-channel,
    output-channel and spatial attentions (Li et al., ICLR 2022).

    From the same hidden features: ``channel_fc`` gives a sigmoid weight per
    input channel (applied to the input), ``filter_fc`` one per output
    channel (applied to the output), and, for kernels larger than 1x1,
    ``spatial_fc`` one per kernel position, which scales the mixtures of
    that position (``alpha`` rows ``s * G_o * G_i ... (s + 1) * G_o * G_i``),
    i.e. the assembled kernel at that position. The KW mixture takes the
    place of ODConv's kernel-number attention. As in ODConv's released code
    the sigmoids have temperature 1 and the heads have biases (zero-
    initialised, Kaiming fan-out weights); unlike it, depthwise convs get an
    output-channel attention too, which is what the paper's parameter count
    of MobileNetV2 KW*4x (12.51M) needs.

    Args:
        in_channels, num_mixtures, num_cells, beta: As
            :class:`KWAttention`.
        out_channels (int): Output channels of the layer.
        split (tuple[int, int, int]): ``(G_s, G_o, G_i)`` of the layer.
        **kwargs: Other arguments of :class:`KWAttention`.

    Returns (forward):
        AttentionOutput: ``alpha`` ``[B * m, n]`` (spatially scaled), the
        input-channel (``in_scale``, ``[B, C_in]``) and the output-channel
        (``out_scale``, ``[B, C_out]``) attentions.
    """

    def __init__(self, in_channels: int, num_mixtures: int, num_cells: int,
                 beta: Sequence, out_channels: int, split: Sequence[int],
                 **kwargs):
        # Read by _add_heads, which KWAttention.__init__ calls before the
        # one initialisation of every layer (plain attributes may be set
        # before nn.Module.__init__).
        self.out_channels = out_channels
        self.split = tuple(split)
        super().__init__(in_channels, num_mixtures, num_cells, beta, **kwargs)

    @classmethod
    def for_layer(cls, layer: nn.Module, plan, num_cells: int,
                  **options) -> 'KWStarAttention':
        return cls(
            layer.in_channels,
            plan.num_mixtures,
            num_cells,
            plan.beta,
            out_channels=layer.out_channels,
            split=plan.split,
            **options)

    def _add_heads(self, hidden: int) -> None:
        self.channel_fc = nn.Linear(hidden, self.in_channels)
        self.filter_fc = nn.Linear(hidden, self.out_channels)
        self.spatial_fc = nn.Linear(hidden, self.split[0]) \
            if self.split[0] > 1 else None

    def forward(self, x: torch.Tensor) -> AttentionOutput:
        hidden = self._hidden(x)
        alpha = self._mixture(hidden)
        channel = torch.sigmoid(self.channel_fc(hidden))
        filter_ = torch.sigmoid(self.filter_fc(hidden))
        if self.spatial_fc is not None:
            # One weight per kernel position, for its G_o * G_i mixtures.
            spatial = torch.sigmoid(self.spatial_fc(hidden))
            per_mixture = spatial.repeat_interleave(
                self.split[1] * self.split[2], dim=1)
            alpha = alpha * per_mixture.reshape(-1, 1)
        return AttentionOutput(alpha, channel, filter_)


#: ``attention_type`` of :class:`~mmkw.cnn.WarehouseManager` -> attention
#: class (built with its ``for_layer``); a new type needs only an entry.
ATTENTION_TYPES: Dict[str, Type[KWAttention]] = {
    'kw': KWAttention,
    'kw_star': KWStarAttention,
}
