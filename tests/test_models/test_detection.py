"""Mask R-CNN configs and the demo data.

Every Mask R-CNN config (the six COCO 1x configs and the demo config) is
built by MMEngine's ``Runner`` and runs one real training iteration and a
real bbox + segm evaluation on a few images of the generated demo data.
Only data paths, image scales, batch sizes and the length of the schedule
are overridden; pipelines and model types are those of the configs. The
COCO backbones load a freshly saved KW checkpoint through their
``init_cfg=dict(type='Pretrained', prefix='backbone.')``.
"""
import copy
import filecmp
import json
import os

import cv2
import numpy as np
import pytest
import torch
from helpers import CONFIG_DIR
from mmengine.config import Config
from mmengine.runner import Runner
from pycocotools.coco import COCO

import mmkw  # noqa: F401
from mmkw import get_temperature
from mmkw.datasets import (DEMO_CLASSES, generate_demo_shapes, render_split,
                           shape_polygon)

COCO_CONFIGS = [
    'mask-rcnn_kw-r50_1x_coco.py',
    'mask-rcnn_kw4x-r50_1x_coco.py',
    'mask-rcnn_kw-mobilenet-v2_1x_coco.py',
    'mask-rcnn_kw4x-mobilenet-v2_1x_coco.py',
    'mask-rcnn_kw3d4x-convnext-t_1x_coco.py',
    'mask-rcnn_kw-convnext-t_1x_coco.py',
]
DEMO_CONFIG = CONFIG_DIR / 'demo' / 'mask-rcnn_kw1x-r18_demo-shapes.py'
# Tiny demo data for the runner tests: 64x64 images, small shapes.
TINY = dict(
    num_train=2, num_val=2, img_size=64, min_radius=6.0, max_radius=14.0)


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_shapes')
    generate_demo_shapes(str(root), seed=0, **TINY)
    return root


def _scale_pipeline(pipeline, factor):
    """Scale every ``scale``/``scales``/``crop_size`` in a pipeline, nested
    transforms included; the transform types stay."""

    def scaled(size):
        return tuple(max(8, int(round(v * factor))) for v in size)

    for transform in pipeline:
        if isinstance(transform, (list, tuple)):
            _scale_pipeline(transform, factor)
            continue
        if 'transforms' in transform:
            _scale_pipeline(transform['transforms'], factor)
        if 'scale' in transform:
            transform['scale'] = scaled(transform['scale'])
        if 'scales' in transform:
            transform['scales'] = [scaled(s) for s in transform['scales']]
        if 'crop_size' in transform:
            transform['crop_size'] = scaled(transform['crop_size'])


def _shrink(cfg, data_root, work_dir, factor):
    """Point ``cfg`` at the tiny data and shorten it to one iteration."""
    cfg.work_dir = str(work_dir)
    for split, name in (('train', 'train_dataloader'),
                        ('val', 'val_dataloader'), ('val', 'test_dataloader')):
        loader = cfg[name]
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        dataset = loader.dataset
        dataset.update(
            data_root=str(data_root),
            ann_file=f'annotations/{split}.json',
            data_prefix=dict(img=f'{split}/'),
            metainfo=dict(classes=DEMO_CLASSES))
        _scale_pipeline(dataset.pipeline, factor)
    for name in ('val_evaluator', 'test_evaluator'):
        cfg[name].ann_file = str(data_root / 'annotations' / 'val.json')
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    # The heads predict the demo's classes (the COCO configs have 80).
    cfg.model.roi_head.bbox_head.num_classes = len(DEMO_CLASSES)
    cfg.model.roi_head.mask_head.num_classes = len(DEMO_CLASSES)
    # Keep every prediction so that the evaluation after one iteration
    # really scores boxes and masks.
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=-1, save_last=False)
    cfg.log_level = 'WARNING'
    return cfg


def _save_backbone_checkpoint(backbone_cfg, path):
    """Save a freshly built KW backbone as a detector checkpoint (keys
    prefixed with ``backbone.``) and return its state dict."""
    from mmdet.registry import MODELS
    backbone_cfg = copy.deepcopy(backbone_cfg)
    backbone_cfg.pop('init_cfg', None)
    torch.manual_seed(1234)
    state = MODELS.build(backbone_cfg).state_dict()
    torch.save({'state_dict': {
        f'backbone.{k}': v
        for k, v in state.items()
    }}, path)
    return state


def _val_metrics(runner):
    hub = runner.message_hub
    return {
        key: float(hub.get_scalar(f'val/coco/{key}').current())
        for key in ('bbox_mAP', 'segm_mAP')
    }


