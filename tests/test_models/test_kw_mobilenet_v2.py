"""KWMobileNetV2 and KWLinearClsHead: official layouts, parameter counts,
the MMPretrain backbone contract and the MobileNetV2 converter family."""
import re

import pytest
import torch
import torch.nn as nn
from helpers import (CONFIG_DIR, golden_config_name, load_golden,
                     load_golden_plan, num_threads)

import mmkw
from mmkw.cnn import ZERO_CELL, KWAttention, KWConvNd, WarehouseManager
from mmkw.converters import (convert_official_state_dict, detect_family,
                             find_matching_config, model_warehouse_keys)
from mmkw.converters.mobilenet_v2 import (MOBILENET_V2_FAMILY,
                                          rename_mobilenet_v2_key)
from mmkw.models import KWLinearClsHead, KWMobileNetV2, build_model_from_config

# Blocks per inverted-residual setting of MobileNetV2.
_BLOCKS = [row[2] for row in KWMobileNetV2.arch_settings]

# kernelwarehouse.md section 4: parameters of the official models.
PAPER_PARAMS = {
    'mobilenetv2_100_kw1d2x': 2_654_396,
    'mobilenetv2_100_kw1x': 5_168_146,
    'mobilenetv2_100_kw4x': 11_379_382,
    'mobilenetv2_050_kw1d2x': 1_466_888,
    'mobilenetv2_050_kw1x': 2_854_522,
    'mobilenetv2_050_kw4x': 4_648_587,
}
OFFICIAL = sorted(PAPER_PARAMS)

_MODELS = {}


@pytest.fixture(autouse=True, scope='module')
def _single_thread():
    """These models are tiny: on a busy machine intra-op threads cost more
    in synchronisation than they save (seconds instead of milliseconds)."""
    with num_threads(1):
        yield


def _model(name):
    """The ImageClassifier of an official model's mmkw config (cached)."""
    if name not in _MODELS:
        _MODELS[name] = build_model_from_config(golden_config_name(name))
    return _MODELS[name]


def _managers(model):
    """(module-path prefix, manager) of every warehouse manager, in the
    order the converter numbers their warehouses."""
    return [(name.rpartition('warehouse_manager')[0], m)
            for name, m in model.named_modules()
            if isinstance(m, WarehouseManager)]


def _official_path(path):
    """mmkw module path of an official module, through the converter."""
    suffix = '.attention.fc1.weight'
    return rename_mobilenet_v2_key(path + suffix)[:-len(suffix)]


@pytest.mark.parametrize('name', OFFICIAL)
def test_parameter_counts(name):
    model = _model(name)
    golden = load_golden_plan(name)
    params = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in params) == PAPER_PARAMS[name]
    assert sum(p.numel() for p in params) == golden['params_total']
    warehouses = sum(m.weights[wh.name].numel() for _, m in _managers(model)
                     for wh in m.plan.warehouses)
    assert warehouses == golden['params_warehouses']
    attention = sum(p.numel() for m in model.modules()
                    if isinstance(m, KWAttention) for p in m.parameters())
    assert attention == golden['params_attention']


