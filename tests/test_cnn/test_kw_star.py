"""KW* (paper Table 17): KW attention plus ODConv's input-channel,
output-channel and spatial attentions."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import CONFIG_DIR

from mmkw.cnn import (KWConv2d, KWStarAttention, WarehouseManager,
                      assemble_kernels, kw_conv_implementation,
                      set_temperature)
from mmkw.models import build_model_from_config


class StarNet(nn.Module):

    def __init__(self, groups=1, bias=True):
        super().__init__()
        self.conv = KWConv2d(
            8,
            16 if groups == 1 else 8,
            3,
            padding=1,
            groups=groups,
            bias=bias,
            warehouse='w')
        self.warehouse_manager = WarehouseManager(attention_type='kw_star')
        self.warehouse_manager.declare('w')
        self.warehouse_manager.bind(self)

    def forward(self, x):
        return self.conv(x)


def _odconv_style(layer, x):
    """ODConv's formulation: the spatial attention multiplies the assembled
    kernel, the channel attention the input, the filter attention the
    output."""
    att = layer.attention
    hidden = att._hidden(x)
    alpha = att._mixture(hidden)
    channel = torch.sigmoid(att.channel_fc(hidden))
    filter_ = torch.sigmoid(att.filter_fc(hidden))
    spatial = torch.sigmoid(att.spatial_fc(hidden))
    batch = x.shape[0]
    kernels = assemble_kernels(alpha, layer.warehouse_weight(), layer.geometry)
    kernels = kernels.reshape(batch, -1, *kernels.shape[1:-2], 3, 3) * \
        spatial.reshape(batch, 1, 1, 3, 3)
    out = F.conv2d(
        (x * channel[:, :, None, None]).reshape(1, -1, 6, 6),
        kernels.reshape(-1, *kernels.shape[2:]),
        padding=1,
        groups=layer.groups * batch)
    out = out.reshape(batch, -1, 6, 6) * filter_[:, :, None, None]
    return out + layer.bias[None, :, None, None]


@pytest.mark.parametrize('groups', [1, 8])
@pytest.mark.parametrize('impl', ['blocked', 'reference', 'unfold'])
def test_layer_matches_odconv_formulation(groups, impl):
    torch.manual_seed(0)
    net = StarNet(groups=groups).eval()
    with torch.no_grad():
        net.conv.bias.normal_()
    assert isinstance(net.conv.attention, KWStarAttention)
    x = torch.rand(3, 8, 6, 6)
    with kw_conv_implementation(impl), torch.no_grad():
        out = net(x)
        expected = _odconv_style(net.conv, x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_gradients_reach_every_head():
    net = StarNet().train()
    set_temperature(net, 0.5)  # at 1 the mixture is the fixed assignment
    net(torch.rand(2, 8, 6, 6)).square().mean().backward()
    att = net.conv.attention
    for head in (att.channel_fc, att.filter_fc, att.spatial_fc, att.fc2):
        assert head.weight.grad is not None and head.weight.grad.abs().sum()


def test_pointwise_layers_have_no_spatial_head():
    conv = KWConv2d(8, 16, 1, warehouse='w')
    net = nn.Module()
    net.conv = conv
    net.warehouse_manager = WarehouseManager(attention_type='kw_star')
    net.warehouse_manager.declare('w')
    net.warehouse_manager.bind(net)
    assert conv.attention.spatial_fc is None
    assert conv(torch.rand(2, 8, 4, 4)).shape == (2, 16, 4, 4)


def test_mobilenet_v2_kwstar4x_count():
    """Paper: 12.51M (KW 4x: 11.38M)."""
    for config, expected in (('kwstar4x-mobilenet-v2_8xb32_in1k.py',
                              12_506_955), ('kw4x-mobilenet-v2_8xb32_in1k.py',
                                            11_379_382)):
        model = build_model_from_config(CONFIG_DIR / config, device='meta')
        assert sum(p.numel() for p in model.parameters()) == expected


def test_bad_attention_type():
    with pytest.raises(
            ValueError,
            match="attention_type must be one of "
            r"\['kw', 'kw_star'\], got 'od'"):
        WarehouseManager(attention_type='od')
