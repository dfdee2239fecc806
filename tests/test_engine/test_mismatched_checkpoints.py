"""A checkpoint that does not fit a KW model is refused, not half-loaded.

MMEngine loads ``init_cfg=dict(type='Pretrained')`` and ``load_from``
non-strictly; without these checks a wrong warehouse would only be logged
and training would go on from random cells.
"""
import pytest
import torch
from mmpretrain.models import ResNet
from mmpretrain.registry import MODELS

import mmkw  # registers KWResNet

TINY = dict(depth=18, base_channels=8, stem_channels=8)


def _save(tmp_path, name, state, prefix='backbone.'):
    path = tmp_path / name
    torch.save({'state_dict': {prefix + k: v for k, v in state.items()}}, path)
    return str(path)


def _pretrained(path, **kwargs):
    cfg = dict(type='KWResNet', **TINY, **kwargs)
    cfg['init_cfg'] = dict(
        type='Pretrained', checkpoint=path, prefix='backbone.')
    return MODELS.build(cfg)


def test_matching_checkpoint_loads(tmp_path):
    source = MODELS.build(dict(type='KWResNet', **TINY))
    path = _save(tmp_path, 'kw1x.pth', source.state_dict())
    model = _pretrained(path)
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_other_budget_refused(tmp_path):
    source = MODELS.build(dict(type='KWResNet', **TINY))
    path = _save(tmp_path, 'kw1x.pth', source.state_dict())
    model = _pretrained(path, budget=2.0)
    with pytest.raises(
            ValueError,
            match=r"'warehouse_manager.weights.stage0'"
            r".*\[56, 8, 8, 1, 1\].*\[112, 8, 8, 1, 1\]"):
        model.init_weights()


def test_missing_warehouse_refused(tmp_path):
    state = MODELS.build(dict(type='KWResNet', **TINY)).state_dict()
    del state['warehouse_manager.weights.stage3']
    model = _pretrained(_save(tmp_path, 'partial.pth', state))
    with pytest.raises(ValueError, match=r'lacks 1 of .* 4 warehouses'):
        model.init_weights()


def test_plain_network_checkpoint_refused(tmp_path):
    plain = ResNet(**TINY).state_dict()
    model = _pretrained(_save(tmp_path, 'plain.pth', plain))
    with pytest.raises(
            ValueError,
            match=r"plain kernel 'layer1.0.conv1.weight' for a KW "
            r"layer.*plain network's checkpoint"):
        model.init_weights()


def test_strict_load_of_other_budget_names_the_warehouse():
    source = MODELS.build(dict(type='KWResNet', **TINY, budget=0.5))
    model = MODELS.build(dict(type='KWResNet', **TINY))
    with pytest.raises(ValueError, match='another budget or architecture'):
        model.load_state_dict(source.state_dict())


# A checkpoint that gives a KW model none of its warehouses is refused on
# every loading path, strict or not, with the file and where its keys are.


def test_checkpoint_without_warehouses_refused(tmp_path):
    state = MODELS.build(dict(type='KWResNet', **TINY)).state_dict()
    for key in [k for k in state if k.startswith('warehouse_manager.')]:
        del state[key]
    path = _save(tmp_path, 'no_warehouses.pth', state)
    with pytest.raises(ValueError) as info:
        _pretrained(path).init_weights()
    message = str(info.value)
    assert path in message and 'none of its 4 warehouses' in message
    assert "'warehouse_manager.weights.stage0'" in message  # expected keys
    assert f"its {len(state)} keys start with 'backbone.'" in message


def test_empty_checkpoint_refused_non_strict(tmp_path):
    from mmengine.runner.checkpoint import load_checkpoint
    path = tmp_path / 'empty_state.pth'
    torch.save({'state_dict': {}}, path)
    model = MODELS.build(dict(type='KWResNet', **TINY))
    with pytest.raises(ValueError, match='holds no weights at all'):
        load_checkpoint(model, str(path), strict=False)
    mmkw.cnn.note_checkpoint_source(None)  # a state dict from no file
    with pytest.raises(
            ValueError, match="no key under "
            "'warehouse_manager.weights.'"):
        model.load_state_dict({}, strict=False)


