"""Our port of the upstream backbone contract: the behaviours that
MMPretrain 1.2.0's unit tests check on ``ResNet``, ``MobileNetV2`` and
``ConvNeXt`` (and MMDetection 3.x's on its ``ResNet``), re-stated for
``KWResNet``, ``KWMobileNetV2`` and ``KWConvNeXt`` so that they stay drop-in
replacements: argument validation, ``out_indices``, ``frozen_stages`` (which
for KW also freezes the frozen stages' warehouses), ``norm_eval``,
``with_cp``, ``zero_init_residual``, norm and activation configs,
``widen_factor``, ``arch``, ``gap_before_final_norm``, the output shapes of
the upstream inputs and ``train()``/``eval()`` returning the module. The one
deliberate, documented difference: where upstream rejects a bad argument
with an ``AssertionError`` (or a ``KeyError`` for a bad ResNet depth), mmkw
raises a ``ValueError`` naming it, so these tests expect ``ValueError``.
Models are kept tiny (few channels) so the file runs in seconds on CPU.

Not ported, because they do not apply to a backbone built with a KW class:
upstream's tests of the building blocks on their own (``BasicBlock``,
``Bottleneck``, ``ResLayer``, ``InvertedResidual``, ``get_expansion``: KW
backbones reuse those classes unchanged and only swap the convs), checks
that a layer is a plain ``nn.Conv2d`` (KW layers are ``KWConvNd`` with no
``.weight``; the warehouses live in ``warehouse_manager.weights``),
MMDetection-only arguments that MMPretrain's ``ResNet`` never had (``dcn``,
``plugins``, ``pretrained``, ``stem_channels=None`` following
``base_channels``, the 9-module V1d stem) and loading torchvision weights
(network).
"""
import pytest
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmpretrain.models.backbones.convnext import ConvNeXtBlock
from mmpretrain.models.backbones.mobilenet_v2 import InvertedResidual
from mmpretrain.models.backbones.resnet import BasicBlock, Bottleneck
from torch.nn.modules.batchnorm import _BatchNorm

import mmkw  # noqa: F401  (registers the KW backbones)
from mmkw.cnn import KWAttention, KWConvNd
from mmkw.models import KWConvNeXt, KWMobileNetV2, KWResNet

