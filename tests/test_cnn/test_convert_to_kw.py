"""KW for networks mmkw did not write: ``convert_to_kw`` and the
``KWConverted`` backbone type (MMDetection's CSPDarknet, MMPretrain's
RegNet, torchvision's ResNet)."""
import copy

import pytest
import torch
import torch.nn as nn
import torchvision
from helpers import CONFIG_DIR, assert_plan_matches_golden, load_golden_plan
from kw_tiny import make_image_folder, train_on_image_folder
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner

import mmkw
from mmkw import convert_to_kw
from mmkw.cnn import KWConvNd, convertible_convs, kw_layout_by_rule
from mmkw.datasets import DEMO_CLASSES, generate_demo_shapes


def test_stage_rule_gives_the_official_resnet18_plan():
    """On torchvision's ResNet18 the generic rule finds the official KW
    layout: four stage warehouses, the first conv and the downsample conv
    of a stage's first block in the previous stage, the stem plain."""
    net = torchvision.models.resnet18()
    plan = convert_to_kw(net)
    assert_plan_matches_golden(plan, load_golden_plan('resnet18_kw1x'))
    assert isinstance(net.conv1, nn.Conv2d)
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 1000)


def _backbones():
    init_default_scope('mmdet')
    yield 'CSPDarknet', MODELS.build(
        dict(type='mmdet.CSPDarknet', deepen_factor=0.33,
             widen_factor=0.25)), 'backbone.stem.conv.conv'
    yield 'RegNet', MODELS.build(
        dict(
            type='mmpretrain.RegNet',
            arch='regnetx_400mf',
            out_indices=(0, 1, 2, 3))), 'conv1'


@pytest.mark.parametrize('name', ['CSPDarknet', 'RegNet'])
def test_backbones_we_did_not_write(name):
    _, plain, stem = next(b for b in _backbones() if b[0] == name)
    plain.eval()
    kw = copy.deepcopy(plain)
    plan = convert_to_kw(kw, input_shape=(3, 128, 128))
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        shapes = [o.shape for o in plain(x)]
    kw.train()
    outs = kw(x)
    assert [o.shape for o in outs] == shapes
    sum(o.square().mean() for o in outs).backward()
    manager = kw.warehouse_manager
    assert all(w.grad is not None for w in manager.weights.values())
    # Every conv but the stem is KW; nothing else changed.
    convs = [n for n, m in kw.named_modules() if isinstance(m, KWConvNd)]
    assert len(convs) == len(plan.layers) == len(convertible_convs(plain)) - 1
    plain_keys = {
        k
        for k in plain.state_dict()
        if not any(k.startswith(c + '.') for c in convs)
    }
    assert plain_keys <= set(kw.state_dict())
    # The warehouses hold as many parameters as the convs they replace.
    replaced = sum(plain.get_submodule(c).weight.numel() for c in convs)
    assert manager.plan.num_warehouse_params == replaced
    if name == 'RegNet':  # grouped convs have warehouses of their own
        assert 'stage3_grouped' in [wh.name for wh in plan.warehouses]


def test_other_rules_and_plain_layers():
    net = torchvision.models.resnet18()
    layout, plain = kw_layout_by_rule(net, 'per_layer', plain=['conv1', 'fc'])
    assert plain == ['conv1'] and len(layout.warehouses) == 19
    assert layout.layers['layer1.0.conv1'] == 'w_layer1_0_conv1'
    layout, plain = kw_layout_by_rule(net, {
        'layer4.*': 'last',
        'layer3.*.conv2': 'l3'
    })
    assert list(layout.warehouses) == ['l3', 'last']
    assert 'layer3.0.conv1' in plain and 'layer1.0.conv1' in plain
    plan = convert_to_kw(net, rule={'layer4.*': 'last'}, budget=2.0)
    assert [(wh.name, wh.spec.budget)
            for wh in plan.warehouses] == [('last', 2.0)]
    net = torchvision.models.resnet18()
    plan = convert_to_kw(net, budget={'stage3': 0.5, 'default': 1.0})
    assert [wh.spec.budget for wh in plan.warehouses] == [1.0, 1.0, 1.0, 0.5]