@pytest.mark.parametrize('name', OFFICIAL)
def test_plan_matches_official(name):
    model = _model(name)
    golden = load_golden_plan(name)
    warehouses, layers = [], []
    for prefix, manager in _managers(model):
        offset = len(warehouses)
        warehouses += manager.plan.warehouses
        layers += [(prefix + lp.name, lp, lp.warehouse_index + offset)
                   for lp in manager.plan.layers]

    # Warehouses: official index order, cells, sizes.
    assert len(warehouses) == len(golden['warehouses'])
    for wh, ref in zip(warehouses, golden['warehouses']):
        assert list(wh.cell_shape) == ref['cell_shape'], wh.name
        assert wh.num_cells == ref['n'], wh.name
        assert wh.num_mixtures == ref['m_total'], wh.name
        assert len(wh.layers) == ref['layers'], wh.name

    # KW layers: same modules, in the same order, with the same geometry.
    assert [path for path, _, _ in layers
            ] == [_official_path(ref['path']) for ref in golden['kw_layers']]
    for (path, lp, index), ref in zip(layers, golden['kw_layers']):
        layer = model.get_submodule(path)
        assert isinstance(layer, KWConvNd)
        assert (layer.in_channels,
                layer.out_channels) == (ref['in_channels'],
                                        ref['out_channels']), path
        assert list(layer.kernel_size) == ref['kernel_size'], path
        assert list(layer.stride) == ref['stride'], path
        assert list(layer.padding) == ref['padding'], path
        assert layer.groups == ref['groups'], path
        assert (layer.bias is not None) == ref['bias'], path
        assert index == ref['warehouse'], path
        assert lp.num_mixtures == ref['m'], path
        assert list(lp.split) == [
            ref['split']['spatial'], ref['split']['out'], ref['split']['inp']
        ], path
        assert lp.beta == ref['beta'], path
        assert layer.attention.hidden_channels == ref['attention_hidden']
        assert (layer.attention.num_local_cells
                is not None) == ref['nonlocal_basis']

    # Plain layers: ordinary convs / linears where the official ones are.
    for ref in golden['plain_layers']:
        key = rename_mobilenet_v2_key(ref['path'] + '.weight')
        layer = model.get_submodule(key[:-len('.weight')])
        assert type(layer) is getattr(nn, ref['type']), ref['path']
        assert list(layer.weight.shape) == ref['shape'], ref['path']
    plain = [
        m for m in model.modules()
        if type(m) in (nn.Conv2d, nn.Linear) and not any(
            m is a for att in model.modules() if isinstance(att, KWAttention)
            for a in att.modules())
    ]
    assert len(plain) == len(golden['plain_layers'])


def test_converter_renames_every_official_key():
    golden = load_golden('mobilenetv2_100_kw1x')
    keys = [k for k, _ in golden['keys']]
    assert detect_family(keys) is MOBILENET_V2_FAMILY
    target = _model('mobilenetv2_100_kw1x').state_dict()
    renamed = [
        rename_mobilenet_v2_key(k) for k in keys
        if not k.startswith('warehouse_manager.')
    ]
    assert len(set(renamed)) == len(renamed)
    assert set(renamed) <= set(target)
    for bad in ('features.19.0.weight', 'features.1.conv.3.weight',
                'features.0.2.weight', 'classifier.2.weight', 'fc.weight'):
        with pytest.raises(KeyError):
            rename_mobilenet_v2_key(bad)


# ConvModule part -> index inside the official ConvBNReLU.
_PART = {'conv': 0, 'bn': 1}


def _official_key(key, kw_head):
    """Test-only inverse of the converter: mmkw key -> official key."""
    module, _, rest = key.partition('.')
    if module == 'head':
        return ('classifier.1.conv.' if kw_head else 'classifier.') + \
            rest[len('fc.'):]
    top, _, rest = rest.partition('.')
    if top in ('conv1', 'conv2'):
        feature = 0 if top == 'conv1' else 1 + sum(_BLOCKS)
        part, _, tail = rest.partition('.')
        return f'features.{feature}.{_PART[part]}.{tail}'
    layer = int(top[len('layer'):])
    block, _, rest = rest.partition('.')
    feature = 1 + sum(_BLOCKS[:layer - 1]) + int(block)
    index, part, tail = re.fullmatch(r'conv\.(\d+)\.(conv|bn)\.(.+)',
                                     rest).groups()
    index, last = int(index), 1 if layer == 1 else 2
    if index < last:  # a ConvBNReLU of the official block
        return f'features.{feature}.conv.{index}.{_PART[part]}.{tail}'
    return f'features.{feature}.conv.{last + _PART[part]}.{tail}'


def _official_state(name):
    """The official state dict (meta tensors) of an official model, made by
    inverting the conversion on our model."""
    model = _model(name)
    kw_head = isinstance(model.head, KWLinearClsHead)
    warehouses = [key for key, _ in model_warehouse_keys(model)]
    official = {}
    for key, value in model.state_dict().items():
        if key.endswith('attention.temperature'):
            continue
        if key in warehouses:
            new = f'warehouse_manager.weights.{warehouses.index(key)}'
        else:
            new = _official_key(key, kw_head)
            assert rename_mobilenet_v2_key(new) == key
        official[new] = torch.empty(value.shape, device='meta')
    return official


