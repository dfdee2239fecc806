"""Errors that say what to do: missing data and checkpoints before the
runner is built, files the converter cannot convert, absurd budgets, and
``--resume`` with nothing to resume."""
import datetime
import logging
import os

import pytest
import torch
from helpers import CONFIG_DIR
from kw_tiny import make_image_folder, tiny_classifier_cfg
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MMLogger
from mmpretrain.registry import MODELS

from mmkw.cnn import MAX_WAREHOUSE_PARAMS
from mmkw.engine import find_missing_inputs


def _exit_message(excinfo) -> str:
    assert isinstance(excinfo.value.code, str), excinfo.value.code
    return excinfo.value.code


def test_mission_command_on_a_fresh_machine_lists_all_that_is_missing(
        tmp_path, monkeypatch, load_tool):
    monkeypatch.chdir(tmp_path)
    config = str(CONFIG_DIR / 'mask-rcnn_kw-r50_1x_coco.py')
    with pytest.raises(SystemExit) as excinfo:
        load_tool('train').main([config])
    message = _exit_message(excinfo)
    for needed in ('data/coco/annotations/instances_train2017.json',
                   'data/coco/train2017/',
                   'data/coco/annotations/instances_val2017.json',
                   'checkpoint checkpoints/kw1x-resnet50_in1k.pth'):
        assert needed in message
    # Where COCO goes, and both ways to get the pretrained backbone.
    assert 'COCO goes where MMDetection expects it' in message
    assert 'kw_official_to_mmkw.py DOWNLOADED.pth ' \
        'checkpoints/kw1x-resnet50_in1k.pth' in message
    # Where the authors released it (the metafile's Converted From).
    assert 'released kw1x-resnet50 checkpoint (https://drive.google.com/' \
        'file/d/1lA155EYydHae_m__hk86tX_m9S0i85i8/view' in message
    assert 'tools/train.py ' + str(
        CONFIG_DIR / 'kw1x-resnet50_8xb32_in1k.py') in message
    assert not (tmp_path / 'work_dirs').exists()  # no runner was built

    # Once the data exist, only the checkpoint is left.
    for d in ('data/coco/annotations', 'data/coco/train2017',
              'data/coco/val2017'):
        os.makedirs(d)
    for split in ('train', 'val'):
        open(f'data/coco/annotations/instances_{split}2017.json', 'w').close()
    with pytest.raises(SystemExit) as excinfo:
        load_tool('train').main([config])
    message = _exit_message(excinfo)
    assert 'data/coco' not in message.split('\n', 1)[1].split('For ')[0]
    assert 'checkpoint checkpoints/kw1x-resnet50_in1k.pth' in message


def test_test_tool_checks_its_data_and_checkpoint(tmp_path, monkeypatch,
                                                  load_tool):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as excinfo:
        load_tool('test').main(
            [str(CONFIG_DIR / 'kw1x-resnet18_8xb32_in1k.py'), 'model.pth'])
    message = _exit_message(excinfo)
    assert 'image directory data/imagenet/val (test_dataloader, ' \
        'ImageNet)' in message
    assert 'checkpoint model.pth' in message
    assert 'ImageNet goes where MMPretrain expects it' in message
    # Testing does not initialise weights: init_cfg checkpoints are not
    # needed then.
    cfg = Config.fromfile(CONFIG_DIR / 'mask-rcnn_kw-r50_1x_coco.py')
    missing, _ = find_missing_inputs(cfg, ('test', ))
    assert not any(line.startswith('checkpoint') for line in missing)


def test_nothing_is_reported_when_everything_exists(tmp_path):
    data = make_image_folder(str(tmp_path / 'data'))
    checkpoint = tmp_path / 'init.pth'
    checkpoint.touch()
    cfg = tiny_classifier_cfg(str(tmp_path / 'work'), data, with_val=True)
    cfg['model']['backbone']['init_cfg'] = dict(
        type='Pretrained', checkpoint=str(checkpoint))
    assert find_missing_inputs(Config(cfg), ('train', 'val')) == ([], [])
    cfg['model']['backbone']['init_cfg']['checkpoint'] = str(tmp_path /
                                                             'other.pth')
    cfg['train_dataloader']['dataset']['data_root'] = str(tmp_path / 'no')
    missing, _ = find_missing_inputs(Config(cfg), ('train', 'val'))
    assert missing == [
        f'data root {tmp_path / "no"} ({loader}, CustomDataset)'
        for loader in ('train_dataloader', 'val_dataloader')
    ] + [f'checkpoint {tmp_path / "other.pth"}']
    with pytest.raises(ValueError, match="phases must be among .*'tain'"):
        find_missing_inputs(Config(cfg), ('tain', ))


