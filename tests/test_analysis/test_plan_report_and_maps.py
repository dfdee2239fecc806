"""Honest FLOPs: the counter sees the kernel assembly and the attention of
every KW layer, whichever formulation runs eagerly."""
import math

import pytest
import torch
from helpers import CONFIG_DIR
from mmengine.config import Config
from mmpretrain.registry import MODELS

import mmkw  # noqa: F401  (registers the KW backbones)
from mmkw.analysis import count_complexity, plain_counterpart
from mmkw.cnn import KWConvNd, kw_conv_implementation

SHAPE = (3, 64, 64)


def _kw_inputs(model):
    """Input numel of every KW layer on one ``SHAPE`` image."""
    sizes = {}

    def record(module, args, output):
        sizes.setdefault(module, args[0].numel())

    hooks = [
        m.register_forward_hook(record) for m in model.modules()
        if isinstance(m, KWConvNd)
    ]
    model.eval()(torch.rand(1, *SHAPE))
    for h in hooks:
        h.remove()
    return sizes


@pytest.mark.parametrize('impl', ['blocked', 'reference'])
def test_counter_sees_assembly_and_attention(impl):
    model = MODELS.build(
        dict(type='KWResNet', depth=18, base_channels=8, stem_channels=8))
    with kw_conv_implementation(impl):
        result = count_complexity(model, SHAPE)
    ops = result['by_operator']
    layers = [m for m in model.modules() if isinstance(m, KWConvNd)]
    plan = model.plan
    # Assembly: [m, n] attention times [n, cell] warehouse, per layer.
    assembly = sum(lp.num_mixtures *
                   plan.warehouses[lp.warehouse_index].num_cells *
                   math.prod(plan.warehouses[lp.warehouse_index].cell_shape)
                   for lp in plan.layers)
    assert ops['mm'] == assembly
    # Pooling: one FLOP per input element of every KW layer.
    assert ops['mean'] == sum(_kw_inputs(model).values())
    # The attention's fc layers and normalisation are counted.
    assert ops['linear'] > 0 and ops['abs'] > 0 and ops['div'] > 0
    # The convolutions cost what the plain network's do.
    plain = count_complexity(plain_counterpart(model), SHAPE)
    assert ops['conv'] == plain['by_operator']['conv']
    assert result['flops'] == plain['flops'] + sum(
        ops[op] for op in ('mm', 'mean', 'linear', 'abs', 'sum', 'div',
                           'addcmul')) + ops['batch_norm'] - \
        plain['by_operator']['batch_norm']
    assert len(layers) == 19


def test_plain_counterpart_has_the_plain_parameters():
    model = MODELS.build(dict(type='KWResNet', depth=18))
    plain = plain_counterpart(model)
    assert not any(isinstance(m, KWConvNd) for m in plain.modules())
    from mmpretrain.models import ResNet
    reference = ResNet(depth=18)
    assert sum(p.numel() for p in plain.parameters()) == sum(
        p.numel() for p in reference.parameters())
    # The model itself is untouched.
    assert any(isinstance(m, KWConvNd) for m in model.modules())


def test_get_flops_tool(load_tool, capsys):
    tool = load_tool('analysis_tools/get_flops')
    results = tool.main(
        [str(CONFIG_DIR / 'kw1x-resnet18_8xb32_in1k.py'), '--shape', '64'])
    printed = capsys.readouterr().out
    assert 'KW FLOPs by operator' in printed
    assert results['KW']['params'] == 11_932_148  # the zoo's figure
    assert results['plain']['params'] == 11_689_512
    assert results['KW']['flops'] > results['plain']['flops']
    with pytest.raises(SystemExit):
        tool.parse_args(['c.py', '--shape', '1', '2', '3'])


def _plain_config(tmp_path) -> str:
    """A config file of a classifier without KW layers."""
    cfg = Config(
        dict(
            default_scope='mmpretrain',
            model=dict(
                type='ImageClassifier', backbone=dict(type='ResNet',
                                                      depth=18))))
    cfg.dump(str(tmp_path / 'plain.py'))
    return str(tmp_path / 'plain.py')


def test_get_flops_refuses_a_model_without_kw_layers(load_tool, tmp_path):
    tool = load_tool('analysis_tools/get_flops')
    with pytest.raises(ValueError, match='has no KW layer'):
        tool.main([_plain_config(tmp_path), '--shape', '32'])


def test_kw_plan_tool_tables(load_tool, capsys):
    tool = load_tool('analysis_tools/kw_plan')
    report = tool.main(
        [str(CONFIG_DIR / 'kw1d2x-mobilenet-v2_8xb32_in1k.py'), '--layers'])
    assert report in capsys.readouterr().out
    # Both managers, the paper's table, the totals against the plain model
    # (MMPretrain's MobileNetV2 1.0 classifier: 3,504,872 parameters).
    assert '[backbone.warehouse_manager]' in report
    assert '[head.warehouse_manager]' in report
    assert 'stage6_project  1d2x    80x160x1x1       4   80   40  512,000' \
        in report
    assert 'total            2,654,396  3,504,872  0.757x' in report
    # --layers: kernel, warehouse, split, m, first cell, beta.
    assert ('layer6.1.conv.0.conv  960x160x1x1   stage6_expand   1/2/2'
            '        4   0      0,z,z,1') in report