NORMS = (_BatchNorm, nn.GroupNorm, nn.LayerNorm)
BLOCKS = (BasicBlock, Bottleneck, InvertedResidual, ConvNeXtBlock)
SMALL_ARCH = dict(depths=[1, 1, 2, 1], channels=[16, 32, 64, 128])


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """Tiny models: intra-op threads cost more than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def resnet(depth=18, **kwargs):
    return KWResNet(depth,
                    **dict(dict(base_channels=8, stem_channels=8), **kwargs))


def mobilenet(**kwargs):
    return KWMobileNetV2(**dict(dict(widen_factor=0.5), **kwargs))


def convnext(**kwargs):
    return KWConvNeXt(**dict(dict(arch=SMALL_ARCH), **kwargs))


BUILD = {
    'KWResNet': resnet,
    'KWMobileNetV2': mobilenet,
    'KWConvNeXt': convnext
}
# Number of possible outputs of each tiny backbone.
NUM_OUTS = {'KWResNet': 4, 'KWMobileNetV2': 8, 'KWConvNeXt': 4}


def _shapes(model, size, batch=1):
    with torch.no_grad():
        return [
            tuple(o.shape) for o in model(torch.randn(batch, 3, size, size))
        ]


def _outside_attentions(model):
    """Modules of the backbone proper: not inside a KW attention."""
    inner = {
        id(m)
        for a in model.modules() if isinstance(a, KWAttention)
        for m in a.modules()
    }
    return [m for m in model.modules() if id(m) not in inner]


# --------------------------------------------------------------------------
# Constructor argument validation.


@pytest.mark.parametrize(
    'name, kwargs',
    [
        # ResNet (MMPretrain and MMDetection tests).
        ('KWResNet', dict(depth=20)),  # upstream: KeyError
        ('KWResNet', dict(num_stages=0)),
        ('KWResNet', dict(num_stages=5)),
        ('KWResNet', dict(out_indices=(-5, ))),
        ('KWResNet',
         dict(
             num_stages=3,
             strides=(1, 2, 2),
             dilations=(1, 1, 1),
             out_indices=(3, ))),
        ('KWResNet', dict(frozen_stages=-2)),
        ('KWResNet',
         dict(
             num_stages=3, strides=(1, ), dilations=(1, 1),
             out_indices=(2, ))),
        ('KWResNet', dict(depth=50, style='tensorflow')),
        ('KWResNet', dict(depth=18, style='tensorflow')),
        # MobileNetV2 (upstream raises ValueError here too).
        ('KWMobileNetV2', dict(frozen_stages=8)),
        ('KWMobileNetV2', dict(out_indices=[8])),
        # ConvNeXt.
        ('KWConvNeXt', dict(arch='unknown')),
        ('KWConvNeXt', dict(arch=dict(channels=[2, 3, 4, 5]))),
        ('KWConvNeXt',
         dict(arch=dict(depths=[2, 3, 4], channels=[2, 3, 4, 5]))),
        ('KWConvNeXt', dict(out_indices=(-5, ))),
        ('KWConvNeXt', dict(frozen_stages=-2)),
    ],
    ids=lambda v: v if isinstance(v, str) else '-'.join(v))
def test_bad_arguments_raise_value_error(name, kwargs):
    with pytest.raises(ValueError):
        BUILD[name](**kwargs)


@pytest.mark.parametrize('name', sorted(BUILD))
def test_init_weights_takes_no_pretrained_argument(name):
    with pytest.raises(TypeError):
        BUILD[name]().init_weights(pretrained=0)


# --------------------------------------------------------------------------
# Output shapes for the upstream inputs, in train mode with one image (as
# upstream runs them). MMDetection's ResNet defaults to norm_eval=True, which
# its 32 px tests rely on (1x1 maps): those cases pass it explicitly.


def _resnet_shapes(channels, size):
    return [(1, c, size // 4 // 2**i, size // 4 // 2**i)
            for i, c in enumerate(channels)]


MNV2_100 = [(1, 16, 112, 112), (1, 24, 56, 56), (1, 32, 28, 28),
            (1, 64, 14, 14), (1, 96, 14, 14), (1, 160, 7, 7), (1, 320, 7, 7),
            (1, 1280, 7, 7)]
MNV2_050 = [(1, 8, 112, 112), (1, 16, 56, 56), (1, 16, 28, 28),
            (1, 32, 14, 14), (1, 48, 14, 14), (1, 80, 7, 7), (1, 160, 7, 7)]
ALL_R = (0, 1, 2, 3)


@pytest.mark.parametrize(
    'name, kwargs, size, expected',
    [
        # MMPretrain test_resnet (224 px), tiny widths.
        ('KWResNet', dict(out_indices=ALL_R), 224,
         _resnet_shapes([8, 16, 32, 64], 224)),
        ('KWResNet', dict(depth=50, out_indices=ALL_R), 224,
         _resnet_shapes([32, 64, 128, 256], 224)),
        ('KWResNet', dict(depth=50, out_indices=ALL_R, drop_path_rate=0.5),
         224, _resnet_shapes([32, 64, 128, 256], 224)),
        ('KWResNet', dict(depth=50, out_indices=(0, 1, 2)), 224,
         _resnet_shapes([32, 64, 128], 224)),
        ('KWResNet', dict(depth=50), 224, [(1, 256, 7, 7)]),
        # ResNetV1c / V1d are ResNet with deep_stem (and avg_down).
        ('KWResNet',
         dict(depth=50, deep_stem=True, avg_down=True, out_indices=ALL_R), 224,
         _resnet_shapes([32, 64, 128, 256], 224)),
        # MMDetection test_resnet (32 px), with its norm_eval=True default.
        ('KWResNet',
         dict(
             out_indices=ALL_R,
             norm_eval=True,
             base_channels=64,
             stem_channels=64), 32, _resnet_shapes([64, 128, 256, 512], 32)),
        ('KWResNet',
         dict(depth=50, out_indices=ALL_R, norm_eval=True,
              base_channels=1), 32, _resnet_shapes([4, 8, 16, 32], 32)),
        ('KWResNet',
         dict(
             depth=50, out_indices=(0, 1, 2), norm_eval=True,
             base_channels=1), 32, _resnet_shapes([4, 8, 16], 32)),
        # MMPretrain test_mobilenet_v2 (224 px).
        ('KWMobileNetV2', dict(widen_factor=1.0,
                               out_indices=range(8)), 224, MNV2_100),
        ('KWMobileNetV2', dict(widen_factor=0.5,
                               out_indices=range(7)), 224, MNV2_050),
        ('KWMobileNetV2', dict(widen_factor=2.0), 224, [(1, 2560, 7, 7)]),
        ('KWMobileNetV2', dict(widen_factor=1.0), 224, [(1, 1280, 7, 7)]),
        ('KWMobileNetV2', dict(widen_factor=1.0, out_indices=(0, 2, 4)), 224,
         [MNV2_100[0], MNV2_100[2], MNV2_100[4]]),
        ('KWMobileNetV2',
         dict(
             widen_factor=1.0, act_cfg=dict(type='ReLU'),
             out_indices=range(7)), 224, MNV2_100[:7]),
        # MMPretrain test_convnext (224 px): arch by name, a custom 5-stage
        # arch,
        # gap_before_final_norm on and off.
        ('KWConvNeXt', dict(
            arch='atto', out_indices=(0, 1, 2, 3)), 224, [(1, 40), (1, 80),
                                                          (1, 160), (1, 320)]),
        ('KWConvNeXt',
         dict(
             arch=dict(
                 depths=[2, 3, 4, 5, 6], channels=[16, 32, 64, 128, 256]),
             out_indices=(0, 1, 2, 3, 4)), 224, [(1, 16), (1, 32), (1, 64),
                                                 (1, 128), (1, 256)]),
        # Upstream turns a negative index into 4 + index whatever the number of
        # stages; mmkw counts from the real end (-1 is the 5th stage here).
        ('KWConvNeXt',
         dict(
             arch=dict(depths=[1] * 5, channels=[8, 16, 16, 32, 32]),
             out_indices=-1), 224, [(1, 32)]),
        ('KWConvNeXt',
         dict(out_indices=(0, 1, 2, 3),
              gap_before_final_norm=False), 224, [(1, 16, 56, 56),
                                                  (1, 32, 28, 28),
                                                  (1, 64, 14, 14),
                                                  (1, 128, 7, 7)]),
        ('KWConvNeXt', dict(out_indices=-1, with_cp=True), 224, [(1, 128)]),
        # Upstream's default is linear_pw_conv=True; KWConvNeXt runs (and only
        # takes) the False mode, as the official code does -- documented.
        ('KWConvNeXt', dict(out_indices=-1,
                            linear_pw_conv=False), 224, [(1, 128)]),
    ])
def test_output_shapes(name, kwargs, size, expected):
    model = BUILD[name](**kwargs)
    model.init_weights()
    assert model.train() is model
    assert _shapes(model, size) == expected


@pytest.mark.parametrize('name', sorted(BUILD))
def test_negative_out_indices_count_from_the_end(name):
    last = NUM_OUTS[name] - 1
    torch.manual_seed(0)
    negative = BUILD[name](out_indices=(0, -1))
    positive = BUILD[name](out_indices=[0, last])
    assert tuple(negative.out_indices) == tuple(
        positive.out_indices) == (0, last)
    positive.load_state_dict(negative.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(negative.eval()(x), positive.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# --------------------------------------------------------------------------
# frozen_stages (and train()/eval() returning the module).


def _frozen_names(model, frozen_stages):
    """The modules upstream's frozen_stages freezes, by name."""
    if isinstance(model, KWConvNeXt):
        return [
            f'{part}.{i}' for i in range(frozen_stages)
            for part in ('downsample_layers', 'stages')
        ]
    if frozen_stages < 0:
        return []
    if isinstance(model, KWMobileNetV2):
        stem = ['conv1']
    else:
        stem = ['stem'] if model.deep_stem else ['conv1', model.norm1_name]
    return stem + [f'layer{i}' for i in range(1, frozen_stages + 1)]