@pytest.mark.parametrize('name', OFFICIAL)
def test_converter_round_trip(name):
    """Every official budget and width: the official layout (checked against
    the golden plan) converts into its own config's model and no other."""
    golden = load_golden_plan(name)
    official = _official_state(name)
    for wh in golden['warehouses']:
        assert official[f"warehouse_manager.weights.{wh['index']}"].shape == \
            (wh['n'], *wh['cell_shape'])
    for layer in golden['kw_layers']:
        assert f"{layer['path']}.attention.fc2.bias" in official
        assert f"{layer['path']}.weight" not in official
    for layer in golden['plain_layers']:
        assert list(official[f"{layer['path']}.weight"].shape) == \
            layer['shape']
    assert detect_family(official) is MOBILENET_V2_FAMILY
    converted = convert_official_state_dict(official, _model(name))
    assert list(converted) == list(_model(name).state_dict())
    for other in OFFICIAL:
        if other != name:
            with pytest.raises(ValueError):
                convert_official_state_dict(official, _model(other))


def test_find_matching_config_with_kw_head():
    config, family = find_matching_config(
        _official_state('mobilenetv2_100_kw1d2x'), CONFIG_DIR)
    assert str(config) == golden_config_name('mobilenetv2_100_kw1d2x')
    assert family is MOBILENET_V2_FAMILY


@pytest.mark.parametrize('widen_factor, expected', [
    (1.0, [(16, 32), (24, 16), (32, 8), (64, 4), (96, 4), (160, 2), (320, 2),
           (1280, 2)]),
    (0.5, [(8, 32), (16, 16), (16, 8), (32, 4), (48, 4), (80, 2), (160, 2),
           (1280, 2)]),
])
def test_out_indices_shapes(widen_factor, expected):
    model = KWMobileNetV2(
        widen_factor=widen_factor, budget=0.5, out_indices=tuple(range(8)))
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [(o.shape[1], o.shape[2]) for o in outs] == expected
    assert all(o.shape[2] == o.shape[3] for o in outs)
    last = KWMobileNetV2(widen_factor=widen_factor, out_indices=(-1, 2))
    assert last.out_indices == (7, 2)


@pytest.mark.parametrize('budget', [0.5, 1.0])
def test_frozen_stages_freeze_warehouses(budget):
    torch.manual_seed(0)
    model = KWMobileNetV2(
        widen_factor=0.5, budget=budget, frozen_stages=2, out_indices=(1, 2))
    model.train()
    frozen = set(model.frozen_warehouses())
    assert 'stem' in frozen and 'stage1_dw' in frozen
    assert 'stage2_dw' in frozen and 'stage3_dw' not in frozen
    for name, weight in model.warehouse_manager.weights.items():
        assert weight.requires_grad == (name not in frozen), name
    for module in (model.conv1, model.layer1, model.layer2):
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert model.layer3.training

    # A frozen stage's output survives a training step; the next does not.
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = [o.clone() for o in model(x)]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    sum(o.square().mean() for o in model(x)).backward()
    optimizer.step()
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
    assert not torch.allclose(after[1], before[1])


