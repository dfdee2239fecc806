"""ONNX export with a dynamic batch (tools/deployment/pytorch2onnx.py).

Each family's KW model is exported by the tool from a config and a saved
checkpoint, then run by ONNX Runtime at batch 1 and 4 against PyTorch's
eager (fast-path) outputs at temperature 0.
"""
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from helpers import CONFIG_DIR
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmkw import set_temperature
from mmkw.deployment import build_export_model, export_onnx

SHAPE = (32, 32)
# name: (config, overrides of cfg.model)
MODELS_TO_EXPORT = {
    'resnet18':
    ('kw1x-resnet18_8xb32_in1k.py', dict(head=dict(num_classes=4))),
    # KW classifier head (KWLinear) included.
    'mobilenet_v2':
    ('kw1d2x-mobilenet-v2_8xb32_in1k.py', dict(head=dict(num_classes=4))),
    'convnext': ('kw1x-convnext-tiny_32xb128_in1k.py',
                 dict(
                     backbone=dict(
                         arch=dict(
                             _delete_=True,
                             depths=[1, 1, 2, 1],
                             channels=[16, 32, 64, 128])),
                     head=dict(num_classes=4, in_channels=128))),
    'mask_rcnn_backbone_neck':
    ('demo/mask-rcnn_kw1x-r18_demo-shapes.py', dict()),
}


def _config_and_checkpoint(tmp_path, name):
    """A config file and a checkpoint of its model, at temperature 0."""
    config, overrides = MODELS_TO_EXPORT[name]
    cfg = Config.fromfile(CONFIG_DIR / config)
    cfg.merge_from_dict({'model': overrides})
    cfg.model.get('backbone', {}).pop('init_cfg', None)
    cfg.model.pop('init_cfg', None)
    config_file = str(tmp_path / 'config.py')
    cfg.dump(config_file)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert set_temperature(model, 0.0) > 0
    checkpoint = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    return config_file, checkpoint


def _assert_onnxruntime_matches(onnx_file, model, batches):
    session = onnxruntime.InferenceSession(
        onnx_file, providers=['CPUExecutionProvider'])
    gen = torch.Generator().manual_seed(1)
    for batch in batches:
        x = torch.randn(batch, 3, *SHAPE, generator=gen)
        with torch.no_grad():
            expected = model(x)
        expected = [expected] if isinstance(expected, torch.Tensor) \
            else list(expected)
        outputs = session.run(None, {'input': x.numpy()})
        assert len(outputs) == len(expected)
        for out, ref in zip(outputs, expected):
            assert out.shape == tuple(ref.shape)
            np.testing.assert_allclose(
                out,
                ref.numpy(),
                rtol=1e-4,
                atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize('name', list(MODELS_TO_EXPORT))
def test_export_with_dynamic_batch_matches_pytorch(name, tmp_path, load_tool,
                                                   capsys):
    config, checkpoint = _config_and_checkpoint(tmp_path, name)
    onnx_file = str(tmp_path / 'model.onnx')
    load_tool('deployment/pytorch2onnx').main([
        config, checkpoint, '--out', onnx_file, '--shape', *map(str, SHAPE),
        '--dynamic-batch', '--verify'
    ])
    printed = capsys.readouterr().out
    assert 'batch 1: max relative difference' in printed
    assert 'batch 4: max relative difference' in printed
    graph = onnx.load(onnx_file).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    model = build_export_model(config, checkpoint)
    assert {
        m.temperature.item()
        for m in model.modules() if hasattr(m, 'temperature')
    } == {0.0}
    _assert_onnxruntime_matches(onnx_file, model, (1, 4))
    if name == 'mask_rcnn_backbone_neck':
        assert [o.name for o in graph.output] == [f'feat{i}' for i in range(5)]
    else:
        assert [o.name for o in graph.output] == ['logits']


def test_torchscript_exporter_and_fixed_batch(tmp_path):
    config, checkpoint = _config_and_checkpoint(tmp_path, 'resnet18')
    model = build_export_model(config, checkpoint)
    dynamic = export_onnx(
        model,
        str(tmp_path / 'dynamic.onnx'),
        SHAPE,
        dynamic_batch=True,
        dynamo=False)
    _assert_onnxruntime_matches(dynamic, model, (1, 4))
    fixed = export_onnx(
        model, str(tmp_path / 'fixed.onnx'), SHAPE, batch_size=3)
    dim = onnx.load(fixed).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 3
    _assert_onnxruntime_matches(fixed, model, (3, ))


def test_bad_arguments(tmp_path, load_tool):
    tool = load_tool('deployment/pytorch2onnx')
    with pytest.raises(SystemExit):
        tool.parse_args(['c.py', 'm.pth', '--out', 'model.pt'])
    cfg = Config(dict(model=dict(type='Foo'), default_scope='mmengine'))
    cfg.dump(str(tmp_path / 'c.py'))
    with pytest.raises(ValueError, match="default_scope='mmengine'"):
        build_export_model(str(tmp_path / 'c.py'), 'm.pth')
    with pytest.raises(ValueError, match=r'shape must be \(H, W\)'):
        export_onnx(torch.nn.Identity(), str(tmp_path / 'x.onnx'), (0, 4))


def test_kw_star_exports_with_a_dynamic_batch(tmp_path):
    """KW* layers (ODConv heads around the KW conv) export too."""
    backbone = MODELS.build(
        dict(
            type='mmpretrain.KWMobileNetV2',
            widen_factor=0.5,
            attention_type='kw_star',
            out_indices=(2, ))).eval()
    set_temperature(backbone, 0.5)  # untrained, tau 0 would output ~0

    class FirstOutput(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = backbone

        def forward(self, x):
            return self.backbone(x)[0]

    model = FirstOutput().eval()
    onnx_file = export_onnx(
        model,
        str(tmp_path / 'kw_star.onnx'),
        SHAPE,
        dynamic_batch=True,
        dynamo=False)
    _assert_onnxruntime_matches(onnx_file, model, (1, 4))
