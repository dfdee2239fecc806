"""KWConvNeXt: official layout, parameter counts, the MM backbone contract."""
import copy
import math

import pytest
import torch
import torch.nn as nn
from helpers import CONFIG_DIR, golden_config_name, load_golden_plan
from mmpretrain.models.backbones import ConvNeXt

from mmkw.cnn import (ZERO_CELL, KWAttention, KWConv2d, get_temperature,
                      set_temperature)
from mmkw.converters.convnext import detect_convnext, rename_convnext_key
from mmkw.models import KWConvNeXt, build_model_from_config

# A small ConvNeXt for the contract tests (64x64 inputs).
SMALL = dict(depths=[1, 1, 2, 1], channels=[16, 32, 64, 128])
BUDGET_3D4 = dict(default=1.0, pointwise=(1.0, 1.0, 0.5, 0.5))
CONFIG_1X = golden_config_name('convnext_tiny_kw1x')
CONFIG_3D4X = CONFIG_1X.replace('kw1x-', 'kw3d4x-')


@pytest.fixture(scope='module')
def tiny_models():
    """The ConvNeXt-T classifiers of both configs, on the meta device."""
    return {
        1.0: build_model_from_config(CONFIG_1X, device='meta'),
        0.75: build_model_from_config(CONFIG_3D4X, device='meta'),
    }


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _module_path(official_path: str) -> str:
    """Official module path -> KWConvNeXt module path, via the converter."""
    key = rename_convnext_key(f'{official_path}.bias')
    assert key.startswith('backbone.') and key.endswith('.bias')
    return key[len('backbone.'):-len('.bias')]


def _expected_params(backbone: KWConvNeXt, head: int) -> int:
    """Parameters from the plan and kernelwarehouse.md section 2.2 alone:
    the plain ConvNeXt without its conv kernels, the warehouses and, per KW
    layer, fc1 (+bias), the LayerNorm and fc2 (+bias)."""
    plain = ConvNeXt(
        arch=dict(depths=backbone.depths, channels=backbone.channels),
        linear_pw_conv=False)
    # Everything but the conv kernels (gamma is [C] there, same count).
    rest = sum(p.numel() for name, p in plain.named_parameters()
               if not (p.dim() == 4 and name.endswith('weight')))
    attention = 0
    for lp in backbone.plan.layers:
        in_ch = lp.spec.in_channels
        hidden = max(int(in_ch * 0.0625), 16)
        n = backbone.plan.warehouses[lp.warehouse_index].num_cells
        logits = lp.num_mixtures * (n + 1)
        attention += in_ch * hidden + hidden + 2 * hidden + (hidden +
                                                             1) * logits
    return rest + backbone.plan.num_warehouse_params + attention + head


def test_kw1x_tiny_parameter_count(tiny_models):
    golden = load_golden_plan('convnext_tiny_kw1x')
    model = tiny_models[1.0]
    backbone = model.backbone
    attention = sum(
        _num_params(m) for m in model.modules() if isinstance(m, KWAttention))
    assert _num_params(model) == golden['params_total'] == 39_370_674
    assert backbone.plan.num_warehouse_params == golden['params_warehouses']
    assert attention == golden['params_attention']
    head = _num_params(model.head)
    assert _num_params(model) == _expected_params(backbone, head)


