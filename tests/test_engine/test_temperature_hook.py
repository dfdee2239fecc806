"""KWTemperatureHook: schedule, resume, evaluation at tau = 0, EMA."""
import copy
from types import SimpleNamespace

import pytest
import torch
from kw_tiny import (RecordKWHook, make_image_folder, tiny_classifier_cfg,
                     tiny_runner)
from mmengine.runner import Runner

import mmkw
from mmkw.engine import KWTemperatureHook

pytestmark = pytest.mark.usefixtures('one_thread')


def _record(runner) -> RecordKWHook:
    return next(h for h in runner.hooks if isinstance(h, RecordKWHook))


def _run(cfg: dict) -> Runner:
    runner = tiny_runner(cfg)
    runner.train()
    return runner


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_image_folder(str(tmp_path_factory.mktemp('images')))


@pytest.mark.parametrize('bad', [
    dict(),
    dict(epochs=2, iters=10),
    dict(epochs=0),
    dict(iters=-3),
    dict(epochs=1.5),
    dict(epochs=True)
])
def test_arguments_validated(bad):
    with pytest.raises(ValueError, match='got'):
        KWTemperatureHook(**bad)


@pytest.mark.parametrize(
    'kwargs,per_epoch,expected',
    [
        # T = 2 epochs of I = 4: tau = (8 - (iter + 1)) / 8, then 0.
        (dict(epochs=2), 4,
         [7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0, 0, 0]),
        (dict(epochs=1), 3, [2 / 3, 1 / 3, 0, 0]),
        (dict(iters=5), 100, [4 / 5, 3 / 5, 2 / 5, 1 / 5, 0, 0]),
    ])
def test_schedule_values(kwargs, per_epoch, expected):
    hook = KWTemperatureHook(**kwargs)
    runner = SimpleNamespace(train_dataloader=range(per_epoch), iter=0)
    values = []
    for it in range(len(expected)):
        runner.iter = it
        values.append(hook.temperature(runner))
    assert values == pytest.approx(expected, abs=1e-12)


def test_epoch_based_training_follows_schedule(tmp_path, data_root):
    runner = _run(tiny_classifier_cfg(str(tmp_path), data_root))
    rec = _record(runner).train_log
    # 16 images, batch 4: I = 4; T = 2 epochs -> 8 iterations.
    assert [r['iter'] for r in rec] == list(range(8))
    expected = [(8 - (i + 1)) / 8 for i in range(8)]
    assert [r['model'] for r in rec] == pytest.approx(expected)
    assert [r['logged'] for r in rec] == pytest.approx(expected)
    # Every KW layer is set (get_temperature raises if they disagree).
    assert mmkw.get_temperature(runner.model) == pytest.approx(0)


def test_iter_based_training_follows_schedule(tmp_path, data_root):
    cfg = tiny_classifier_cfg(
        str(tmp_path),
        data_root,
        by_epoch=False,
        max_iters=6,
        temperature_epochs=None)
    cfg['custom_hooks'].append(dict(type='KWTemperatureHook', iters=4))
    rec = _record(_run(cfg)).train_log
    assert [r['model']
            for r in rec] == pytest.approx([3 / 4, 2 / 4, 1 / 4, 0, 0, 0])


@pytest.mark.parametrize('by_epoch', [True, False])
def test_resume_continues_schedule_exactly(tmp_path, data_root, by_epoch):
    # Uninterrupted: 3 epochs of 4 iterations (or 12 iterations), tau over 2
    # epochs. Interrupted: stop after 4 iterations, resume from that
    # checkpoint in a fresh runner.
    cfg = tiny_classifier_cfg(
        str(tmp_path / 'full'),
        data_root,
        max_epochs=3,
        by_epoch=by_epoch,
        max_iters=12)
    full = _record(_run(cfg)).train_log

    first = copy.deepcopy(cfg)
    first['work_dir'] = str(tmp_path / 'part')
    if by_epoch:
        first['train_cfg']['max_epochs'] = 1
        ckpt = tmp_path / 'part' / 'epoch_1.pth'
    else:
        first['train_cfg']['max_iters'] = 4
        ckpt = tmp_path / 'part' / 'iter_4.pth'
    _run(first)
    resumed_cfg = copy.deepcopy(cfg)
    resumed_cfg.update(
        work_dir=str(tmp_path / 'part'), resume=True, load_from=str(ckpt))
    resumed = _record(_run(resumed_cfg)).train_log

    assert [r['iter'] for r in resumed] == list(range(4, 12))
    # The first iteration after resuming: same tau, same loss.
    assert resumed[0]['model'] == pytest.approx(full[4]['model'])
    assert resumed[0]['model'] == pytest.approx(3 / 8)
    torch.testing.assert_close(
        resumed[0]['loss'], full[4]['loss'], rtol=1e-5, atol=1e-6)
    assert [r['model']
            for r in resumed] == pytest.approx([r['model'] for r in full[4:]])


