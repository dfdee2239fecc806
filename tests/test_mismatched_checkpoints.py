"""A checkpoint that does not fit a KW model is refused, not half-loaded.

MMEngine loads ``init_cfg=dict(type='Pretrained')`` and ``load_from``
non-strictly; without these checks a wrong warehouse would only be logged
and training would go on from random cells.
"""
import pytest
import torch
from mmpretrain.models import ResNet
from mmpretrain.registry import MODELS

import mmkw  # noqa: F401  (registers KWResNet)

TINY = dict(depth=18, base_channels=8, stem_channels=8)


def _save(tmp_path, name, state, prefix='backbone.'):
    path = tmp_path / name
    torch.save({'state_dict': {prefix + k: v for k, v in state.items()}},
               path)
    return str(path)


def _pretrained(path, **kwargs):
    cfg = dict(type='KWResNet', **TINY, **kwargs)
    cfg['init_cfg'] = dict(type='Pretrained', checkpoint=path,
                           prefix='backbone.')
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
    with pytest.raises(ValueError, match=r"'warehouse_manager.weights.stage0'"
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
    with pytest.raises(ValueError,
                       match=r"plain kernel 'layer1.0.conv1.weight' for a KW "
                       r"layer.*plain network's checkpoint"):
        model.init_weights()


def test_strict_load_of_other_budget_names_the_warehouse():
    source = MODELS.build(dict(type='KWResNet', **TINY, budget=0.5))
    model = MODELS.build(dict(type='KWResNet', **TINY))
    with pytest.raises(ValueError, match='another budget or architecture'):
        model.load_state_dict(source.state_dict())
