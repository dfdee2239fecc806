"""A killed run resumes exactly: the random states travel with each
checkpoint, a checkpoint is never half-written under its own name, and the
previous one stays until the next exists."""
import copy
import os
import shutil
import uuid

import pytest
import torch
from kw_tiny import make_image_folder, tiny_classifier_cfg
from mmengine.config import Config

from mmkw.engine import build_runner, checkpoint_saving

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_image_folder(str(tmp_path_factory.mktemp('images')))


def _cfg(work_dir, data_root, max_epochs=3, **kwargs) -> dict:
    """The tiny classifier with randomness that resume must reproduce: a
    random flip (NumPy) and dropout in the KW head (PyTorch)."""
    cfg = tiny_classifier_cfg(
        str(work_dir),
        data_root,
        max_epochs=max_epochs,
        with_val=True,
        **kwargs)
    pipeline = cfg['train_dataloader']['dataset']['pipeline']
    pipeline.insert(1, dict(type='RandomFlip', prob=0.5))
    cfg['train_dataloader']['dataset'] = copy.deepcopy(
        cfg['train_dataloader']['dataset'])
    cfg['model']['head'] = dict(
        type='KWLinearClsHead',
        num_classes=4,
        in_channels=64,
        dropout=0.5,
        loss=dict(type='CrossEntropyLoss'))
    return cfg


def _train(cfg: dict, hooks=True):
    cfg = Config(copy.deepcopy(cfg))
    cfg.experiment_name = f'resume_{uuid.uuid4().hex[:8]}'
    if not hooks:  # MMEngine alone, as before mmkw added the hook
        from mmengine.runner import Runner
        runner = Runner.from_cfg(cfg)
    else:
        runner = build_runner(cfg)
    runner.train()
    return runner


def _weights(path) -> dict:
    return torch.load(
        path, map_location='cpu', weights_only=False)['state_dict']


def _assert_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _resume(data_root, source_ckpt, work_dir, hooks=True) -> dict:
    os.makedirs(work_dir)
    shutil.copy(source_ckpt, work_dir / 'epoch_1.pth')
    cfg = _cfg(
        work_dir,
        data_root,
        resume=True,
        load_from=str(work_dir / 'epoch_1.pth'))
    _train(cfg, hooks)
    return _weights(work_dir / 'epoch_3.pth')


def test_resume_is_bit_identical(tmp_path, data_root):
    _train(_cfg(tmp_path / 'full', data_root))
    full = _weights(tmp_path / 'full' / 'epoch_3.pth')
    assert 'random_states' in torch.load(
        tmp_path / 'full' / 'epoch_1.pth', weights_only=False)
    resumed = _resume(data_root, tmp_path / 'full' / 'epoch_1.pth',
                      tmp_path / 'resumed')
    _assert_identical(full, resumed)


def test_without_the_random_states_resume_differs(tmp_path, data_root):
    """The test above can fail: MMEngine alone re-seeds on resume."""
    _train(_cfg(tmp_path / 'full', data_root), hooks=False)
    full = _weights(tmp_path / 'full' / 'epoch_3.pth')
    resumed = _resume(
        data_root,
        tmp_path / 'full' / 'epoch_1.pth',
        tmp_path / 'resumed',
        hooks=False)
    assert any(not torch.equal(full[k], resumed[k]) for k in full)


def test_kill_while_writing_keeps_the_previous_checkpoint(
        tmp_path, data_root, monkeypatch, load_tool):
    """max_keep_ckpts=1 and a kill while epoch 2 is written: epoch 1 is
    still there and named by last_checkpoint, and --resume finishes the
    run with the weights of an uninterrupted one."""
    cfg = _cfg(tmp_path / 'full', data_root, max_epochs=2)
    cfg['default_hooks']['checkpoint'].update(max_keep_ckpts=1)
    _train(cfg)
    assert sorted(
        p.name for p in (tmp_path / 'full').glob('*.pth')) == ['epoch_2.pth']
    full = _weights(tmp_path / 'full' / 'epoch_2.pth')

    work = tmp_path / 'killed'
    cfg = _cfg(work, data_root, max_epochs=2)
    cfg['default_hooks']['checkpoint'].update(max_keep_ckpts=1)
    replace = os.replace

    def killed_at_epoch_2(src, dst):
        if str(dst).endswith('epoch_2.pth'):
            raise SystemExit('killed while writing epoch_2.pth')
        replace(src, dst)

    monkeypatch.setattr(checkpoint_saving.os, 'replace', killed_at_epoch_2)
    with pytest.raises(SystemExit):
        _train(cfg)
    monkeypatch.undo()
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_1.pth')

    train = load_tool('train')
    resumed = Config(copy.deepcopy(cfg))
    resumed.update(resume=True, load_from=None)
    train.check_resume(resumed)
    _train(resumed.to_dict())
    _assert_identical(full, _weights(work / 'epoch_2.pth'))


@pytest.mark.parametrize('damage', ['deleted', 'truncated'])
def test_resume_falls_back_to_the_newest_readable(tmp_path, damage, load_tool):
    work = tmp_path / 'work'
    work.mkdir()
    for epoch in (1, 2):
        torch.save({'meta': dict(epoch=epoch)}, work / f'epoch_{epoch}.pth')
    last = work / 'epoch_3.pth'
    if damage == 'truncated':
        torch.save({'meta': dict(epoch=3), 'w': torch.zeros(1000)}, last)
        last.write_bytes(last.read_bytes()[:2000])
    (work / 'last_checkpoint').write_text(str(last))
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=None))
    load_tool('train').check_resume(cfg)
    assert cfg.load_from == str(work / 'epoch_2.pth')
    assert cfg.resume is True


def test_resume_with_no_readable_checkpoint_stops(tmp_path, load_tool):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'epoch_1.pth').write_bytes(b'PK\x03\x04 cut short')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=None))
    with pytest.raises(SystemExit, match='epoch_1.pth, which is damaged'):
        load_tool('train').check_resume(cfg)