def _mmkw_runner_checkpoint(path):
    """What MMEngine's Runner writes for an mmkw model (message hub
    included)."""
    model = MODELS.build(dict(type='mmpretrain.KWResNet', depth=18))
    torch.save(
        dict(
            meta=dict(epoch=1),
            state_dict=model.state_dict(),
            message_hub=dict(
                log_scalars={'train/loss': HistoryBuffer([1.0, 0.5], [1, 1])
                             })), path)


@pytest.mark.parametrize('kind,expected', [
    ('empty', 'the file is empty, not a checkpoint'),
    ('text', 'a text file, not a PyTorch checkpoint'),
    ('random', 'not a PyTorch checkpoint (neither a zip archive nor a '
     'pickle)'),
    ('truncated', 'a truncated or damaged PyTorch checkpoint'),
    ('mmkw', 'is already an mmkw checkpoint'),
    ('mmkw_runner', 'is already an mmkw checkpoint'),
    ('missing', 'not found'),
])
def test_converter_says_what_the_file_is(kind, expected, tmp_path, load_tool,
                                         capsys):
    path = tmp_path / f'{kind}.pth'
    if kind == 'text':
        path.write_text('{"model": "not a checkpoint"}\n')
    elif kind == 'empty':
        path.touch()
    elif kind == 'random':
        path.write_bytes(
            bytes(torch.randint(0, 256, (4096, ), dtype=torch.uint8)))
    elif kind == 'truncated':
        full = tmp_path / 'full.pth'
        torch.save({'model': {'conv1.weight': torch.zeros(64, 3, 7, 7)}}, full)
        path.write_bytes(full.read_bytes()[:20000])
    elif kind == 'mmkw':
        model = MODELS.build(dict(type='mmpretrain.KWResNet', depth=18))
        torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    elif kind == 'mmkw_runner':
        _mmkw_runner_checkpoint(path)
    code = load_tool('model_converters/kw_official_to_mmkw').main(
        [str(path), str(tmp_path / 'out.pth')])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count('\n') == 0, err  # one line, no traceback
    assert str(path) in err and expected in err


def test_refused_objects_are_named_not_run(tmp_path, load_tool, capsys):
    path = tmp_path / 'evil.pth'
    torch.save({'model': {}, 'args': datetime.date(2024, 7, 21)}, path)
    code = load_tool('model_converters/kw_official_to_mmkw').main(
        [str(path), str(tmp_path / 'out.pth')])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count('\n') == 0, err
    assert 'refused unread' in err and 'datetime.date' in err


def test_absurd_budget_is_refused_before_allocating():
    with pytest.raises(ValueError) as excinfo:
        MODELS.build(dict(type='mmpretrain.KWResNet', depth=18, budget=1e4))
    message = str(excinfo.value)
    assert 'would need 111,575,040,000 warehouse parameters (446.3 GB' \
        in message
    assert f'{MAX_WAREHOUSE_PARAMS:,}' in message
    # The paper's largest model stays far below the cap.
    model = MODELS.build(
        dict(type='mmpretrain.KWResNet', depth=50, budget=4.0))
    assert sum(p.numel() for p in model.parameters()) < \
        MAX_WAREHOUSE_PARAMS / 10


@pytest.mark.parametrize('budget', [0.3, 0.75])
def test_budgets_without_an_initial_assignment_are_refused(budget):
    with pytest.raises(
            ValueError,
            match=f'budget {budget} of warehouse '
            "'stage0' .* e.g. 1/4, 1/2, 1, 2 or 4"):
        MODELS.build(dict(type='mmpretrain.KWResNet', depth=18, budget=budget))


class _Records(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_resume_with_nothing_to_resume_says_so(tmp_path, load_tool):
    train = load_tool('train')
    cfg = Config(
        dict(work_dir=str(tmp_path / 'empty'), resume=True, load_from=None))
    records = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        train.check_resume(cfg)
    finally:
        logger.removeHandler(records)
    assert records.messages == [
        f'--resume: no checkpoint to resume in {tmp_path / "empty"} (no '
        f'last_checkpoint file there); training starts from scratch'
    ]
    assert cfg.resume is False
    # With a checkpoint there, --resume resumes.
    work = tmp_path / 'work'
    work.mkdir()
    torch.save({'meta': {}}, work / 'epoch_1.pth')
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=None))
    train.check_resume(cfg)
    assert cfg.resume is True and cfg.load_from is None
