"""tools/test.py and load_from refuse a checkpoint that leaves most of the
model uninitialised, instead of scoring (or training) random weights."""
import copy

import pytest
import torch
from kw_tiny import make_image_folder, tiny_classifier_cfg
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mmkw.engine import build_runner, checkpoint_coverage

pytestmark = pytest.mark.usefixtures('one_thread')

PLAIN = dict(type='ResNet', depth=18, base_channels=8, stem_channels=8)


@pytest.fixture
def config(tmp_path):
    """A tiny classifier config file with a plain backbone (the check is
    for any model, not only KW ones) and a test split."""
    data_root = make_image_folder(str(tmp_path / 'images'), per_class=2)
    cfg = tiny_classifier_cfg(
        str(tmp_path / 'work'),
        data_root,
        max_epochs=1,
        with_val=True,
        temperature_epochs=None)
    cfg['model']['backbone'] = PLAIN
    cfg['custom_hooks'] = []
    cfg.update(
        test_dataloader=cfg['val_dataloader'],
        test_cfg=dict(),
        test_evaluator=cfg['val_evaluator'])
    path = tmp_path / 'tiny_config.py'
    Config(cfg).dump(str(path))
    return cfg, str(path)


def _save(tmp_path, name, state):
    path = tmp_path / name
    torch.save({'state_dict': state}, path)
    return str(path)


def test_test_tool_refuses_a_bare_backbone_checkpoint(config, tmp_path,
                                                      load_tool):
    _, path = config
    backbone = MODELS.build(PLAIN).state_dict()  # keys without 'backbone.'
    ckpt = _save(tmp_path, 'backbone_only.pth', backbone)
    with pytest.raises(ValueError) as info:
        load_tool('test').main(
            [path, ckpt, '--work-dir',
             str(tmp_path / 'test')])
    message = str(info.value)
    assert ckpt in message and 'fills 0.0% of the model' in message
    assert "keys are those of the model's 'backbone'" in message


def test_test_tool_evaluates_a_matching_checkpoint(config, tmp_path,
                                                   load_tool):
    cfg, path = config
    model = MODELS.build(cfg['model'])
    ckpt = _save(tmp_path, 'whole.pth', model.state_dict())
    load_tool('test').main([path, ckpt, '--work-dir', str(tmp_path / 'test')])


def test_load_from_of_another_model_refused(config, tmp_path):
    cfg, _ = config
    other = MODELS.build(dict(type='ResNet', depth=18)).state_dict()
    cfg = copy.deepcopy(cfg)
    cfg['load_from'] = _save(tmp_path, 'other.pth', {
        'backbone.' + k: v
        for k, v in other.items()
    })
    runner = build_runner(Config(cfg))
    with pytest.raises(ValueError, match='fills 0.0% of the model'):
        runner.train()
    assert runner.iter == 0


def test_fine_tuning_with_a_new_head_loads(config, tmp_path):
    """Another number of classes: the head does not match, the rest does,
    and MMEngine's non-strict loading goes on as usual."""
    cfg, _ = config
    source = copy.deepcopy(cfg['model'])
    source['head']['num_classes'] = 10
    state = MODELS.build(source).state_dict()
    fraction, missing, _ = checkpoint_coverage(
        MODELS.build(cfg['model']).state_dict(), state)
    assert 0.5 < fraction < 1 and missing == ['head.fc.weight', 'head.fc.bias']
    cfg = copy.deepcopy(cfg)
    cfg['load_from'] = _save(tmp_path, 'ten_classes.pth', state)
    build_runner(Config(cfg)).train()
