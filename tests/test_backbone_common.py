"""What every KW backbone shares with ``nn.Module``."""
import pytest
import torch
from mmpretrain.registry import MODELS

import mmkw  # noqa: F401  (registers the KW backbones)

BACKBONES = [
    dict(type='KWResNet', depth=18, base_channels=8, stem_channels=8),
    dict(type='KWMobileNetV2', widen_factor=0.5),
    dict(type='KWConvNeXt',
         arch=dict(depths=[1, 1, 2, 1], channels=[16, 32, 64, 128])),
]


@pytest.mark.parametrize('cfg', BACKBONES, ids=lambda c: c['type'])
def test_train_and_eval_return_the_backbone(cfg):
    backbone = MODELS.build(cfg)
    assert backbone.eval() is backbone and not backbone.training
    assert backbone.train() is backbone and backbone.training
    with torch.no_grad():
        outs = backbone.eval()(torch.rand(2, 3, 64, 64))
    assert all(torch.isfinite(out).all() for out in outs)
