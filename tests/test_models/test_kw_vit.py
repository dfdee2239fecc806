"""KW-DeiT (paper Table 11): KWVisionTransformer and its configs."""
import math

import pytest
import torch
import torch.nn as nn
from helpers import CONFIG_DIR
from kw_tiny import make_image_folder, train_on_image_folder
from mmengine.config import Config
from mmpretrain.registry import MODELS

import mmkw
from mmkw.cnn import KWLinear
from mmkw.models import KWVisionTransformer, build_model_from_config
from mmkw.models.backbones.kw_vit import SplitQKV

# config: (our count, the paper's)
COUNTS = {
    'kw1x-deit-tiny_4xb256_in1k.py': (6_393_052, 6.39e6),
    'kw4x-deit-tiny_4xb256_in1k.py': (18_796_852, 20.44e6),
    'kw1x-deit-small_4xb256_in1k.py': (24_335_548, 24.36e6),
    'kw3d4x-deit-small_4xb256_in1k.py': (19_242_844, 19.23e6),
}


@pytest.mark.parametrize('config', sorted(COUNTS))
def test_parameter_counts(config):
    """The README's counts; three of four within 0.1% of the paper's."""
    model = build_model_from_config(CONFIG_DIR / config, device='meta')
    count = sum(p.numel() for p in model.parameters())
    ours, paper = COUNTS[config]
    assert count == ours
    assert abs(count - paper) / paper < (0.1 if '4x' in config else 0.002)


def test_layout_value_and_mlp_only():
    vit = KWVisionTransformer(arch='deit-tiny', img_size=32, patch_size=16)
    block = vit.layers[7]
    assert isinstance(block.attn.qkv.v, KWLinear)
    assert isinstance(block.attn.qkv.qk, nn.Linear)  # query and key static
    assert isinstance(block.attn.proj, nn.Linear)
    assert isinstance(block.ffn.layers[0][0], KWLinear)
    assert isinstance(block.ffn.layers[1], KWLinear)
    names = [wh.name for wh in vit.plan.warehouses]
    assert names == [
        'group0_value', 'group0_mlp', 'group1_value', 'group1_mlp'
    ]
    assert block.attn.qkv.v.warehouse == 'group1_value'
    # The attention pools over every token (class token included).
    x = torch.rand(2, 5, 192)
    pooled = block.attn.qkv.v.attention(x.transpose(1, 2)).alpha
    assert pooled.shape[0] == 2 * vit.plan.layer('layers.7.attn.qkv.v') \
        .num_mixtures


def test_split_qkv_is_the_fused_projection():
    fused = nn.Linear(8, 24)
    split = SplitQKV(fused)
    x = torch.rand(3, 5, 8)
    torch.testing.assert_close(split(x), fused(x))
    with pytest.raises(ValueError, match='fused qkv projection'):
        SplitQKV(nn.Linear(8, 16))


def test_frozen_stages_freeze_their_warehouses():
    vit = KWVisionTransformer(
        arch='deit-tiny', img_size=32, patch_size=16, frozen_stages=2)
    weights = vit.warehouse_manager.weights
    assert not weights['group0_value'].requires_grad
    assert not weights['group0_mlp'].requires_grad
    assert weights['group1_mlp'].requires_grad
    # frozen_stages=-1 (the default) freezes nothing, embeddings included.
    vit = KWVisionTransformer(arch='deit-tiny', img_size=32, patch_size=16)
    assert all(p.requires_grad for p in vit.parameters())


@pytest.mark.parametrize('kwargs,match', [
    (dict(blocks_per_warehouse=0), 'blocks_per_warehouse must be'),
    (dict(budget=dict(qk=1.0)), 'budget keys must be'),
    (dict(budget=dict(value=-1.0)),
     r"budget\['value'\] must be a positive number"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KWVisionTransformer(
            arch='deit-tiny', img_size=32, patch_size=16, **kwargs)


@pytest.mark.parametrize('config', sorted(COUNTS))
def test_config_trains(config, tmp_path, one_thread):
    cfg = Config.fromfile(CONFIG_DIR / config)
    assert [h['type'] for h in cfg.custom_hooks] == ['KWTemperatureHook']
    assert cfg.model.backbone.type == 'KWVisionTransformer'
    cfg.model.backbone.img_size = 32
    cfg.model.train_cfg = None  # no mixup/cutmix on 4 classes of 2 images
    cfg.model.data_preprocessor = dict(num_classes=4)
    data = make_image_folder(str(tmp_path / 'data'), per_class=2, size=32)
    runner = train_on_image_folder(cfg, data, str(tmp_path / 'work'))
    assert mmkw.get_temperature(runner.model) == 0.0
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 2 and all(map(math.isfinite, losses))
    assert MODELS.get('KWVisionTransformer') is KWVisionTransformer