def _check_frozen(model, frozen, frozen_warehouses):
    prefixes = tuple(n + '.' for n in frozen)
    for name, param in model.named_parameters():
        if name.startswith('warehouse_manager.'):
            continue
        assert param.requires_grad != name.startswith(prefixes), name
    for name, m in model.named_modules():
        if isinstance(m, NORMS):
            # Upstream: BNs of the frozen stages in eval mode (MobileNetV2
            # leaves its stem's BN training; KWMobileNetV2 freezes it too, so
            # a frozen stage's output does not change -- documented).
            assert m.training != (name + '.').startswith(prefixes), name
    if isinstance(model, KWConvNeXt):  # upstream checks the containers
        for name in _frozen_names(model, len(model.stages)):
            assert model.get_submodule(name).training != (name in frozen), \
                name
    weights = model.warehouse_manager.weights
    assert set(model.frozen_warehouses()) == frozen_warehouses
    for name, weight in weights.items():
        assert weight.requires_grad == (name not in frozen_warehouses), name


_MNV2_WH = [
    'stage1_dw', 'stage1_pw', 'stage2_pw', 'stage2_dw', 'stage3_pw',
    'stage3_dw', 'stage4_pw', 'stage4_dw', 'stage5_pw', 'stage5_dw',
    'stage6_pw', 'stage6_dw'
]