def test_kw1x_tiny_plan_matches_official(tiny_models):
    golden = load_golden_plan('convnext_tiny_kw1x')
    backbone = tiny_models[1.0].backbone
    plan = backbone.plan
    assert len(plan.warehouses) == len(golden['warehouses'])
    for wh, ref in zip(plan.warehouses, golden['warehouses']):
        assert wh.index == ref['index']
        assert list(wh.cell_shape) == ref['cell_shape'], wh.name
        assert wh.num_cells == ref['n'], wh.name
        assert wh.num_mixtures == ref['m_total'], wh.name
        assert len(wh.layers) == ref['layers'], wh.name
    assert [w.name for w in plan.warehouses
            ][:4] == ['stem', 'downsample1', 'downsample2', 'downsample3']
    modules = dict(backbone.named_modules())
    assert [lp.name for lp in plan.layers
            ] == [_module_path(ref['path']) for ref in golden['kw_layers']]
    for lp, ref in zip(plan.layers, golden['kw_layers']):
        layer = modules[lp.name]
        assert isinstance(layer, KWConv2d) and layer.bias is not None
        assert layer.in_channels == ref['in_channels']
        assert layer.out_channels == ref['out_channels']
        assert list(layer.kernel_size) == ref['kernel_size']
        assert list(layer.stride) == ref['stride']
        assert list(layer.padding) == ref['padding']
        assert layer.groups == ref['groups']
        assert lp.warehouse_index == ref['warehouse'], lp.name
        assert lp.num_mixtures == ref['m']
        assert lp.split == (ref['split']['spatial'], ref['split']['out'],
                            ref['split']['inp'])
        assert lp.beta == ref['beta'], lp.name
        assert layer.attention.hidden_channels == ref['attention_hidden']
        assert isinstance(layer.attention.norm1, nn.LayerNorm)
        assert layer.attention.fc1.bias is not None
    plain = [
        name for name, m in tiny_models[1.0].named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear)) and 'attention' not in name
    ]
    assert plain == ['head.fc'] and golden['plain_layers'] == [
        dict(path='head', type='Linear', shape=[1000, 768])
    ]


