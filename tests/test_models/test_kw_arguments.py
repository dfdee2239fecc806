"""Every KW model takes the same KW arguments, with the same defaults and the
same checks: the four backbones, the KW head and ``KWConverted``."""
import inspect

import pytest
import torch

import mmkw
from mmkw.cnn import KWAttention, KWStarAttention
from mmkw.models import (KW_ARGS, KW_DEFAULTS, KWConverted, KWConvNeXt,
                         KWLinearClsHead, KWMobileNetV2, KWResNet,
                         KWVisionTransformer)

TINY_VIT = dict(
    embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)


def _resnet(**kwargs):
    return KWResNet(depth=18, base_channels=8, stem_channels=8, **kwargs)


def _mobilenet(**kwargs):
    return KWMobileNetV2(widen_factor=0.25, **kwargs)


def _convnext(**kwargs):
    return KWConvNeXt(
        arch=dict(depths=[1, 1, 2, 1], channels=[16, 32, 64, 128]), **kwargs)


def _vit(**kwargs):
    kwargs.setdefault('blocks_per_warehouse', 1)
    return KWVisionTransformer(
        arch=TINY_VIT, img_size=32, patch_size=16, **kwargs)


def _head(**kwargs):
    return KWLinearClsHead(num_classes=10, in_channels=64, **kwargs)


def _converted(**kwargs):
    return KWConverted(
        dict(
            type='mmpretrain.ResNet',
            depth=18,
            base_channels=8,
            stem_channels=8),
        input_shape=(3, 32, 32),
        **kwargs)


#: name -> (builder, input, a budget dict naming one of its warehouses or
#: groups, the warehouse whose budget it sets, that budget)
FAMILIES = {
    'KWResNet': (_resnet, (2, 3, 32, 32), dict(default=1.0,
                                               stage3=2.0), 'stage3', 2.0),
    'KWMobileNetV2': (_mobilenet, (2, 3, 32, 32),
                      dict(default=1.0, stage6_dw=2.0), 'stage6_dw', 2.0),
    'KWConvNeXt': (_convnext, (2, 3, 32, 32),
                   dict(default=1.0,
                        pointwise=(1, 1, 0.5, 0.5)), 'stage3_pointwise', 0.5),
    'KWVisionTransformer':
    (_vit, (2, 3, 32, 32), dict(value=1.0, mlp=0.5), 'group1_mlp', 0.5),
    'KWLinearClsHead': (_head, (2, 64), dict(fc=0.5), 'fc', 0.5),
    'KWConverted':
    (_converted, (2, 3, 32, 32), dict(default=1.0, stage3=2.0), 'stage3', 2.0),
}
FUNCTIONS = {
    'KWResNet': KWResNet,
    'KWMobileNetV2': KWMobileNetV2,
    'KWConvNeXt': KWConvNeXt,
    'KWVisionTransformer': KWVisionTransformer,
    'KWLinearClsHead': KWLinearClsHead,
    'KWConverted': KWConverted,
}
#: The one documented difference of the defaults: the head is the official
#: 1/2x MobileNetV2 classifier.
OWN_DEFAULTS = {'KWLinearClsHead': dict(budget=0.5, cell_ratio=(1, 0.025))}


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build(name, **kwargs):
    torch.manual_seed(0)
    return FAMILIES[name][0](**kwargs)


def _forward(name, model):
    x = torch.rand(FAMILIES[name][1])
    model.eval()
    with torch.no_grad():
        out = model((x, )) if name == 'KWLinearClsHead' else model(x)
    outs = out if isinstance(out, (tuple, list)) else (out, )
    assert outs and all(torch.isfinite(o).all() for o in outs)
    return outs


def _plan(model):
    return model.warehouse_manager.plan


def _attentions(model):
    return [m for m in model.modules() if isinstance(m, KWAttention)]