def test_kw_plan_of_a_detector_with_another_budget(load_tool):
    report = load_tool('analysis_tools/kw_plan').main(
        [str(CONFIG_DIR / 'mask-rcnn_kw-r50_1x_coco.py'), '--budget', '4'])
    assert 'stage0     4x' in report
    assert 'total            120,854,448  44,396,336' in report


def test_kw_plan_errors(load_tool, tmp_path):
    tool = load_tool('analysis_tools/kw_plan')
    plain = _plain_config(tmp_path)
    with pytest.raises(ValueError, match='--budget needs a KW backbone'):
        tool.main([plain, '--budget', '2'])
    with pytest.raises(ValueError, match='ImageClassifier has no KW layer'):
        tool.main([plain])


def test_vis_attention_tool(tmp_path, load_tool, capsys):
    """At temperature 1 the attention is the initial assignment: every
    mixture puts weight 1 on one of its own cells."""
    from kw_tiny import make_image_folder, tiny_classifier_cfg
    data = make_image_folder(str(tmp_path / 'images'), per_class=2)
    cfg = Config(tiny_classifier_cfg(str(tmp_path / 'work'), data))
    cfg.dump(str(tmp_path / 'cfg.py'))
    model = MODELS.build(cfg.model)
    mmkw.set_temperature(model, 1.0)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'ckpt.pth')
    maps, stats = load_tool('analysis_tools/vis_attention').main([
        str(tmp_path / 'cfg.py'),
        str(tmp_path / 'ckpt.pth'), '--split', 'train', '--num-images', '4',
        '--out-dir',
        str(tmp_path / 'out')
    ])
    assert sorted(maps) == [f'backbone.stage{i}' for i in range(4)]
    assert len(stats) == 19
    for row in stats:
        assert row['own_share'] == pytest.approx(1.0)
        assert row['negative'] == 0.0 and row['entropy'] == pytest.approx(0.0)
    for name in maps:
        assert (tmp_path / 'out' / f'{name}.png').stat().st_size > 0
    assert (tmp_path / 'out' / 'statistics.json').exists()
    printed = capsys.readouterr()
    assert '4 images of the train split' in printed.out
    # MMEngine's progress bar over the images, on stderr (stdout keeps the
    # table alone).
    assert 'Averaging the attention over 4 images' in printed.err
    assert '] 4/4,' in printed.err and '4/4' not in printed.out
    with pytest.raises(ValueError, match='has no test_dataloader'):
        load_tool('analysis_tools/vis_attention').main([
            str(tmp_path / 'cfg.py'),
            str(tmp_path / 'ckpt.pth'), '--split', 'test'
        ])


@pytest.mark.parametrize(
    'config',
    sorted(
        str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.glob('**/*.py')
        if '_base_' not in p.parts))
def test_kw_plan_on_every_config(config, load_tool):
    report = load_tool('analysis_tools/kw_plan').main(
        [str(CONFIG_DIR / config)])
    # KWConverted backbones hold their manager under the backbone too.
    assert '[backbone.warehouse_manager]' in report
    assert 'x the plain model' in report


def test_attention_maps_pair_layers_by_name_when_one_never_runs():
    """A KW layer the forward never reaches records nothing; the maps of
    the others must keep their own means (pairing by position would shift
    every later layer onto the wrong mean)."""
    import torch.nn as nn

    from mmkw.analysis.attention_maps import (AttentionRecorder,
                                              layer_statistics)
    from mmkw.cnn import KWConv2d, WarehouseManager

    class Net(nn.Module):

        def __init__(self):
            super().__init__()
            self.unused = KWConv2d(4, 4, 3, padding=1, warehouse='w')
            self.a = KWConv2d(4, 8, 3, padding=1, warehouse='w')
            self.b = KWConv2d(8, 8, 1, warehouse='w')
            self.warehouse_manager = WarehouseManager()
            self.warehouse_manager.declare('w')
            self.warehouse_manager.bind(self)

        def forward(self, x):
            return self.b(self.a(x))

    net = Net().eval()
    mmkw.set_temperature(net, 1.0)  # alpha = the initial assignment
    with AttentionRecorder(net) as recorder:
        net(torch.randn(2, 4, 6, 6))
    maps = recorder.maps()
    assert maps['w']['layers'] == ['a', 'b']
    stats = {s['layer']: s for s in layer_statistics(maps)}
    # At tau = 1 each layer draws only on its own cells.
    assert stats['a']['own_share'] == pytest.approx(1.0)
    assert stats['b']['own_share'] == pytest.approx(1.0)
