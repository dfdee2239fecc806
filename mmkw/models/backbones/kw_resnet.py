"""ResNet with KernelWarehouse convolutions."""
from typing import List, Optional, Sequence

import torch.nn as nn
from mmpretrain.models.backbones.resnet import Bottleneck, ResNet

from mmkw.cnn import KWLayout, WarehouseManager
from mmkw.registry import register_model
from .base import KWBackboneMixin
from .utils import attention_norm_layer, check_frozen_stages, check_out_indices

__all__ = ['KWResNet']


@register_model
class KWResNet(KWBackboneMixin, ResNet):
    """ResNet whose convolutions draw their kernels from KernelWarehouses.

    The official KernelWarehouse layout (Li & Yao, ICML 2024): one
    warehouse per stage; the stem conv stays plain; in the first block of
    stage ``s`` the first conv and the (strided) downsample conv draw from
    stage ``s - 1``'s warehouse; stride-1 downsample convs and the first 1x1
    conv of a Bottleneck network stay plain. Module names, ``out_indices``,
    ``frozen_stages`` (which also freezes the frozen stages' warehouses),
    ``norm_eval`` and ``with_cp`` are those of MMPretrain's ``ResNet``, so
    every non-KW checkpoint key and the FPN contract are unchanged.

    ASCII view of stage ``s`` (``W_s`` = warehouse of stage ``s``)::

        x ──> conv1 [W_{s-1}] ─> conv2 [W_s] (─> conv3 [W_s]) ─> + ─> ...
         └──> downsample conv [W_{s-1}] ─────────────────────────┘

    Args:
        depth (int): Network depth, from {18, 34, 50, 101, 152}.
        budget (float): Parameter budget ``b`` of every warehouse (1/4, 1/2,
            1, 2, 4 in the paper). Defaults to 1.
        attention_init (bool): Use the attention initialisation (temperature
            1 and the initial assignment), for training from scratch with a
            temperature schedule. ``False`` pins the temperature to 0, for
            fine-tuning a pretrained KW model. Defaults to True.
        reduction (float): Attention hidden ratio. Defaults to 0.0625.
        cell_ratio (float, optional): Cell channels as a fraction of the
            channel gcd; ``None`` picks 1 for ``b >= 1`` and 0.5 below.
            Defaults to None.
        nonlocal_basis_ratio (float): Below 1 enables the attention's
            non-local basis mapping (the official ResNet50 ``b = 1/2`` model
            uses 0.0625). Defaults to 1.
        zero_init_residual (bool): Zero-init the last norm of each block.
            The official models do not. Defaults to False.
        attention_norm_cfg (dict, optional): Norm of the attentions' hidden
            layer; None picks the official ``BN1d``, or ``SyncBN`` when
            ``norm_cfg`` is SyncBN. Defaults to None.
        **kwargs: Other arguments of MMPretrain's ``ResNet``.

    Example:
        >>> import torch
        >>> from mmkw.models import KWResNet
        >>> self = KWResNet(depth=18, out_indices=(0, 1, 2, 3))
        >>> self.eval()
        >>> inputs = torch.rand(1, 3, 64, 64)
        >>> for out in self.forward(inputs):
        ...     print(tuple(out.shape))
        (1, 64, 16, 16)
        (1, 128, 8, 8)
        (1, 256, 4, 4)
        (1, 512, 2, 2)
    """

    def __init__(self,
                 depth: int,
                 budget: float = 1.0,
                 attention_init: bool = True,
                 reduction: float = 0.0625,
                 cell_ratio: Optional[float] = None,
                 nonlocal_basis_ratio: float = 1.0,
                 zero_init_residual: bool = False,
                 num_stages: int = 4,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 attention_norm_cfg: Optional[dict] = None,
                 **kwargs):
        if depth not in self.arch_settings:
            raise ValueError(f'depth must be one of '
                             f'{sorted(self.arch_settings)}, got {depth!r}')
        if num_stages not in (1, 2, 3, 4):
            raise ValueError(f'num_stages must be 1-4, got {num_stages!r}')
        # Checked here, not left to ResNet's asserts (gone under python -O).
        if kwargs.get('style', 'pytorch') not in ('pytorch', 'caffe'):
            raise ValueError(f'style must be "pytorch" or "caffe", got '
                             f'{kwargs["style"]!r}')
        for key in ('strides', 'dilations'):
            if key in kwargs and len(kwargs[key]) != num_stages:
                raise ValueError(f'{key} needs one value per stage '
                                 f'({num_stages}), got {kwargs[key]!r}')
        out_indices = check_out_indices(out_indices, num_stages)
        check_frozen_stages(frozen_stages, num_stages)
        warehouse_manager = WarehouseManager(
            budget=budget,
            cell_ratio=cell_ratio,
            reduction=reduction,
            nonlocal_basis_ratio=nonlocal_basis_ratio,
            norm_layer=attention_norm_layer(attention_norm_cfg,
                                            kwargs.get('norm_cfg')))
        super().__init__(
            depth,
            num_stages=num_stages,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            zero_init_residual=zero_init_residual,
            **kwargs)
        self.budget = budget
        self.attention_init = attention_init
        self.convert_to_kw(warehouse_manager, attention_init)

    def kw_layout(self) -> KWLayout:
        layout = KWLayout()
        for stage, name in enumerate(self.res_layers):
            own = layout.warehouse(f'stage{stage}')
            previous = f'stage{max(stage - 1, 0)}'
            for j, block in enumerate(getattr(self, name)):
                convs = ['conv1', 'conv2']
                if isinstance(block, Bottleneck):
                    convs.append('conv3')
                for conv in convs:
                    layout.assign(f'{name}.{j}.{conv}', own)
                if j > 0:
                    continue
                # The first block hands over from the previous stage's
                # warehouse.
                first = None if isinstance(block, Bottleneck) and stage == 0 \
                    else previous
                layout.assign(f'{name}.0.conv1', first)
                if block.downsample is not None:
                    idx = [isinstance(m, nn.Conv2d)
                           for m in block.downsample].index(True)
                    layout.assign(
                        f'{name}.0.downsample.{idx}',
                        None if self.strides[stage] == 1 else previous)
        return layout

    def frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        stem = [self.stem] if self.deep_stem else [self.conv1]
        return stem + [
            getattr(self, f'layer{i}')
            for i in range(1, self.frozen_stages + 1)
        ]