@pytest.mark.parametrize(
    'name, kwargs, frozen_warehouses',
    [
        ('KWResNet', dict(frozen_stages=-1), set()),
        ('KWResNet', dict(frozen_stages=0), set()),  # the stem conv is plain
        ('KWResNet', dict(depth=50, frozen_stages=1), {'stage0'}),
        ('KWResNet', dict(frozen_stages=4),
         {'stage0', 'stage1', 'stage2', 'stage3'}),
        ('KWResNet',
         dict(depth=50, deep_stem=True, avg_down=True,
              frozen_stages=1), {'stage0'}),
        ('KWMobileNetV2', dict(frozen_stages=-1), set()),
        ('KWMobileNetV2', dict(frozen_stages=0), {'stem'}),
        ('KWMobileNetV2', dict(frozen_stages=1),
         {'stem', 'stage1_dw', 'stage1_pw'}),
        ('KWMobileNetV2', dict(frozen_stages=7), {'stem', *_MNV2_WH}),
        ('KWConvNeXt', dict(frozen_stages=0), set()),
        ('KWConvNeXt', dict(frozen_stages=2), {
            'stem', 'downsample1', 'stage0_depthwise', 'stage0_pointwise',
            'stage1_depthwise', 'stage1_pointwise'
        }),
    ])
def test_frozen_stages(name, kwargs, frozen_warehouses):
    model = BUILD[name](**kwargs)
    model.init_weights()
    assert model.train() is model and model.training
    frozen = _frozen_names(model, kwargs['frozen_stages'])
    _check_frozen(model, frozen, frozen_warehouses)
    # train() re-applies the freezing, as upstream's does.
    for param in model.parameters():
        param.requires_grad_(True)
    assert model.train() is model
    _check_frozen(model, frozen, frozen_warehouses)
    assert model.eval() is model
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize('name, frozen_module', [
    ('KWResNet', 'layer2'),
    ('KWMobileNetV2', 'layer2'),
    ('KWConvNeXt', 'stages.1'),
])
def test_frozen_stages_output_survives_a_training_step(name, frozen_module):
    """What frozen_stages is for: a training step leaves the frozen stages'
    function unchanged -- their kernels come from frozen warehouses."""
    torch.manual_seed(0)
    model = BUILD[name](frozen_stages=2).train()
    seen = []
    model.get_submodule(frozen_module).register_forward_hook(
        lambda module, args, out: seen.append(out.detach().clone()))
    x = torch.rand(2, 3, 64, 64)
    out = model(x)[-1]
    (out * torch.randn_like(out)).sum().backward()
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is not None:
                param -= 0.5 * param.grad
    after = model(x)[-1]
    torch.testing.assert_close(seen[1], seen[0], rtol=0, atol=0)
    assert not torch.allclose(after, out)


# --------------------------------------------------------------------------
# norm_eval, norm_cfg, act_cfg.


@pytest.mark.parametrize('norm_eval', [True, False])
@pytest.mark.parametrize('name', ['KWResNet', 'KWMobileNetV2'])
def test_norm_eval(name, norm_eval):
    # Upstream's check walks every _BatchNorm of the model, so it covers the
    # attentions' BN1d too. (ConvNeXt has no norm_eval upstream; mmkw's is an
    # extension tested in test_kw_convnext.py.)
    model = BUILD[name](norm_eval=norm_eval)
    model.init_weights()
    assert model.train() is model
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    # The default norm_cfg is BN: every norm is a _BatchNorm.
    assert len(norms) == len(
        [m for m in model.modules() if isinstance(m, NORMS)])
    assert any(isinstance(m, nn.BatchNorm1d) for m in norms)
    assert all(m.training != norm_eval for m in norms)
    assert all(m.training for m in model.modules() if isinstance(m, KWConvNd))