@pytest.mark.parametrize('name', sorted(FUNCTIONS))
def test_signatures_share_the_kw_arguments(name):
    params = inspect.signature(FUNCTIONS[name]).parameters
    names = list(params)
    first = names.index(KW_ARGS[0])
    assert tuple(names[first:first + len(KW_ARGS)]) == KW_ARGS
    defaults = dict(KW_DEFAULTS, **OWN_DEFAULTS.get(name, {}))
    assert {key: params[key].default for key in KW_ARGS} == defaults


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_the_full_argument_set(name):
    _, _, budget, warehouse, value = FAMILIES[name]
    model = _build(
        name,
        budget=budget,
        reduction=0.125,
        cell_ratio=0.5,
        attention_type='kw_star',
        nonlocal_basis_ratio=0.5,
        attention_norm_cfg=dict(type='LN'),
        attention_init=False)
    manager = model.warehouse_manager
    assert manager.reduction == 0.125 and manager.attention_type == 'kw_star'
    assert _plan(model).warehouse(warehouse).spec.budget == value
    attentions = _attentions(model)
    assert attentions and all(
        isinstance(a, KWStarAttention) for a in attentions)
    assert all(isinstance(a.norm1, torch.nn.LayerNorm) for a in attentions)
    assert mmkw.get_temperature(model) == 0.0
    _forward(name, model)


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_kw_star_on_every_family(name):
    model = _build(name, attention_type='kw_star')
    assert all(isinstance(a, KWStarAttention) for a in _attentions(model))
    plain = _build(name)
    assert sum(p.numel() for p in model.parameters()) > \
        sum(p.numel() for p in plain.parameters())
    mmkw.set_temperature(model, 0.5)
    model.train()  # (MMPretrain's ResNet.train returns None)
    _forward(name, model)


BAD_VALUES = [
    ('budget', -1, 'budget must be a positive number, got -1'),
    ('budget', 'big', "budget must be a positive number, got 'big'"),
    ('budget', dict(default=0), r"budget\['default'\] .* got 0"),
    ('budget', dict(nowhere=1.0), "budget keys must be .*'nowhere'"),
    ('reduction', 0, 'reduction must be a positive number, got 0'),
    ('reduction', 1.5, r'reduction must be in \(0, 1\], got 1.5'),
    ('reduction', 'x', "reduction must be a positive number, got 'x'"),
    ('cell_ratio', 1.5, r'cell_ratio .* got 1.5'),
    ('cell_ratio', -0.5, r'cell_ratio .* got -0.5'),
    ('attention_type', 'od', "attention_type must be one of .*, got 'od'"),
    ('nonlocal_basis_ratio', 0,
     'nonlocal_basis_ratio must be a positive number, got 0'),
    ('nonlocal_basis_ratio', 2, r'nonlocal_basis_ratio .*\(0, 1\], got 2'),
    ('attention_norm_cfg', 'BN', "attention_norm_cfg must be .*'BN'"),
    ('attention_init', 'yes', "attention_init must be True .*'yes'"),
]


@pytest.mark.parametrize(
    'arg,value,match', BAD_VALUES, ids=lambda v: str(v)[:12])