def test_validation_at_zero_and_training_tau_restored(tmp_path, data_root):
    runner = _run(
        tiny_classifier_cfg(
            str(tmp_path),
            data_root,
            max_epochs=3,
            temperature_epochs=3,
            with_val=True))
    rec = _record(runner)
    assert rec.val_log and all(v['model'] == 0 for v in rec.val_log)
    # After each validation epoch: the tau of the last training iteration.
    last_of_epoch = [rec.train_log[i]['model'] for i in (3, 7, 11)]
    assert last_of_epoch[:2] == pytest.approx([8 / 12, 4 / 12])
    assert [v['model']
            for v in rec.after_val_log] == pytest.approx(last_of_epoch)


@pytest.mark.parametrize('update_buffers', [False, True])
def test_ema_copy_follows_schedule(tmp_path, data_root, update_buffers):
    cfg = tiny_classifier_cfg(
        str(tmp_path),
        data_root,
        max_epochs=2,
        temperature_epochs=4,
        with_val=True)
    # MMPretrain's EMAHook; evaluate_on_origin re-evaluates the source
    # model inside its after_val_epoch.
    cfg['custom_hooks'].append(
        dict(
            type='EMAHook',
            momentum=0.1,
            update_buffers=update_buffers,
            evaluate_on_origin=True))
    runner = _run(cfg)
    rec = _record(runner)
    # 2 batches per evaluation, EMA and origin, after each of 2 epochs.
    assert len(rec.val_log) == 8
    # Before each iteration both copies get tau, even where the EMA update
    # averages buffers (update_buffers=True).
    taus = [(16 - (i + 1)) / 16 for i in range(8)]
    assert [r['model'] for r in rec.train_log] == pytest.approx(taus)
    assert [r['ema'] for r in rec.train_log] == pytest.approx(taus)
    assert all(v == dict(model=0.0, ema=0.0) for v in rec.val_log)
    assert [v['model']
            for v in rec.after_val_log] == pytest.approx([taus[3], taus[7]])
    # The EMA checkpoint resumes (its ema_state_dict loads too).
    resumed_cfg = copy.deepcopy(cfg)
    resumed_cfg['train_cfg']['max_epochs'] = 3
    resumed_cfg.update(resume=True, load_from=str(tmp_path / 'epoch_2.pth'))
    rec = _record(_run(resumed_cfg))
    assert [r['model'] for r in rec.train_log
            ] == pytest.approx([(16 - (i + 1)) / 16 for i in range(8, 12)])


_PLAIN_HEAD = dict(
    type='LinearClsHead',
    num_classes=4,
    in_channels=64,
    loss=dict(type='CrossEntropyLoss'))


@pytest.mark.parametrize('part,pinned', [
    ('backbone',
     dict(
         type='KWResNet',
         depth=18,
         base_channels=8,
         stem_channels=8,
         attention_init=False)),
    ('backbone',
     dict(
         type='KWConverted',
         attention_init=False,
         input_shape=(3, 32, 32),
         backbone=dict(
             type='ResNet', depth=18, base_channels=8, stem_channels=8))),
    ('head',
     dict(
         type='KWLinearClsHead',
         num_classes=4,
         in_channels=64,
         attention_init=False,
         loss=dict(type='CrossEntropyLoss'))),
])
def test_refuses_models_pinned_at_zero(tmp_path, data_root, part, pinned):
    """Whatever carries the pinned layers (a KW backbone, a converted one,
    the KW head), the hook refuses to anneal them."""
    cfg = tiny_classifier_cfg(str(tmp_path), data_root)
    cfg['model'][part] = pinned
    if part == 'head':
        cfg['model']['backbone'] = dict(
            type='ResNet', depth=18, base_channels=8, stem_channels=8)
    with pytest.raises(ValueError, match='attention_init=False') as info:
        _run(cfg)
    assert f'{part}.warehouse_manager' in str(info.value)