@pytest.mark.parametrize('name', COCO_CONFIGS)
def test_coco_config_trains_and_evaluates(name, tiny_data, tmp_path):
    cfg = Config.fromfile(CONFIG_DIR / name)
    # The fine-tuning recipe of the paper, as in the official configs.
    backbone = cfg.model.backbone
    assert backbone.type.startswith('KW')
    assert backbone.attention_init is False
    assert backbone.init_cfg.type == 'Pretrained'
    assert backbone.init_cfg.prefix == 'backbone.'
    assert backbone.init_cfg.checkpoint.startswith('checkpoints/')
    assert not any(h['type'] == 'KWTemperatureHook'
                   for h in cfg.get('custom_hooks', []))
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(
        imports=['mmkw'], allow_failed_imports=False)
    # 1x: lr / 10 after epochs 8 and 11 of 12.
    assert cfg.param_scheduler[-1].milestones == [8, 11]
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert set(cfg.val_evaluator.metric) == {'bbox', 'segm'}

    checkpoint = tmp_path / 'kw_backbone.pth'
    saved = _save_backbone_checkpoint(backbone, checkpoint)
    backbone.init_cfg.checkpoint = str(checkpoint)
    # COCO scales (short side 400-800) become 40-80 px on the 64 px images.
    runner = Runner.from_cfg(
        _shrink(cfg, tiny_data, tmp_path / 'work_dir', factor=0.1))
    runner.train()

    assert runner.iter == 1
    metrics = _val_metrics(runner)
    for key, value in metrics.items():
        assert 0.0 <= value <= 1.0, (key, value)
    model = runner.model
    assert get_temperature(model) == 0.0
    # The backbone started from the saved checkpoint: after one step at the
    # warm-up learning rate (1e-7) every tensor is still within 1e-4 of it,
    # whereas the backbone's own random initialisation is far from it.
    state = model.backbone.state_dict()
    assert set(saved) == set(state)
    for key, value in saved.items():
        if value.is_floating_point():
            torch.testing.assert_close(
                state[key], value, atol=1e-4, rtol=0, msg=key)
        else:
            assert torch.equal(state[key], value), key
    warehouses = [k for k in saved if 'warehouse' in k]
    assert warehouses and any(saved[k].abs().sum() > 0 for k in warehouses)


def test_demo_config_trains_and_evaluates(tiny_data, tmp_path, load_tool):
    cfg = Config.fromfile(DEMO_CONFIG)
    backbone = cfg.model.backbone
    assert backbone.type == 'KWResNet' and backbone.depth == 18
    assert backbone.attention_init is True  # trained from scratch
    assert [h['type'] for h in cfg.custom_hooks
            ] == ['KWTemperatureHook', 'KWAttentionStatsHook']
    assert cfg.train_dataloader.num_workers == 0
    assert set(cfg.val_evaluator.metric) == {'bbox', 'segm'}
    assert cfg.model.roi_head.bbox_head.num_classes == len(DEMO_CLASSES)
    assert tuple(cfg.metainfo['classes']) == DEMO_CLASSES
    _shrink(cfg, tiny_data, tmp_path / 'work_dir', factor=0.5)
    cfg.data_root = str(tiny_data)
    cfg.train_cfg.update(max_epochs=4, val_interval=4)
    cfg.custom_hooks = [dict(type='KWTemperatureHook', epochs=1)]
    cfg.param_scheduler = []  # the full learning rate from the start

    demo = load_tool('demo')
    assert demo.prepare_data(cfg) == 0.0  # the data exists: kept as is
    result = demo.run(cfg)

    # Four epochs over the same two images: the detector (re-seeded, so
    # deterministic) must fit them, not merely run.
    assert result['loss_last'] < 0.75 * result['loss_first'], result
    assert set(result) >= {'bbox_mAP', 'segm_mAP', 'seconds', 'cpu_seconds'}


