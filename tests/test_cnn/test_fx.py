"""torch.fx traces every KW backbone with a symbolic batch and a live tau."""
import pytest
import torch
import torch.fx as fx
from mmpretrain.models.utils import LayerNorm2d

import mmkw
from mmkw.engine import KWTracer
from mmkw.models import KWConvNeXt, KWMobileNetV2, KWResNet

# An early stage among the outputs: at random initialisation the last
# stage of some backbones is all but zero at any temperature.
BACKBONES = {
    'resnet18':
    lambda: KWResNet(depth=18, out_indices=(0, 3)),
    'resnet50 1/2x non-local basis':
    lambda: KWResNet(
        depth=50, budget=0.5, nonlocal_basis_ratio=0.0625, out_indices=(0, )),
    'mobilenet-v2 1/2x':
    lambda: KWMobileNetV2(budget=0.5, out_indices=(1, 7)),
    'mobilenet-v2 4x':
    lambda: KWMobileNetV2(budget=4.0, out_indices=(1, )),
    'convnext-t':
    lambda: KWConvNeXt(arch='tiny', drop_path_rate=0.0, out_indices=(0, 3)),
}


def with_layer_norm_2d_as_leaf(tracer: type) -> type:
    """MMPretrain's ``LayerNorm2d`` asserts on its input's rank, which no
    tracer can evaluate (the plain ConvNeXt does not trace either): keep it
    as one call."""

    class Tracer(tracer):

        def is_leaf_module(self, m, name):
            return isinstance(m, LayerNorm2d) or super().is_leaf_module(
                m, name)

    return Tracer


CASES = [(name, fx.Tracer)
         for name in BACKBONES] + [('resnet18', KWTracer),
                                   ('mobilenet-v2 1/2x', KWTracer)]


@pytest.mark.parametrize('name,tracer', CASES)
def test_traced_backbone_follows_temperature_and_batch(name, tracer):
    torch.manual_seed(0)
    backbone = BACKBONES[name]().eval()
    graph = with_layer_norm_2d_as_leaf(tracer)().trace(backbone)
    traced = fx.GraphModule(backbone, graph)
    for tau in (0.0, 0.5, 1.0):
        mmkw.set_temperature(backbone, tau)  # after tracing
        for batch in (1, 3):
            x = torch.randn(batch, 3, 32, 32)
            with torch.no_grad():
                expected, got = backbone(x), traced(x)
            for a, b in zip(expected, got):
                torch.testing.assert_close(b, a, rtol=0, atol=0)
    # Taus at 1 and 0 really differ, so the comparison above can fail.
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        mmkw.set_temperature(backbone, 0.0)
        at_zero = traced(x)[0]
        mmkw.set_temperature(backbone, 1.0)
        assert not torch.allclose(traced(x)[0], at_zero)


def test_default_tracer_records_one_kw_conv_call_per_layer():
    backbone = KWResNet(depth=18)
    graph = fx.symbolic_trace(backbone).graph
    calls = [
        n for n in graph.nodes if n.op == 'call_function'
        and getattr(n.target, '__name__', '') == 'kw_conv'
    ]
    layers = [
        m for m in backbone.modules() if isinstance(m, mmkw.cnn.KWConvNd)
    ]
    assert len(calls) == len(layers) == 19
    temperatures = {
        n.target
        for n in graph.nodes
        if n.op == 'get_attr' and n.target.endswith('attention.temperature')
    }
    assert len(temperatures) == 19