def test_mmdet_detector_settings():
    """MMDetection's usual backbone settings: frozen stem and first stage,
    norms frozen by norm_cfg and kept in eval mode."""
    model = resnet(
        depth=50,
        out_indices=ALL_R,
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch').train()
    for m in _outside_attentions(model):
        if isinstance(m, _BatchNorm):
            assert not m.training
            assert not any(p.requires_grad for p in m.parameters())
    outs = model(torch.randn(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == _resnet_shapes([32, 64, 128, 256],
                                                            32)
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    weights = model.warehouse_manager.weights
    assert weights['stage0'].grad is None
    for stage in ('stage1', 'stage2', 'stage3'):
        assert weights[stage].grad.abs().sum() > 0, stage


_GN = dict(type='GN', num_groups=2, requires_grad=True)
_GN_CASES = [
    # MMDetection's GN ResNet50 (32 px) and MMPretrain's GN MobileNetV2.
    ('KWResNet', dict(depth=50, base_channels=4, out_indices=ALL_R), 32,
     _resnet_shapes([16, 32, 64, 128], 32)),
    ('KWMobileNetV2', dict(widen_factor=1.0,
                           out_indices=range(7)), 224, MNV2_100[:7]),
]


@pytest.mark.parametrize('name, kwargs, size, expected', _GN_CASES)
def test_group_norm(name, kwargs, size, expected):
    model = BUILD[name](norm_cfg=_GN, **kwargs)
    backbone_norms = [
        m for m in _outside_attentions(model) if isinstance(m, NORMS)
    ]
    assert backbone_norms and all(
        isinstance(m, nn.GroupNorm) for m in backbone_norms)
    model.init_weights()
    assert _shapes(model.train(), size) == expected
    # The attentions follow by default: a GN backbone has no BatchNorm
    # anywhere (upstream's own check: every norm is a GroupNorm), and its
    # output does not depend on the other samples of the batch.
    assert all(
        isinstance(m, nn.GroupNorm) for m in model.modules()
        if isinstance(m, (nn.GroupNorm, _BatchNorm)))
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        together = model.train()(x)[-1]
        alone = model(x[:1])[-1]
    torch.testing.assert_close(together[:1], alone, rtol=1e-4, atol=1e-4)
    # An explicit attention_norm_cfg still wins.
    model = BUILD[name](
        norm_cfg=_GN, attention_norm_cfg=dict(type='BN1d'), **kwargs)
    assert any(isinstance(m, _BatchNorm) for m in model.modules())


@pytest.mark.parametrize('name, default_act', [('KWMobileNetV2', nn.ReLU6),
                                               ('KWConvNeXt', nn.GELU)])
def test_act_cfg(name, default_act):
    model = BUILD[name](act_cfg=dict(type='ReLU'))
    assert not any(isinstance(m, default_act) for m in model.modules())
    if name == 'KWMobileNetV2':
        acts = [
            m.activate for m in model.modules()
            if isinstance(m, ConvModule) and m.with_activation
        ]
    else:
        acts = [m.act for m in model.modules() if isinstance(m, ConvNeXtBlock)]
    assert acts and all(type(a) is nn.ReLU for a in acts)
    assert any(isinstance(m, default_act) for m in BUILD[name]().modules())


# --------------------------------------------------------------------------
# with_cp, zero_init_residual, ResNet stem and style, widen_factor, arch.


@pytest.mark.parametrize('name, kwargs', [
    ('KWResNet', dict(depth=50)),
    ('KWMobileNetV2', dict()),
    ('KWConvNeXt', dict()),
])
def test_with_cp_matches_without(name, kwargs):
    kwargs = dict(kwargs, out_indices=range(NUM_OUTS[name]))
    torch.manual_seed(0)
    plain = BUILD[name](**kwargs)
    checkpointed = BUILD[name](with_cp=True, **kwargs)
    blocks = [m for m in checkpointed.modules() if isinstance(m, BLOCKS)]
    assert blocks and all(m.with_cp for m in blocks)
    assert not any(m.with_cp for m in plain.modules() if isinstance(m, BLOCKS))
    checkpointed.load_state_dict(plain.state_dict())
    # In float64: with batch statistics of two small images the float32
    # gradients of a deep net (plain MMPretrain ResNet50 too) differ by
    # rounding noise well above assert_close's float32 tolerance.
    plain.double()
    checkpointed.double()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    results = []
    for model in (plain, checkpointed):
        inp = x.clone().requires_grad_(True)
        outs = model.train()(inp)
        torch.manual_seed(1)
        sum((o * torch.randn_like(o)).sum() for o in outs).backward()
        results.append(
            ([o.detach()
              for o in outs], inp.grad, [p.grad for p in model.parameters()]))
    (outs_a, inp_a, grads_a), (outs_b, inp_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(inp_a, inp_b)
    for (pname, _), a, b in zip(plain.named_parameters(), grads_a, grads_b):
        assert (a is None) == (b is None), pname
        if a is not None:
            torch.testing.assert_close(a, b, msg=pname)


@pytest.mark.parametrize('zero', [True, False])
@pytest.mark.parametrize('depth', [18, 50])
def test_zero_init_residual(depth, zero):
    model = resnet(depth=depth, zero_init_residual=zero)
    model.init_weights()
    last_norms = [
        m.norm3 if isinstance(m, Bottleneck) else m.norm2
        for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))
    ]
    assert last_norms
    for norm in last_norms:
        all_zero = not norm.weight.any() and not norm.bias.any()
        assert all_zero == zero
    # Deliberate, documented default: the official KW models do not zero-init
    # (upstream's default is True); upstream's tests always pass it.
    assert resnet().zero_init_residual is False


@pytest.mark.parametrize('depth', [18, 50])
def test_resnet_stem_channels(depth):
    # MMDetection's stem test, with MMPretrain's meaning of stem_channels
    # (independent of base_channels): odd widths draw from KW warehouses too.
    model = KWResNet(
        depth, stem_channels=3, base_channels=2, out_indices=ALL_R)
    assert model.stem_channels == 3
    assert model.conv1.out_channels == 3
    assert model.norm1.num_features == 3
    assert model.layer1[0].conv1.in_channels == 3
    expansion = 4 if depth == 50 else 1
    assert _shapes(
        model.train(), 32,
        batch=2) == [(2, 2 * expansion * 2**i, 8 // 2**i, 8 // 2**i)
                     for i in range(4)]


def test_resnet_deep_stem_and_avg_down():
    # ResNetV1c / ResNetV1d.
    model = resnet(depth=50, deep_stem=True, avg_down=True)
    assert len(model.stem) == 3
    assert all(isinstance(m, ConvModule) for m in model.stem)
    with torch.no_grad():
        assert model.stem(torch.randn(1, 3, 224,
                                      224)).shape == (1, 8, 112, 112)
    assert isinstance(model.layer2[0].downsample[0], nn.AvgPool2d)


@pytest.mark.parametrize('style, strides', [('pytorch', ((1, 1), (2, 2))),
                                            ('caffe', ((2, 2), (1, 1)))])
def test_resnet_style_places_the_stride(style, strides):
    model = resnet(depth=50, style=style)
    block = model.layer2[0]
    assert isinstance(block.conv1, KWConvNd)
    assert isinstance(block.conv2, KWConvNd)
    assert (block.conv1.stride, block.conv2.stride) == strides
    assert (block.conv1.kernel_size, block.conv2.kernel_size) == ((1, 1), (3,
                                                                           3))
    assert (block.conv1.in_channels, block.conv1.out_channels,
            block.conv2.out_channels) == (32, 16, 16)
    assert _shapes(model.train(), 64, batch=2) == [(2, 256, 2, 2)]


@pytest.mark.parametrize('widen_factor, channels', [
    (0.5, [16, 8, 16, 16, 32, 48, 80, 160, 1280]),
    (1.0, [32, 16, 24, 32, 64, 96, 160, 320, 1280]),
    (2.0, [64, 32, 48, 64, 128, 192, 320, 640, 2560]),
])
def test_mobilenet_v2_widen_factor(widen_factor, channels):
    model = KWMobileNetV2(widen_factor=widen_factor)
    assert model.widen_factor == widen_factor
    assert [model.conv1.conv.out_channels] + [
        getattr(model, name)[-1].conv[-1].conv.out_channels
        if name != 'conv2' else model.conv2.conv.out_channels
        for name in model.layers
    ] == channels


@pytest.mark.parametrize('arch, depths, channels', [
    ('atto', [2, 2, 6, 2], [40, 80, 160, 320]),
    (dict(depths=[2, 3, 4, 5, 6], channels=[16, 32, 64, 128, 256]),
     [2, 3, 4, 5, 6], [16, 32, 64, 128, 256]),
])
def test_convnext_arch(arch, depths, channels):
    model = KWConvNeXt(arch=arch)
    assert list(model.depths) == depths
    assert list(model.channels) == channels
    assert [len(stage) for stage in model.stages] == depths
    assert [stage[0].depthwise_conv.in_channels
            for stage in model.stages] == channels
    assert model.out_indices == (len(depths) - 1, )
