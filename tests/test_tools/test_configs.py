"""Every config under configs/ (outside ``_base_``) parses and builds its
model (on the meta device). The ImageNet configs also build their optimizer,
which gives no weight decay to biases and other 1-D parameters; the
detection configs (mask-rcnn_*, yolox_*) are trained and evaluated with the
detectors. The base models build in another package's scope too."""
from pathlib import Path

import pytest
from helpers import CONFIG_DIR
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mmkw  # noqa: F401
from mmkw.cnn import KWAttention
from mmkw.models import build_model_from_config

# Found, not listed: a new config is tested without editing this file.
ALL_CONFIGS = sorted(
    str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.glob('**/*.py')
    if '_base_' not in p.parts)
DETECTORS = [
    name for name in ALL_CONFIGS
    if Path(name).name.startswith(('mask-rcnn', 'yolox'))
]
CONFIGS = [name for name in ALL_CONFIGS if name not in DETECTORS]
ADVANCED = [name for name in CONFIGS if '-adamw-300e_' in name]
MODEL_BASES = sorted(
    p.name for p in (CONFIG_DIR / '_base_' / 'models').glob('*.py'))


def _load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


def _build_model(cfg: Config):
    """The config's model with meta tensors: no memory, no init cost."""
    assert cfg.default_scope == 'mmpretrain'
    return build_model_from_config(cfg, device='meta')


def test_every_config_is_exercised():
    """The glob found the configs, and what it leaves to the detector tests
    is a detector config (a classifier named mask-rcnn_* would escape the
    checks below)."""
    assert CONFIGS and ADVANCED and DETECTORS
    for name in DETECTORS:
        assert _load(name).default_scope == 'mmdet', name


@pytest.mark.parametrize('name', DETECTORS)
def test_detector_config_builds_model(name):
    cfg = _load(name)
    assert cfg.custom_imports['imports'] == ['mmkw']
    model = build_model_from_config(cfg, device='meta')
    assert any(isinstance(m, KWAttention) for m in model.modules())


@pytest.mark.parametrize('name', MODEL_BASES)
def test_base_model_builds_in_another_scope(name):
    """A base model inherited by a config of another package (``_base_ =
    'mmkw::_base_/models/...'``, default_scope 'mmdet') still builds: its
    ``_scope_`` names MMPretrain, where ImageClassifier is registered."""
    cfg = Config.fromfile(str(CONFIG_DIR / '_base_' / 'models' / name))
    cfg.default_scope = 'mmdet'
    model = build_model_from_config(cfg, device='meta')
    assert type(model).__name__ == 'ImageClassifier'
    assert any(isinstance(m, KWAttention) for m in model.modules())


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_model_and_optimizer(name):
    cfg = _load(name)
    assert cfg.custom_imports['imports'] == ['mmkw']
    model = _build_model(cfg)
    assert any(isinstance(m, KWAttention) for m in model.modules())
    hooks = [h for h in cfg.custom_hooks if h['type'] == 'KWTemperatureHook']
    assert len(hooks) == 1
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base_decay = cfg.optim_wrapper.optimizer.weight_decay
    assert base_decay > 0
    names = {id(p): n for n, p in model.named_parameters()}
    seen = 0
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            seen += 1
            # The DeiT recipe does not decay the class token and the
            # position embedding either.
            no_decay = p.ndim <= 1 or names[id(p)].endswith(
                ('.cls_token', '.pos_embed'))
            expected = 0 if no_decay else base_decay
            assert group['weight_decay'] == expected, names[id(p)]
    assert seen == len(names)
    # Warehouses (one parameter each) do decay.
    assert any('warehouse_manager' in n and p.ndim > 1
               for n, p in model.named_parameters())


@pytest.mark.parametrize('name', ADVANCED)
def test_advanced_recipe(name):
    cfg = _load(name)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr,
            optimizer.weight_decay) == ('AdamW', 4e-3, 0.05)
    # 32 GPUs x 128 = 4096, the batch the lr is for.
    gpus, batch = name.split('_')[1].split('-')[0].split('xb')
    assert int(gpus) * cfg.train_dataloader.batch_size == 4096
    assert int(batch) == cfg.train_dataloader.batch_size
    assert cfg.auto_scale_lr.base_batch_size == 4096
    assert cfg.train_cfg.max_epochs == 300
    assert [s.type
            for s in cfg.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
    pipeline = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert {'RandAugment', 'RandomErasing',
            'RandomResizedCrop'} <= set(pipeline)
    assert [a.type
            for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert cfg.model.head.loss.type == 'LabelSmoothLoss'
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert cfg.custom_hooks == [dict(type='KWTemperatureHook', epochs=20)]
    # Same model as the traditional-recipe config of the same budget, but
    # for the recipe's loss and batch augments.
    traditional = _load(name.split('_')[0] + '_8xb32_in1k.py')

    def network(model):
        model = model.to_dict()
        model.pop('train_cfg', None)
        model['head'].pop('loss')
        return model

    assert network(cfg.model) == network(traditional.model)
    assert cfg.train_dataloader.dataset.data_root == 'data/imagenet'