def test_norm_eval():
    model = KWMobileNetV2(widen_factor=0.5, norm_eval=True)
    model.train()
    norms = [
        m for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    assert any(isinstance(m, nn.BatchNorm1d) for m in norms)  # attention
    assert all(not m.training for m in norms)
    model = KWMobileNetV2(widen_factor=0.5, norm_eval=False)
    model.train()
    assert all(m.training for m in model.modules())


def test_with_cp_equals_without():
    torch.manual_seed(0)
    # Up to layer4: deeper outputs are 1x1 at 32x32 and their batch-norm
    # gradients over two values are too ill-conditioned to compare.
    plain = KWMobileNetV2(widen_factor=0.5, out_indices=(2, 3))
    ckpt = KWMobileNetV2(widen_factor=0.5, out_indices=(2, 3), with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    mmkw.set_temperature(plain, 0.5)
    mmkw.set_temperature(ckpt, 0.5)
    plain.train()
    ckpt.train()
    x = torch.rand(2, 3, 32, 32)
    grads, outs = [], []
    for model in (plain, ckpt):
        inputs = x.clone().requires_grad_()
        out = model(inputs)
        sum(o.square().sum() for o in out).backward()
        outs.append([o.detach() for o in out])
        grads.append(
            (inputs.grad, model.warehouse_manager.weights['stage3_pw'].grad))
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for a, b in zip(*grads):
        torch.testing.assert_close(
            a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize('budget', [0.25, 2.0])
def test_other_budgets(budget):
    model = KWMobileNetV2(widen_factor=0.5, budget=budget)
    for wh in model.plan.warehouses:
        assert wh.num_assigned == wh.num_cells, wh.name
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32))[0].shape == (1, 1280, 1, 1)


def test_separate_pointwise_and_attention_init():
    shared = KWMobileNetV2(
        widen_factor=0.5,
        budget=4.0,
        separate_pointwise=False,
        attention_init=False)
    names = [wh.name for wh in shared.plan.warehouses]
    assert 'stage3_pw' in names and 'stage3_expand' not in names
    assert mmkw.get_temperature(shared) == 0.0
    assert mmkw.get_temperature(KWMobileNetV2(widen_factor=0.5)) == 1.0


def test_kw_head_follows_temperature():
    torch.manual_seed(0)
    head = KWLinearClsHead(num_classes=1000, in_channels=1280)
    wh = head.plan.warehouses[0]
    assert (wh.cell_shape, wh.num_cells) == ((1000, 32, 1), 20)
    assert head.fc.attention.hidden_channels == 40
    assert mmkw.get_temperature(head) == 1.0
    head.eval()

    # tau = 1: a static linear layer cut from the warehouse by beta.
    feats = torch.rand(3, 1280)
    cells = head.warehouse_manager.weights['fc'].detach()[..., 0]
    beta = head.plan.layers[0].beta
    weight = torch.cat([
        torch.zeros(1000, 32) if cell == ZERO_CELL else cells[cell]
        for cell in beta
    ],
                       dim=1)
    with torch.no_grad():
        torch.testing.assert_close(
            head((feats, )), feats @ weight.T + head.fc.bias)

    # The model-wide setter drives the head like the backbone.
    model = nn.ModuleDict(
        dict(backbone=KWMobileNetV2(widen_factor=0.5, budget=0.5), head=head))
    assert mmkw.set_temperature(model, 0.25) == 26  # 25 in the backbone
    assert float(head.fc.attention.temperature) == 0.25
    assert mmkw.get_temperature(model) == 0.25
    with torch.no_grad():
        mixed = head((feats, ))
        mmkw.set_temperature(model, 0.0)
        learnt = head((feats, ))
    assert not torch.allclose(mixed, learnt)

    fine_tune = KWLinearClsHead(
        num_classes=10, in_channels=1280, attention_init=False)
    assert mmkw.get_temperature(fine_tune) == 0.0
    with pytest.raises(ValueError, match='1.5'):
        KWLinearClsHead(num_classes=10, in_channels=1280, dropout=1.5)


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet'])
def test_builds_from_registries(scope):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    backbone = registry.build(
        dict(type='KWMobileNetV2', widen_factor=0.5, out_indices=(1, 7)))
    assert isinstance(backbone, KWMobileNetV2)
    if scope == 'mmpretrain':
        head = registry.build(
            dict(type='KWLinearClsHead', num_classes=10, in_channels=1280))
        assert isinstance(head, KWLinearClsHead)


@pytest.mark.parametrize('kwargs, value', [
    (dict(widen_factor=0), '0'),
    (dict(widen_factor=-0.5), '-0.5'),
    (dict(widen_factor='wide'), 'wide'),
    (dict(budget=0), '0'),
    (dict(budget=-2), '-2'),
    (dict(budget=0.3), '0.3'),
    (dict(out_indices=(8, )), '8'),
    (dict(out_indices=(-9, )), '-9'),
    (dict(frozen_stages=8), '8'),
    (dict(frozen_stages=-2), '-2'),
    (dict(conv_cfg=dict(type='Conv2d')), 'Conv2d'),
])
def test_bad_arguments(kwargs, value):
    with pytest.raises(ValueError, match=value) as info:
        KWMobileNetV2(**dict(dict(widen_factor=0.5), **kwargs))
    assert value in str(info.value)
