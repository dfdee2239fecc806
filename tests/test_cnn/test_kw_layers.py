"""KWConv1d / KWConv2d / KWLinear against hand-built references."""
import copy
import io
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmkw.cnn import (ZERO_CELL, ConvGeometry, KWConv1d, KWConv2d, KWLinear,
                      WarehouseManager, assemble_kernels, get_temperature,
                      reset_kw_attentions, set_temperature)


class TinyNet(nn.Module):
    """Two 2-D KW convs sharing warehouse ``w`` (+ optional extras)."""

    def __init__(self, budget=1.0, groups=1, bias=False, **manager_kwargs):
        super().__init__()
        self.a = KWConv2d(
            8, 16, 3, padding=1, groups=groups, bias=bias, warehouse='w')
        self.b = KWConv2d(
            16,
            16, (3, 1),
            padding=(1, 0),
            stride=2,
            groups=groups,
            bias=bias,
            warehouse='w')
        self.manager = WarehouseManager(budget=budget, **manager_kwargs)
        self.manager.declare('w')
        self.plan = self.manager.bind(self)

    def forward(self, x):
        return self.b(self.a(x))


class SeqNet(nn.Module):
    """A 1-D KW conv and a KW linear layer with their own warehouses."""

    def __init__(self):
        super().__init__()
        self.conv = KWConv1d(6, 12, 3, padding=1, bias=True, warehouse='c')
        self.fc = KWLinear(12, 10, warehouse='f')
        self.manager = WarehouseManager()
        self.manager.declare('c')
        self.manager.declare('f')
        self.manager.bind(self)


def cut_kernel(layer, beta):
    """The static kernel a layer uses at tau = 1: cell ``beta[j]`` placed at
    spatial position s, output group o and input group i of mixture
    ``j = s * G_o * G_i + o * G_i + i`` (the zero cell leaves zeros)."""
    warehouse = layer.warehouse_weight().detach()
    c_o, c_i = warehouse.shape[1:3]
    g_s, g_o, g_i = layer.geometry.split
    kernel = torch.zeros(layer.weight_shape, dtype=warehouse.dtype)
    flat = kernel.reshape(*kernel.shape[:2], -1)  # [C_out, C_in/g, G_s]
    for s, o, i in itertools.product(range(g_s), range(g_o), range(g_i)):
        cell = beta[s * g_o * g_i + o * g_i + i]
        if cell != ZERO_CELL:
            flat[o * c_o:(o + 1) * c_o, i * c_i:(i + 1) * c_i,
                 s] = warehouse[cell].reshape(c_o, c_i)
    return kernel


