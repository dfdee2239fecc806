"""Every flat ImageNet config parses, builds its model (on the meta device)
and its optimizer, which gives no weight decay to biases and other 1-D
parameters. Detection configs (mask-rcnn_*, yolox_*) are tested with the
detectors."""
import pytest
from helpers import CONFIG_DIR
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import mmkw  # noqa: F401
from mmkw.cnn import KWAttention
from mmkw.models import build_model_from_config

CONFIGS = sorted(p.name for p in CONFIG_DIR.glob('*.py')
                 if not p.name.startswith(('mask-rcnn', 'yolox')))
ADVANCED = [name for name in CONFIGS if '-adamw-300e_' in name]
# The paper's ImageNet models (traditional and advanced recipes, KW-DeiT),
# ConvNeXt-T in the paper's layout, and the RegNet made KW by KWConverted.
EXPECTED = sorted(
    [f'kw{b}-resnet18_8xb32_in1k.py' for b in ('1d4x', '1d2x', '1x', '2x',
                                               '4x')] +
    [f'kw{b}-resnet18_32xb128-adamw-300e_in1k.py'
     for b in ('1d4x', '1d2x', '1x', '2x', '4x')] +
    [f'kw{b}-resnet50_8xb32_in1k.py' for b in ('1d2x', '1x', '4x')] +
    [f'kw{b}-resnet50_32xb128-adamw-300e_in1k.py'
     for b in ('1d2x', '1x', '4x')] +
    [f'kw{b}-mobilenet-v2{w}_8xb32_in1k.py' for b in ('1d2x', '1x', '4x')
     for w in ('', '-050')] + ['kwstar4x-mobilenet-v2_8xb32_in1k.py'] +
    [f'kw{b}-convnext-tiny_32xb128_in1k.py' for b in ('3d4x', '1x')] +
    ['kw1x-convnext-tiny-paper_32xb128_in1k.py',
     'kw1x-regnetx-400mf_8xb128_in1k.py'] +
    [f'kw{b}-deit-tiny_4xb256_in1k.py' for b in ('1x', '4x')] +
    [f'kw{b}-deit-small_4xb256_in1k.py' for b in ('3d4x', '1x')])


def _load(name: str) -> Config:
    return Config.fromfile(str(CONFIG_DIR / name))


def _build_model(cfg: Config):
    """The config's model with meta tensors: no memory, no init cost."""
    assert cfg.default_scope == 'mmpretrain'
    return build_model_from_config(cfg, device='meta')


def test_configs_found():
    assert CONFIGS == EXPECTED and len(ADVANCED) == 8


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
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == (
        'AdamW', 4e-3, 0.05)
    # 32 GPUs x 128 = 4096, the batch the lr is for.
    gpus, batch = name.split('_')[1].split('-')[0].split('xb')
    assert int(gpus) * cfg.train_dataloader.batch_size == 4096
    assert int(batch) == cfg.train_dataloader.batch_size
    assert cfg.auto_scale_lr.base_batch_size == 4096
    assert cfg.train_cfg.max_epochs == 300
    assert [s.type for s in cfg.param_scheduler] == [
        'LinearLR', 'CosineAnnealingLR'
    ]
    pipeline = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert {'RandAugment', 'RandomErasing', 'RandomResizedCrop'} <= set(
        pipeline)
    assert [a.type for a in cfg.model.train_cfg.augments] == [
        'Mixup', 'CutMix'
    ]
    assert cfg.model.head.loss.type == 'LabelSmoothLoss'
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert cfg.custom_hooks == [dict(type='KWTemperatureHook', epochs=20)]
    # Same model as the traditional-recipe config of the same budget.
    traditional = _load(name.split('_')[0] + '_8xb32_in1k.py')
    assert cfg.model.backbone == traditional.model.backbone
    assert cfg.train_dataloader.dataset.data_root == 'data/imagenet'