@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_bad_values_name_the_argument_and_the_value(name, arg, value, match):
    with pytest.raises(ValueError, match=match):
        _build(name, **{arg: value})


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_unknown_budget_key_lists_the_warehouses(name):
    with pytest.raises(ValueError) as info:
        _build(name, budget=dict(nowhere=1.0))
    message = str(info.value)
    assert "'nowhere'" in message
    assert repr(FAMILIES[name][3]) in message  # a warehouse it may name


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_nonlocal_basis_ratio_takes_effect(name):
    assert all(a.num_local_cells is None for a in _attentions(_build(name)))
    model = _build(name, nonlocal_basis_ratio=0.5)
    assert all(a.num_local_cells is not None for a in _attentions(model))


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_cell_ratio_takes_effect(name):
    default = _plan(_build(name))
    half = _plan(_build(name, cell_ratio=0.5))
    assert [wh.name for wh in half.warehouses] == \
        [wh.name for wh in default.warehouses]
    for wh in half.warehouses:
        assert wh.spec.cell_ratios == (0.5, 0.5), wh.name
    # The head's official cells are [num_classes, in / 40]; the others'
    # the whole channel gcd.
    full = _plan(_build(name, cell_ratio=1.0))
    for wh, ref in zip(half.warehouses, full.warehouses):
        assert wh.cell_shape[:2] == tuple(
            max(side // 2, 1) for side in ref.cell_shape[:2]), wh.name
    assert sum(wh.num_cells for wh in half.warehouses) > \
        sum(wh.num_cells for wh in full.warehouses)


OFFICIAL = {
    'KWResNet': (0.0625, torch.nn.BatchNorm1d),
    'KWMobileNetV2': (0.0625, torch.nn.BatchNorm1d),
    'KWConvNeXt': (0.0625, torch.nn.LayerNorm),
    'KWVisionTransformer': (0.0625, torch.nn.LayerNorm),
    'KWLinearClsHead': (0.03125, torch.nn.BatchNorm1d),
    'KWConverted': (0.0625, torch.nn.BatchNorm1d),
}


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_none_picks_the_official_value(name):
    model = _build(name)
    reduction, norm = OFFICIAL[name]
    assert model.warehouse_manager.reduction == reduction
    assert all(type(a.norm1) is norm for a in _attentions(model))
    assert model.warehouse_manager.attention_type == 'kw'


def test_mobilenet_v2_official_reduction_follows_the_budget():
    assert _build(
        'KWMobileNetV2', budget=0.5).warehouse_manager.reduction == 0.03125
    # A budget dict's default picks the layout and the reduction.
    model = _build(
        'KWMobileNetV2', budget=dict(default=0.5, stage6_expand=0.25))
    assert model.warehouse_manager.reduction == 0.03125
    assert model.plan.warehouse('stem').spec.budget == 1.0  # tuned layout
    assert model.plan.warehouse('stage6_expand').spec.budget == 0.25
    assert model.plan.warehouse('stage6_project').spec.budget == 0.5


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_attention_init_false_pins_the_temperature(name):
    """``set_temperature`` refuses a pinned model (the hook's refusal is in
    tests/test_engine/test_temperature_hook.py)."""
    model = _build(name, attention_init=False)
    assert model.warehouse_manager.attention_init is False
    assert mmkw.get_temperature(model) == 0.0
    with pytest.raises(ValueError, match='attention_init=False'):
        mmkw.set_temperature(model, 0.5)
    assert mmkw.set_temperature(model, 0.0) > 0


def test_budget_dict_precedence():
    """A warehouse's own name wins over a pattern, a pattern over
    ``default``; patterns match in dict order."""
    model = _build(
        'KWResNet',
        budget={
            'stage[23]': 2.0,
            'stage3': 4.0,
            '*': 0.5,
            'default': 1.0
        })
    assert [wh.spec.budget for wh in model.plan.warehouses] == \
        [0.5, 0.5, 2.0, 4.0]
    with pytest.raises(
            ValueError,
            match=r"budget\['stage3'\] must be a "
            r'number .* got \(1, 2\)'):
        _build('KWResNet', budget=dict(stage3=(1, 2)))
    with pytest.raises(
            ValueError,
            match=r"budget\['pointwise'\] must be a "
            r'number or 4 numbers \(one per stage\)'):
        _build('KWConvNeXt', budget=dict(pointwise=(1, 0.5)))


@pytest.mark.parametrize('kwargs,match', [
    (dict(out_indices=(2, )), r'out_indices must be in \[-2, 1\] .* got 2'),
    (dict(out_indices=(-3, )), 'out_indices .* got -3'),
    (dict(out_indices=()), r'out_indices .* got \(\)'),
    (dict(frozen_stages=3), r'frozen_stages .*\[-1, 2\] .* got 3'),
    (dict(frozen_stages=-2), 'frozen_stages .* got -2'),
    (dict(arch='deit-huge'), "arch must be one of .*'deit-huge'"),
    (dict(arch=dict(embed_dims=8)), 'arch must be a name or a dict'),
])
def test_vit_checks_its_arguments_like_the_others(kwargs, match):
    kwargs = dict(dict(arch=TINY_VIT, img_size=32, patch_size=16), **kwargs)
    with pytest.raises(ValueError, match=match):
        KWVisionTransformer(**kwargs)


def test_vit_out_indices_count_from_the_end():
    model = _vit(out_indices=(0, -1), frozen_stages=2)
    assert list(model.out_indices) == [0, 1]
    assert len(_forward('KWVisionTransformer', model)) == 2
    weights = model.warehouse_manager.weights
    assert not any(w.requires_grad for w in weights.values())