def test_generator_is_deterministic(tmp_path):
    kwargs = dict(
        num_train=3, num_val=2, img_size=64, min_radius=6.0, max_radius=14.0)
    for name, seed in (('a', 7), ('b', 7), ('c', 8)):
        generate_demo_shapes(str(tmp_path / name), seed=seed, **kwargs)
    files = sorted(
        os.path.relpath(os.path.join(d, f), tmp_path / 'a')
        for d, _, fs in os.walk(tmp_path / 'a') for f in fs)
    assert len(files) == 3 + 2 + 2
    match, mismatch, errors = filecmp.cmpfiles(
        tmp_path / 'a', tmp_path / 'b', files, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(files)
    _, mismatch, _ = filecmp.cmpfiles(
        tmp_path / 'a', tmp_path / 'c', files, shallow=False)
    assert 'annotations/train.json' in mismatch
    # In memory too, and train and val are different streams.
    images, coco = render_split(2, seed=3, img_size=64, max_radius=14.0)
    images2, coco2 = render_split(2, seed=3, img_size=64, max_radius=14.0)
    assert coco == coco2
    assert all(np.array_equal(a, b) for a, b in zip(images, images2))
    with open(tmp_path / 'a' / 'annotations' / 'train.json') as f:
        train = json.load(f)
    with open(tmp_path / 'a' / 'annotations' / 'val.json') as f:
        val = json.load(f)
    assert train['annotations'][0] != val['annotations'][0]


def test_generator_masks_match_boxes_and_pixels(tmp_path):
    noise_std = 8.0
    paths = generate_demo_shapes(
        str(tmp_path), num_train=12, num_val=4, seed=0, noise_std=noise_std)
    for split, path in paths.items():
        coco = COCO(path)
        assert [c['name']
                for c in coco.loadCats(coco.getCatIds())] == list(DEMO_CLASSES)
        labels = set()
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            assert (info['height'], info['width']) == (128, 128)
            image = cv2.imread(str(tmp_path / split / info['file_name']))
            assert image.shape == (128, 128, 3)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= 4
            union = np.zeros((128, 128), np.int32)
            for ann in anns:
                labels.add(ann['category_id'])
                mask = coco.annToMask(ann).astype(bool)
                ys, xs = np.nonzero(mask)
                assert ann['bbox'] == [
                    float(xs.min()),
                    float(ys.min()),
                    float(xs.max() - xs.min() + 1),
                    float(ys.max() - ys.min() + 1)
                ]
                assert ann['area'] == float(mask.sum()) > 0
                assert ann['iscrowd'] == 0
                union += mask
                # The mask covers one flat colour (up to the noise) and
                # the ring of pixels around it has another one.
                inside = image[mask].astype(np.float64)
                assert inside.std(axis=0).max() < 3 * noise_std
                ring = cv2.dilate(
                    mask.astype(np.uint8), np.ones((3, 3),
                                                   np.uint8)).astype(bool)
                ring &= ~mask
                outside = image[ring].astype(np.float64)
                assert np.abs(inside.mean(0) - outside.mean(0)).sum() > 60
            assert union.max() == 1  # objects never overlap
        assert labels == {1, 2, 3}


def test_generator_arguments(tmp_path):
    with pytest.raises(ValueError, match='num_images'):
        render_split(0, seed=0)
    with pytest.raises(ValueError, match='max_radius'):
        render_split(1, seed=0, img_size=32, max_radius=20.0)
    with pytest.raises(ValueError, match='kind'):
        shape_polygon('hexagon', 0, 0, 1, 0)
    generate_demo_shapes(str(tmp_path), num_train=3, num_val=1)
    with pytest.raises(FileExistsError, match='overwrite'):
        generate_demo_shapes(str(tmp_path), num_train=1, num_val=1)
    # Overwriting with fewer images leaves no stale image behind.
    generate_demo_shapes(str(tmp_path), num_train=1, num_val=1, overwrite=True)
    assert sorted(os.listdir(tmp_path / 'train')) == ['00000.png']


def _one_iteration_losses(cfg, tiny_data, work_dir, checkpoint):
    cfg.model.backbone.init_cfg.checkpoint = str(checkpoint)
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(_shrink(cfg, tiny_data, work_dir, factor=0.1))
    runner.train()
    hub = runner.message_hub
    losses = {
        key[len('train/'):]: float(hub.get_scalar(key).current())
        for key in hub.log_scalars if key.startswith('train/loss')
    }
    return runner, losses


def test_efficient_conv_bn_eval_key_trains_kw_r50_mask_rcnn(
        tiny_data, tmp_path):
    """``efficient_conv_bn_eval = ['backbone']``, MMEngine's own key, folds
    the frozen BatchNorms into the KW convolutions; the losses stay those of
    the unfolded model."""
    cfg = Config.fromfile(CONFIG_DIR / 'mask-rcnn_kw-r50_1x_coco.py')
    assert cfg.model.backbone.norm_eval is True
    checkpoint = tmp_path / 'kw_backbone.pth'
    _save_backbone_checkpoint(cfg.model.backbone, checkpoint)
    _, expected = _one_iteration_losses(
        copy.deepcopy(cfg), tiny_data, tmp_path / 'plain', checkpoint)
    cfg.efficient_conv_bn_eval = ['backbone']
    runner, losses = _one_iteration_losses(cfg, tiny_data, tmp_path / 'folded',
                                           checkpoint)
    graph = runner.model.backbone.forward.__self__.graph
    folded = [
        n for n in graph.nodes
        if getattr(n.target, '__name__', '') == 'kw_conv_bn_eval_control'
    ]
    assert len(folded) == 50  # every KW conv of KW-ResNet50 1x
    assert set(losses) == set(expected) and 'loss' in losses
    for key, value in expected.items():
        assert losses[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