def test_errors_name_what_is_wrong():
    net = torchvision.models.resnet18()
    with pytest.raises(ValueError, match="rule must be one of .*'stages'"):
        convert_to_kw(net, rule='stages')
    with pytest.raises(ValueError, match='Linear has no nn.Conv1d/Conv2d'):
        convert_to_kw(nn.Linear(3, 4))
    with pytest.raises(
            ValueError, match=r"rule \{'head\.\*': 'w'\} makes "
            'no conv'):
        convert_to_kw(net, rule={'head.*': 'w'})
    with pytest.raises(
            ValueError,
            match="layer 'layer1.0.conv1' .* cannot "
            'be split into cells of 40x40'):
        convert_to_kw(
            net, rule={'layer1.0.conv1': 'w'}, cell_ratio=(0.625, 0.625))
    # A conversion that fails leaves the network as it was.
    assert isinstance(net.layer1[0].conv1, nn.Conv2d)
    assert not hasattr(net, 'warehouse_manager')
    convert_to_kw(net)
    with pytest.raises(ValueError, match='already has a warehouse_manager'):
        convert_to_kw(net)


def test_kw_converted_is_the_backbone_itself():
    init_default_scope('mmdet')
    cfg = dict(
        type='mmdet.CSPDarknet',
        deepen_factor=0.33,
        widen_factor=0.25,
        frozen_stages=1)
    backbone = MODELS.build(
        dict(type='KWConverted', backbone=cfg, input_shape=(3, 64, 64)))
    assert type(backbone).__name__ == 'CSPDarknet'
    assert backbone.frozen_stages == 1
    assert mmkw.get_temperature(backbone) == 1.0  # attention_init
    pretrained = MODELS.build(
        dict(
            type='KWConverted',
            backbone=cfg,
            attention_init=False,
            input_shape=(3, 64, 64)))
    assert mmkw.get_temperature(pretrained) == 0.0


@pytest.fixture(scope='module')
def tiny_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_shapes')
    generate_demo_shapes(
        str(root),
        seed=0,
        num_train=4,
        num_val=2,
        img_size=64,
        min_radius=6.0,
        max_radius=14.0)
    return root


def test_kw_yolox_demo_config_trains_and_evaluates(tiny_demo, tmp_path):
    cfg = Config.fromfile(CONFIG_DIR / 'demo' /
                          'yolox_kw1x-tiny_demo-shapes.py')
    assert cfg.model.backbone.type == 'KWConverted'
    assert cfg.model.backbone.backbone.type == 'mmdet.CSPDarknet'
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].batch_size = 2
        cfg[name].dataset.data_root = str(tiny_demo)
    for name in ('val_evaluator', 'test_evaluator'):
        cfg[name].ann_file = str(tiny_demo / 'annotations' / 'val.json')
    cfg.train_cfg.update(max_epochs=2, val_interval=2)
    cfg.custom_hooks = [dict(type='KWTemperatureHook', epochs=1)]
    cfg.model.test_cfg.score_thr = 0.0  # score the untrained detector
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=-1, save_last=False)
    cfg.work_dir = str(tmp_path)
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 4
    assert mmkw.get_temperature(runner.model) == 0.0
    assert runner.model.bbox_head.num_classes == len(DEMO_CLASSES)
    metrics = runner.val_loop.run()
    assert 'coco/bbox_mAP' in metrics  # evaluated: there were predictions


def test_kw_regnet_config_trains(tmp_path):
    cfg = Config.fromfile(CONFIG_DIR / 'kw1x-regnetx-400mf_8xb128_in1k.py')
    assert [h['type'] for h in cfg.custom_hooks
            ] == ['PreciseBNHook', 'KWTemperatureHook']
    data = make_image_folder(str(tmp_path / 'data'), per_class=2, size=64)
    runner = train_on_image_folder(
        cfg,
        data,
        str(tmp_path / 'work'),
        transforms=[dict(type='RandomResizedCrop', scale=64)])
    backbone = runner.model.backbone
    assert type(backbone).__name__ == 'RegNet'
    # The README's figure (plain RegNetX-400MF backbone: 4,772,512).
    assert sum(p.numel() for p in backbone.parameters()) == 6_205_532
    assert mmkw.get_temperature(backbone) == 0.0  # the hook ran