def _randomise(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()


@pytest.mark.parametrize('groups', [1, 2, 8])
@pytest.mark.parametrize('bias', [False, True])
def test_conv2d_at_tau_one_is_a_plain_conv(groups, bias):
    net = TinyNet(groups=groups, bias=bias)
    _randomise(net)
    set_temperature(net, 1.0)
    x = torch.randn(2, 8, 7, 6)
    for name in ('a', 'b'):
        layer = getattr(net, name)
        beta = net.plan.layer(name).beta
        expected = F.conv2d(x, cut_kernel(layer,
                                          beta), layer.bias, layer.stride,
                            layer.padding, layer.dilation, groups)
        assert torch.allclose(layer(x), expected, atol=1e-5)
        x = expected


def test_conv1d_and_linear_at_tau_one():
    net = SeqNet()
    _randomise(net)
    set_temperature(net, 1.0)
    x = torch.randn(3, 6, 5)
    conv = net.conv
    expected = F.conv1d(
        x,
        cut_kernel(conv,
                   net.manager.plan.layer('conv').beta),
        conv.bias,
        padding=1)
    assert torch.allclose(conv(x), expected, atol=1e-5)
    fc = net.fc
    weight = cut_kernel(fc, net.manager.plan.layer('fc').beta)[..., 0]
    feats = torch.randn(3, 4, 12)
    assert torch.allclose(
        fc(feats), F.linear(feats, weight, fc.bias), atol=1e-5)
    assert fc(feats[:, 0]).shape == (3, 10)


def test_assembly_index_order():
    torch.manual_seed(1)
    n, c_o, c_i = 5, 2, 3
    weight_shape = (4, 6, 3, 2)  # G_s = 6 (3x2 kernel), G_o = 2, G_i = 2
    split = (6, 2, 2)
    m = 24
    batch = 2
    alpha = torch.randn(batch * m, n)
    warehouse = torch.randn(n, c_o, c_i, 1, 1)
    got = assemble_kernels(
        alpha, warehouse,
        ConvGeometry(weight_shape, (1, 1), (0, 0), (1, 1), 1, split))
    expected = torch.zeros(batch, *weight_shape)
    for b in range(batch):
        for j in range(m):
            s, rest = divmod(j, split[1] * split[2])
            o, i = divmod(rest, split[2])
            row, col = divmod(s, weight_shape[3])
            cell = sum(alpha[b * m + j, k] * warehouse[k, :, :, 0, 0]
                       for k in range(n))
            expected[b, o * c_o:(o + 1) * c_o, i * c_i:(i + 1) * c_i, row,
                     col] = cell
    assert got.shape == (batch * 4, 6, 3, 2)
    assert torch.allclose(got, expected.reshape(got.shape), atol=1e-5)


def test_nonlocal_basis():
    net = TinyNet(budget=0.5, nonlocal_basis_ratio=0.0625)
    wh = net.plan.warehouses[0]
    n = wh.num_cells
    for name in ('a', 'b'):
        lp = net.plan.layer(name)
        att = getattr(net, name).attention
        m = lp.num_mixtures
        local = int(0.5 * m)
        basis = max(int((n - local) * 0.0625), 16)
        assert att.num_local_cells == local and att.num_basis == basis
        assert att.fc2.bias is None
        assert att.fc2.weight.shape == ((local + basis + 1) * m,
                                        att.hidden_channels)
        assert att.fc3.weight.shape == (n - local, basis)
        assert att.basis_bias.shape == (m * (n + 1), )
        hidden = att.hidden_channels
        expected = (
            att.fc1.weight.numel() + 2 * hidden +
            (local + basis + 1) * m * hidden + (n - local) * basis + m *
            (n + 1))
        assert sum(p.numel() for p in att.parameters()) == expected
        x = torch.randn(2, getattr(net, name).in_channels, 5, 5)
        assert att(x).alpha.shape == (2 * m, n)


def test_warehouse_stored_once():
    net = TinyNet()
    warehouse = net.manager.weights['w']
    assert net.a.warehouse_weight() is warehouse
    assert net.b.warehouse_weight() is warehouse
    assert sum(p is warehouse for p in net.parameters()) == 1
    keys = [k for k, v in net.state_dict().items() if v.dim() == 5]
    assert keys == ['manager.weights.w']


def test_deepcopy_keeps_sharing_inside_the_copy():
    net = TinyNet()
    net.eval()
    x = torch.randn(2, 8, 6, 6)
    before = net(x)
    twin = copy.deepcopy(net)
    assert twin.a.warehouse_weight() is twin.manager.weights['w']
    assert twin.b.warehouse_weight() is twin.manager.weights['w']
    assert twin.manager.weights['w'] is not net.manager.weights['w']
    with torch.no_grad():
        twin.manager.weights['w'].mul_(2)
    assert torch.equal(twin.a.warehouse_weight(), 2 * net.a.warehouse_weight())
    assert torch.equal(net(x), before)
    assert not torch.allclose(twin(x), before)


def test_state_dict_round_trip():
    net = TinyNet(budget=0.5)
    _randomise(net)
    set_temperature(net, 0.37)
    net.eval()
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert 'a.attention.temperature' in state
    assert not any('init_assignment' in k for k in state)
    other = TinyNet(budget=0.5)
    assert get_temperature(other) == 1.0
    other.load_state_dict(state)
    other.eval()
    assert get_temperature(other) == pytest.approx(0.37)
    assert torch.equal(other.a.attention.init_assignment,
                       net.a.attention.init_assignment)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(other(x), net(x))


@pytest.mark.parametrize('convert, dtype', [
    (lambda m: m.double(), torch.float64),
    (lambda m: m.half(), torch.float16),
    (lambda m: m.to(torch.float64), torch.float64),
    (lambda m: m.to('cpu', torch.bfloat16), torch.bfloat16),
])
def test_dtype_conversion(convert, dtype):
    net = convert(TinyNet())
    assert net.a.warehouse_weight().dtype == dtype
    assert net.a.warehouse_weight() is net.manager.weights['w']
    assert net.a.attention.temperature.dtype == dtype
    if dtype == torch.float64:
        net.eval()
        out = net(torch.randn(2, 8, 6, 6, dtype=dtype))
        assert out.dtype == torch.float64 and torch.isfinite(out).all()


def test_temperature_control():
    net = TinyNet()
    assert get_temperature(net) == 1.0
    assert set_temperature(net, 0.25) == 2
    assert get_temperature(net) == 0.25
    for bad in (-0.1, 1.5, float('nan')):
        with pytest.raises(ValueError, match=r'\[0, 1\].*' + str(bad)):
            set_temperature(net, bad)
    net.a.attention.temperature.fill_(0.5)
    with pytest.raises(ValueError, match='different temperatures'):
        get_temperature(net)
    assert get_temperature(nn.Linear(2, 2)) is None


def test_unbound_layer():
    layer = KWConv2d(4, 4, 3, warehouse='lonely')
    with pytest.raises(RuntimeError, match="'lonely' is not bound"):
        layer(torch.randn(1, 4, 5, 5))


def test_bind_errors():
    net = nn.Sequential(KWConv2d(4, 4, 3, warehouse='x'))
    manager = WarehouseManager()
    manager.declare('y')
    with pytest.raises(ValueError, match="'x', which was not declared"):
        manager.bind(net)
    with pytest.raises(ValueError, match='no KW layers'):
        manager.bind(nn.Sequential(nn.Conv2d(2, 2, 1)))
    with pytest.raises(ValueError, match='budget.*-2'):
        WarehouseManager(budget=-2)


@pytest.mark.parametrize('budget, tau', [(1.0, 0.5), (0.5, 0.0), (2.0, 1.0)])
def test_every_parameter_gets_a_gradient(budget, tau):
    torch.manual_seed(0)
    net = TinyNet(budget=budget, bias=True)
    set_temperature(net, tau)
    net.train()
    out = net(torch.randn(3, 8, 6, 6))
    (out**2).mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        # At tau = 1 the attention is bypassed, so only its input side may
        # stay at zero; the warehouse and biases always learn.
        if tau < 1 or 'attention' not in name:
            assert p.grad.abs().sum() > 0, name
    assert torch.isfinite(out).all()


def test_init_weights_reaches_warehouses_and_attentions():
    """The manager re-initialises the warehouses it owns; the network's
    attentions are reset from the network (any depth, nn.Sequential too)."""
    net = nn.Sequential(TinyNet())  # nn.Sequential has no init_weights
    tiny = net[0]
    with torch.no_grad():
        for p in tiny.parameters():
            p.fill_(float('nan'))
    tiny.manager.init_weights()
    for p in tiny.manager.parameters():
        assert torch.isfinite(p).all()
    assert torch.isnan(tiny.a.attention.fc2.weight).all()
    assert reset_kw_attentions(net) == 2
    for name, p in tiny.named_parameters():
        assert torch.isfinite(p).all(), name
    assert torch.equal(tiny.a.attention.norm1.weight,
                       torch.ones_like(tiny.a.attention.norm1.weight))
    # A copy is initialised on its own.
    twin = copy.deepcopy(tiny)
    with torch.no_grad():
        twin.a.attention.fc2.weight.fill_(float('nan'))
        tiny.a.attention.fc2.weight.fill_(float('nan'))
    reset_kw_attentions(twin)
    assert torch.isfinite(twin.a.attention.fc2.weight).all()
    assert torch.isnan(tiny.a.attention.fc2.weight).all()
