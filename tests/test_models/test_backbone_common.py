"""What every KW backbone shares with ``nn.Module``."""
import pytest
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

import mmkw  # noqa: F401  (registers the KW backbones)
from mmkw.cnn import KWAttention, KWConv2d

BACKBONES = [
    dict(type='KWResNet', depth=18, base_channels=8, stem_channels=8),
    dict(type='KWMobileNetV2', widen_factor=0.5),
    dict(
        type='KWConvNeXt',
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


OUT_INDICES = {'KWResNet': 4, 'KWMobileNetV2': 8, 'KWConvNeXt': 4}


@pytest.mark.parametrize('cfg', BACKBONES, ids=lambda c: c['type'])
def test_out_indices_take_any_sequence(cfg):
    """Upstream accepts a range (or any sequence), so must we."""
    count = OUT_INDICES[cfg['type']]
    backbone = MODELS.build(dict(cfg, out_indices=range(count))).eval()
    with torch.no_grad():
        assert len(backbone(torch.rand(1, 3, 64, 64))) == count


@pytest.mark.parametrize('cfg', BACKBONES, ids=lambda c: c['type'])
def test_trains_on_a_batch_of_one(cfg):
    """One image per GPU (detection without norm_eval, fine-tuning): the
    attention's batch norm uses its running statistics for a single sample
    instead of failing, and leaves them unchanged."""
    torch.manual_seed(0)
    backbone = MODELS.build(dict(cfg, out_indices=(0, ))).train()
    attentions = [m for m in backbone.modules() if isinstance(m, KWAttention)]
    before = [getattr(a.norm1, 'running_mean', None) for a in attentions]
    before = [None if b is None else b.clone() for b in before]
    out = backbone(torch.rand(1, 3, 64, 64))[0]
    out.square().mean().backward()
    assert all(
        torch.isfinite(p.grad).all() for p in backbone.parameters()
        if p.grad is not None)
    for attention, mean in zip(attentions, before):
        if mean is not None:
            torch.testing.assert_close(attention.norm1.running_mean, mean)
    # With two samples the batch statistics are used (and updated).
    backbone(torch.rand(2, 3, 64, 64))
    if before[0] is not None:
        assert not torch.equal(attentions[0].norm1.running_mean, before[0])


def test_single_sample_normalisation_is_the_eval_one():
    attention = KWAttention(32, 4, 6, [0, 1, 2, 3])
    attention.norm1.running_mean.uniform_(-1, 1)
    attention.norm1.running_var.uniform_(0.5, 2)
    x = torch.rand(1, 32, 5, 5)
    expected = attention.eval()(x)
    torch.testing.assert_close(attention.train()(x), expected)


@pytest.mark.parametrize('cfg', BACKBONES, ids=lambda c: c['type'])
def test_attention_norm_follows_the_config(cfg):
    from mmcv.cnn import build_norm_layer
    official = nn.LayerNorm if cfg['type'] == 'KWConvNeXt' else \
        nn.BatchNorm1d

    def norms(backbone):
        return {
            type(m.norm1)
            for m in backbone.modules() if isinstance(m, KWAttention)
        }

    assert norms(MODELS.build(cfg)) == {official}
    gn = dict(type='GN', num_groups=1)
    assert norms(MODELS.build(dict(cfg, attention_norm_cfg=gn))) == \
        {nn.GroupNorm}
    if cfg['type'] != 'KWConvNeXt':  # a GN backbone: GN attentions
        assert norms(
            MODELS.build(dict(cfg,
                              norm_cfg=dict(type='GN',
                                            num_groups=4)))) == {nn.GroupNorm}
    if cfg['type'] != 'KWConvNeXt':  # ConvNeXt has no norm_cfg of BNs
        sync = MODELS.build(dict(cfg, norm_cfg=dict(type='SyncBN')))
        assert norms(sync) == {
            type(build_norm_layer(dict(type='SyncBN'), 4)[1])
        }
    with pytest.raises(ValueError, match="attention_norm_cfg must be .*'BN'"):
        MODELS.build(dict(cfg, attention_norm_cfg='BN'))


def test_convnext_accepts_the_mode_it_runs():
    cfg = dict(BACKBONES[2], linear_pw_conv=False)
    block = MODELS.build(cfg).stages[0][0]
    assert isinstance(block.pointwise_conv1, KWConv2d)


def test_a_kw_backbone_must_declare_its_layout():
    from mmpretrain.models import ResNet

    from mmkw.models.backbones.base import KWBackboneMixin

    class NoLayout(KWBackboneMixin, ResNet):
        pass

    with pytest.raises(TypeError, match='abstract method kw_layout'):
        NoLayout(depth=18)