def test_torchvision_checkpoint_refused_by_kw_model(tmp_path):
    import torchvision
    path = tmp_path / 'resnet18-torchvision.pth'
    torch.save(torchvision.models.resnet18().state_dict(), path)
    from mmengine.runner.checkpoint import load_checkpoint
    model = MODELS.build(dict(type='KWResNet', depth=18))
    with pytest.raises(ValueError, match='plain kernel'):
        load_checkpoint(model, str(path), strict=False)


def test_backbone_checkpoint_under_a_detector_names_the_prefix(tmp_path):
    """A bare KW backbone's file (b=2) loaded into a detector whose
    backbone is b=1: without the check the prefix let it through."""
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import DefaultScope
    from mmengine.runner.checkpoint import load_checkpoint
    backbone = MODELS.build(dict(type='KWResNet', **TINY, budget=2.0))
    path = str(tmp_path / 'bare_backbone.pth')
    torch.save({'state_dict': backbone.state_dict()}, path)
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = DET_MODELS.build(_RETINANET)
    with pytest.raises(ValueError) as info:
        load_checkpoint(detector, path, strict=False)
    message = str(info.value)
    assert path in message
    assert "under 'warehouse_manager.' where this model expects " \
        "'backbone.warehouse_manager.'" in message
    assert "checkpoint of 'backbone' alone" in message


_RETINANET = dict(
    type='RetinaNet',
    backbone=dict(type='KWResNet', **TINY, out_indices=(3, )),
    neck=dict(type='FPN', in_channels=[64], out_channels=16, num_outs=1),
    bbox_head=dict(
        type='RetinaHead',
        num_classes=2,
        in_channels=16,
        feat_channels=16,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=1,
            ratios=[1.0],
            strides=[32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True),
        loss_bbox=dict(type='L1Loss')))


def test_detector_checkpoint_into_bare_backbone_names_the_prefix(tmp_path):
    source = MODELS.build(dict(type='KWResNet', **TINY))
    path = _save(tmp_path, 'detector.pth', source.state_dict())
    model = MODELS.build(
        dict(
            type='KWResNet',
            **TINY,
            init_cfg=dict(type='Pretrained', checkpoint=path)))
    with pytest.raises(ValueError, match=r"prefix='backbone\.'"):
        model.init_weights()


# attention_init=False pins tau = 0 for the model's whole life.


def test_pinned_model_stays_at_zero_after_loading_a_mid_schedule_state():
    source = MODELS.build(dict(type='KWResNet', **TINY))
    mmkw.set_temperature(source, 0.25)  # saved mid-schedule
    model = MODELS.build(dict(type='KWResNet', **TINY, attention_init=False))
    model.load_state_dict(source.state_dict())
    assert mmkw.get_temperature(model) == 0.0
    # An unpinned model takes the checkpoint's temperature.
    free = MODELS.build(dict(type='KWResNet', **TINY))
    free.load_state_dict(source.state_dict())
    assert mmkw.get_temperature(free) == 0.25


def test_pinned_model_stays_at_zero_through_init_cfg(tmp_path):
    source = MODELS.build(dict(type='KWResNet', **TINY))
    mmkw.set_temperature(source, 0.25)
    path = _save(tmp_path, 'mid.pth', source.state_dict())
    model = _pretrained(path, attention_init=False)
    model.init_weights()
    assert mmkw.get_temperature(model) == 0.0


def test_pinned_model_refuses_another_temperature():
    model = MODELS.build(dict(type='KWResNet', **TINY, attention_init=False))
    with pytest.raises(ValueError, match='pinned to 0'):
        mmkw.set_temperature(model, 0.5)
    assert mmkw.set_temperature(model, 0.0) > 0


@pytest.mark.parametrize('value', [0, 1, 'no', None])
def test_attention_init_must_be_a_bool(value):
    with pytest.raises(ValueError, match='attention_init must be True'):
        MODELS.build(dict(type='KWResNet', **TINY, attention_init=value))