def test_kw3d4x_tiny_plan_and_parameters(tiny_models):
    plan1 = tiny_models[1.0].backbone.plan
    backbone = tiny_models[0.75].backbone
    plan = backbone.plan
    assert [w.name
            for w in plan.warehouses] == [w.name for w in plan1.warehouses]
    for wh, ref in zip(plan.warehouses, plan1.warehouses):
        if wh.name in ('stage2_pointwise', 'stage3_pointwise'):
            # b = 1/2 with half-gcd cells: 4x the mixtures, half the cells.
            assert wh.spec.budget == 0.5
            assert wh.cell_shape == (ref.cell_shape[0] // 2,
                                     ref.cell_shape[1] // 2, 1, 1)
            assert wh.num_mixtures == 4 * ref.num_mixtures
            assert wh.num_cells == wh.num_mixtures // 2
            assert wh.num_params * 2 == ref.num_params
        else:
            assert wh.spec.budget == 1.0
            assert (wh.cell_shape, wh.num_cells) == (ref.cell_shape,
                                                     ref.num_cells)
    first = plan.layer('stages.2.0.pointwise_conv1')
    assert first.beta[:8] == [
        0, ZERO_CELL, ZERO_CELL, 1, 2, ZERO_CELL, ZERO_CELL, 3
    ]
    # Every warehouse cell is handed out exactly once.
    for wh in plan.warehouses:
        cells = [c for lp in wh.layers for c in lp.beta if c != ZERO_CELL]
        assert sorted(cells) == list(range(wh.num_cells)), wh.name
    model = tiny_models[0.75]
    total = _num_params(model)
    assert total == _expected_params(backbone, _num_params(model.head))
    assert total < _num_params(tiny_models[1.0])


def test_converter_family_renames():
    assert rename_convnext_key('stages.2.4.dwconv.attention.fc2.bias') == \
        'backbone.stages.2.4.depthwise_conv.attention.fc2.bias'
    assert rename_convnext_key('stages.0.1.gamma') == \
        'backbone.stages.0.1.gamma'
    assert rename_convnext_key('downsample_layers.3.0.bias') == \
        'backbone.downsample_layers.3.0.bias'
    assert rename_convnext_key('norm.weight') == 'backbone.norm3.weight'
    assert rename_convnext_key('head.bias') == 'head.fc.bias'
    for bad in ('stages.0.0.mlp.weight', 'stages.0.0.gamma.x', 'fc.weight',
                'norm.running_mean'):
        with pytest.raises(KeyError, match=bad.replace('.', r'\.')):
            rename_convnext_key(bad)
    keys = {
        'head.weight', 'norm.weight', 'downsample_layers.0.0.bias',
        'stages.0.0.gamma'
    }
    assert detect_convnext(keys)
    assert not detect_convnext(
        {'conv1.weight', 'bn1.weight', 'fc.weight', 'layer1.0.conv1.bias'})


def _small(**kwargs) -> KWConvNeXt:
    torch.manual_seed(0)
    return KWConvNeXt(arch=SMALL, **kwargs)


@pytest.mark.parametrize('gap', [True, False])
def test_out_indices_shapes(gap):
    model = _small(out_indices=(0, 1, 2, -1), gap_before_final_norm=gap).eval()
    assert model.out_indices == (0, 1, 2, 3)
    for i in range(4):
        assert isinstance(getattr(model, f'norm{i}'), nn.LayerNorm)
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 64, 64))
    if gap:
        expected = [(2, c) for c in SMALL['channels']]
    else:
        expected = [(2, c, 16 // 2**i, 16 // 2**i)
                    for i, c in enumerate(SMALL['channels'])]
    assert [tuple(o.shape) for o in outs] == expected


def test_budget_3d4_small_forward_and_gradients():
    model = _small(budget=BUDGET_3D4)
    assert model.plan.warehouse('stage3_pointwise').spec.budget == 0.5
    model.train()
    set_temperature(model, 0.5)
    out = model(torch.rand(2, 3, 64, 64))[0]
    # (A plain sum of a LayerNorm output only depends on the norm's bias.)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_frozen_stages_include_warehouses():
    model = _small(frozen_stages=2)
    model.train()
    # Stage i owns downsample_layers[i]: the stem for 0, downsample{i} else.
    frozen_wh = {
        'stem', 'stage0_depthwise', 'stage0_pointwise', 'downsample1',
        'stage1_depthwise', 'stage1_pointwise'
    }
    for name, weight in model.warehouse_manager.weights.items():
        assert weight.requires_grad == (name not in frozen_wh), name
    for i in range(4):
        frozen = i < 2
        for module in (model.downsample_layers[i], model.stages[i]):
            assert all(p.requires_grad != frozen for p in module.parameters())
            assert all(m.training != frozen for m in module.modules())
    out = model(torch.rand(2, 3, 64, 64))[0]
    (out * torch.randn_like(out)).sum().backward()
    for name, weight in model.warehouse_manager.weights.items():
        assert (weight.grad is None) == (name in frozen_wh), name


@pytest.mark.parametrize('norm_eval', [True, False])
def test_norm_eval(norm_eval):
    model = _small(norm_eval=norm_eval)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    attention_norms = [
        m.norm1 for m in model.modules() if isinstance(m, KWAttention)
    ]
    assert len(attention_norms) == len(model.plan.layers)
    assert all(m.training != norm_eval for m in norms + attention_norms)
    blocks = [m for m in model.modules() if isinstance(m, KWConv2d)]
    assert all(m.training for m in blocks)


def test_with_cp_matches_without():
    x = torch.rand(2, 3, 64, 64)
    weight = torch.randn(2, SMALL['channels'][-1])
    outs, grads = [], []
    ref = _small(with_cp=False)
    for with_cp in (False, True):
        model = _small(with_cp=with_cp)
        model.load_state_dict(ref.state_dict())
        model.train()
        set_temperature(model, 0.3)
        inp = x.clone().requires_grad_(True)
        out = model(inp)[0]
        (out * weight).sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()] + [inp.grad])
    assert all(block.with_cp for block in model.stages[0])
    assert all(g.abs().sum() > 0 for g in grads[0])
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_init_weights_keeps_official_kw_init():
    """The config's TruncNormal(Linear) init must not reach the attention
    (Kaiming fan_out in the official code); the head gets std 0.02."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(CONFIG_1X)
    cfg.model.backbone.arch = SMALL
    cfg.model.head.in_channels = SMALL['channels'][-1]
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    backbone = model.backbone
    for name in ('stages.2.1.pointwise_conv1', 'downsample_layers.0.0'):
        attention = backbone.get_submodule(name).attention
        kaiming_std = math.sqrt(2.0 / attention.fc2.weight.shape[0])
        assert abs(kaiming_std - 0.02) > 0.3 * kaiming_std
        std = attention.fc2.weight.std().item()
        assert 0.8 * kaiming_std < std < 1.2 * kaiming_std, name
    assert abs(model.head.fc.weight.std().item() - 0.02) < 0.002
    assert all(m.bias.abs().sum() == 0 for m in backbone.modules()
               if isinstance(m, KWConv2d))


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmkw'])
def test_builds_from_registries(scope):
    import mmdet.registry
    import mmpretrain.registry
    from mmengine.registry import DefaultScope

    import mmkw.registry
    registry = dict(
        mmpretrain=mmpretrain.registry.MODELS,
        mmdet=mmdet.registry.MODELS,
        mmkw=mmkw.registry.MODELS)[scope]
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(
            dict(
                type='KWConvNeXt',
                arch=SMALL,
                budget=BUDGET_3D4,
                out_indices=(1, 3),
                frozen_stages=1))
    assert isinstance(model, KWConvNeXt)
    assert model.out_indices == (1, 3)


@pytest.mark.parametrize('kwargs, value', [
    (dict(arch='gigantic'), 'gigantic'),
    (dict(arch=dict(depths=[1, 1], channels=[16])), r'\[16\]'),
    (dict(arch=dict(depths=[1, 1])), 'depths'),
    (dict(budget=-1), '-1'),
    (dict(budget=dict(pw=0.5)), "'pw'"),
    (dict(budget=dict(pointwise=(1, 0.5))), r'\(1, 0\.5\)'),
    (dict(budget=dict(downsample=(1, 1, 1, 1))), r'\(1, 1, 1, 1\)'),
    (dict(budget=dict(depthwise='1')), "'1'"),
    (dict(budget=0.3), '0.3'),
    (dict(out_indices=(4, )), '4'),
    (dict(out_indices=()), r'\(\)'),
    (dict(frozen_stages=5), '5'),
    (dict(linear_pw_conv=True), 'True'),
])
def test_bad_arguments(kwargs, value):
    kwargs = dict(dict(arch=SMALL), **kwargs)
    with pytest.raises(ValueError, match=value):
        KWConvNeXt(**kwargs)


@pytest.mark.parametrize('attention_init, tau', [(True, 1.0), (False, 0.0)])
def test_attention_init_sets_the_temperature(attention_init, tau):
    model = _small(attention_init=attention_init)
    assert model.attention_init is attention_init
    assert get_temperature(model) == tau


def test_deepcopy_keeps_its_own_warehouses():
    model = _small().eval()
    clone = copy.deepcopy(model)
    with torch.no_grad():
        clone.warehouse_manager.weights['stem'].zero_()
        x = torch.rand(1, 3, 64, 64)
        assert not torch.equal(model(x)[0], clone(x)[0])


def _count_on_meta(config_or_backbone):
    from mmengine.config import Config
    if isinstance(config_or_backbone, dict):
        cfg = Config.fromfile(CONFIG_DIR /
                              'kw1x-convnext-tiny_32xb128_in1k.py')
        cfg.model.backbone.update(config_or_backbone)
    else:
        cfg = Config.fromfile(CONFIG_DIR / config_or_backbone)
    model = build_model_from_config(cfg, device='meta')
    return sum(p.numel() for p in model.parameters()), model


@pytest.mark.parametrize(
    'backbone,expected',
    [
        (dict(), 39_370_674),  # the released code's layout (default)
        (dict(warehouse_groups='paper'), 35_918_508),
        (dict(
            warehouse_groups='paper',
            budget=dict(default=1, pointwise=(1, 1, 0.5, 0.5))), 24_779_820),
        ('kw1x-convnext-tiny-paper_32xb128_in1k.py', 32_992_964),  # 32.99M
    ])
def test_paper_layout_counts(backbone, expected):
    """The README's ConvNeXt counts: the appendix's third stage in three
    warehouse groups."""
    count, model = _count_on_meta(backbone)
    assert count == expected
    names = [wh.name for wh in model.backbone.plan.warehouses]
    if expected == 39_370_674:
        assert 'stage2_depthwise' in names
    else:
        assert names[-8:-2] == [
            f'stage2g{g}_{kind}' for g in range(3)
            for kind in ('depthwise', 'pointwise')
        ]
        plan = model.backbone.plan
        assert plan.layer('stages.2.3.depthwise_conv').warehouse_index == \
            names.index('stage2g1_depthwise')


@pytest.mark.parametrize('groups',
                         ['papers', (1, 1, 3), (1, 1, 10, 1), (1, 0, 1, 1)])
def test_bad_warehouse_groups(groups):
    with pytest.raises(ValueError, match='warehouse_groups must be'):
        KWConvNeXt(arch='tiny', warehouse_groups=groups)
