"""Checkpoints written by a real MMEngine Runner load back with
``weights_only=True`` for resume, ``load_from`` and ``init_cfg``; anything
else is refused with an error naming the file."""
import copy
import pickle

import numpy as np
import pytest
import torch
from helpers import num_threads
from kw_tiny import make_image_folder, tiny_classifier_cfg, tiny_runner
from mmengine.evaluator import BaseMetric
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import _load_checkpoint
from mmpretrain.registry import METRICS, MODELS

from mmkw.engine import (CheckpointLoadError, load_from_local,
                         safe_checkpoint_globals)

pytestmark = pytest.mark.usefixtures('one_thread')


@METRICS.register_module(force=True)
class NumpyAccuracy(BaseMetric):
    """Top-1 accuracy as a NumPy scalar, as metrics computed with NumPy
    return it (it ends up in the checkpoint as ``best_score``)."""

    def process(self, data_batch, data_samples):
        for s in data_samples:
            self.results.append(
                int(s['pred_label'].item() == s['gt_label'].item()))

    def compute_metrics(self, results):
        return dict(accuracy=np.float64(np.mean(results)))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A Runner checkpoint with message hub, optimizer, scheduler, EMA and a
    NumPy best score, and the config that wrote it."""
    root = tmp_path_factory.mktemp('ckpt')
    data_root = make_image_folder(str(root / 'images'))
    cfg = tiny_classifier_cfg(
        str(root / 'work'), data_root, max_epochs=1, with_val=True)
    cfg['val_evaluator'] = dict(type='NumpyAccuracy')
    cfg['default_hooks']['checkpoint'].update(
        save_best='accuracy', rule='greater')
    cfg['custom_hooks'].append(dict(type='EMAHook'))
    with num_threads(1):
        tiny_runner(cfg).train()
    return cfg, str(root / 'work' / 'epoch_1.pth')


def test_local_scheme_is_mmkw_loader():
    assert CheckpointLoader._get_checkpoint_loader('/a/b.pth') is \
        load_from_local


def test_runner_checkpoint_needs_the_allow_list(trained):
    _, ckpt = trained
    # Plain weights_only loading fails on MMEngine's own checkpoint ...
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt, weights_only=True)
    # ... and every listed global is actually used by it.
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(ckpt))
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe
    # mmkw's HistoryBuffer pickling names no method through getattr.
    assert 'builtins.getattr' not in unsafe
    assert 'numpy._core.multiarray.scalar' in unsafe
    checkpoint = _load_checkpoint(ckpt, map_location='cpu')
    assert {
        'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers',
        'ema_state_dict'
    } <= set(checkpoint)
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert loss.mean() == pytest.approx(loss.data[0].mean())
    best = checkpoint['message_hub']['runtime_info']['best_score']
    assert isinstance(best, np.float64)


def test_allow_list_is_narrow():
    names = {
        entry[1] if isinstance(entry, tuple) else
        f'{entry.__module__}.{entry.__qualname__}'
        for entry in safe_checkpoint_globals()
    }
    assert all(
        name.startswith(('numpy', 'mmengine.logging'))
        for name in names), names
    assert not any('getattr' in name for name in names)
    assert all(e is not getattr for e in safe_checkpoint_globals())
    assert not any(
        isinstance(e, type) and e.__name__ == 'ObjectDType'
        for e in safe_checkpoint_globals())


def test_resume(trained, tmp_path):
    cfg, ckpt = trained
    cfg = copy.deepcopy(cfg)
    cfg.update(work_dir=str(tmp_path), resume=True, load_from=ckpt)
    cfg['train_cfg']['max_epochs'] = 2
    runner = tiny_runner(cfg)
    runner.train()
    assert runner.iter == 8 and runner.epoch == 2


def _state(checkpoint: str) -> dict:
    return torch.load(
        checkpoint, map_location='cpu', weights_only=False)['state_dict']


def _assert_state_equal(model, state: dict, prefix: str = ''):
    own = model.state_dict()
    keys = [k for k in state if k.startswith(prefix)]
    assert keys
    for key in keys:
        torch.testing.assert_close(
            own[key[len(prefix):]], state[key], rtol=0, atol=0, msg=key)


def test_load_from_round_trip(trained, tmp_path):
    cfg, ckpt = trained
    cfg = copy.deepcopy(cfg)
    cfg.update(work_dir=str(tmp_path), load_from=ckpt)
    # save_best needs a training run (MMEngine); validation alone here.
    cfg['default_hooks']['checkpoint'] = dict(type='CheckpointHook')
    # Without EMAHook, which would keep the EMA weights in its own copy.
    cfg['custom_hooks'] = [
        h for h in cfg['custom_hooks'] if h['type'] != 'EMAHook'
    ]
    runner = tiny_runner(cfg)
    metrics = runner.val()
    assert 'accuracy' in metrics
    _assert_state_equal(runner.model, _state(ckpt))


def test_init_cfg_pretrained_round_trip(trained):
    cfg, ckpt = trained
    state = _state(ckpt)
    whole = copy.deepcopy(cfg['model'])
    whole['init_cfg'] = dict(type='Pretrained', checkpoint=ckpt)
    model = MODELS.build(whole)
    model.init_weights()
    _assert_state_equal(model, state)
    # The detection recipe: only the backbone, with prefix='backbone.'.
    backbone = copy.deepcopy(cfg['model']['backbone'])
    backbone['init_cfg'] = dict(
        type='Pretrained', checkpoint=ckpt, prefix='backbone.')
    backbone = MODELS.build(backbone)
    backbone.init_weights()
    _assert_state_equal(backbone, state, prefix='backbone.')


def test_history_buffer_round_trip_keeps_statistics(tmp_path):
    buffer = HistoryBuffer()
    for value in (1.0, 3.0):
        buffer.update(value)
    path = tmp_path / 'hub.pth'
    torch.save({'loss': buffer}, path)
    assert 'builtins.getattr' not in \
        torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    loaded = load_from_local(str(path))['loss']
    assert loaded.mean() == 2.0 and loaded.statistics('max') == 3.0
    assert loaded.statistics('current') == 3.0


def test_mmengine_pickled_history_buffer_refused_with_advice(
        tmp_path, monkeypatch):
    # A file written by MMEngine without mmkw: its HistoryBuffer carries the
    # built-in statistics as getattr(HistoryBuffer, 'min') and so on.
    from mmkw.engine import checkpoint as mmkw_checkpoint
    monkeypatch.setattr(HistoryBuffer, '__getstate__',
                        mmkw_checkpoint._mmengine_getstate)
    buffer = HistoryBuffer()
    buffer.update(1.0)
    path = tmp_path / 'plain_mmengine.pth'
    torch.save({'message_hub': {'log_scalars': {'loss': buffer}}}, path)
    monkeypatch.undo()
    with pytest.raises(CheckpointLoadError, match='getattr') as info:
        load_from_local(str(path))
    assert 'plain_mmengine.pth' in str(info.value)
    assert 'weights_only=False' in str(info.value)


class _Opaque:
    """Not allow-listed."""


@pytest.mark.parametrize(
    'payload,match',
    [
        ({
            'x': _Opaque()
        }, '_Opaque'),
        # A method reached through getattr (HistoryBuffer.update is not one of
        # its statistics).
        ({
            'x': HistoryBuffer.update
        }, 'getattr'),
        ({
            'x': np.array(['a'], dtype=object)
        }, 'GLOBAL numpy.dtypes.ObjectDType'),
    ])
def test_disallowed_objects_refused(tmp_path, payload, match):
    path = tmp_path / 'unsafe.pth'
    torch.save(payload, path)
    with pytest.raises(CheckpointLoadError, match=match) as info:
        load_from_local(str(path))
    assert str(path) in str(info.value)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'broken.pth'
    path.write_bytes(b'this is not a checkpoint')
    with pytest.raises(
            CheckpointLoadError,
            match='a text file, not a PyTorch checkpoint') as info:
        load_from_local(str(path))
    assert str(path) in str(info.value)
    # Through init_cfg the same error reaches the user.
    model = MODELS.build(
        dict(
            type='KWResNet',
            depth=18,
            base_channels=8,
            stem_channels=8,
            init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    with pytest.raises(CheckpointLoadError, match='broken.pth'):
        model.init_weights()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.pth'):
        load_from_local(str(tmp_path / 'nothing.pth'))


@pytest.mark.parametrize('kind,expected', [
    ('empty', 'the file is empty, not a checkpoint'),
    ('random', 'not a PyTorch checkpoint (neither a zip archive nor a '
     'pickle)'),
    ('truncated', 'a truncated or damaged PyTorch checkpoint'),
    ('text', 'a text file, not a PyTorch checkpoint'),
])
def test_unreadable_files_say_what_they_are(tmp_path, kind, expected):
    """One taxonomy for every loader (the converter says the same), and no
    advice to load something that is not a checkpoint unsafely."""
    path = tmp_path / f'{kind}.pth'
    if kind == 'empty':
        path.touch()
    elif kind == 'random':
        path.write_bytes(
            bytes(
                np.random.default_rng(0).integers(
                    0, 256, 4096, dtype=np.uint8)))
    elif kind == 'truncated':
        torch.save({'state_dict': {
            'w': torch.zeros(64, 64)
        }}, tmp_path / 'full.pth')
        path.write_bytes((tmp_path / 'full.pth').read_bytes()[:9000])
    else:
        path.write_text('weights: none\n')
    with pytest.raises(CheckpointLoadError) as info:
        load_from_local(str(path))
    message = str(info.value)
    assert expected in message and str(path) in message
    assert 'weights_only=False' not in message
    assert '\n' not in message


class _Runs:
    """Unpickling it with ``weights_only=False`` would call ``os.system``."""

    def __reduce__(self):
        import os
        return os.system, ('true', )


@pytest.mark.parametrize('zip_format', [True, False])
def test_refusal_names_the_blocked_object(tmp_path, zip_format):
    path = tmp_path / 'runs_code.pth'
    torch.save({
        'state_dict': {},
        'meta': _Runs()
    },
               path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointLoadError) as info:
        load_from_local(str(path))
    message = str(info.value)
    assert str(path) in message
    assert 'GLOBAL posix.system' in message and 'refused unread' in message
