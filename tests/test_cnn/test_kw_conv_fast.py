"""The blocked KW convolution (the default) against the official formulation.

Every fast path is pinned to ``kw_conv_reference``: outputs and the input,
attention, warehouse, bias and folded-BN-scale gradients, in float32 and
under bf16 autocast, for both engines, one and many blocks of cell rows.
"""
import pytest
import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensorMode

import mmkw.cnn.blocked as blocked
import mmkw.cnn.native as native
from mmkw.cnn import (ConvGeometry, KWConv2d, KWLinear, WarehouseManager,
                      kw_conv, kw_conv_blocked, kw_conv_implementation,
                      kw_conv_reference, kw_conv_unfold)
from mmkw.utils import saved_tensor_bytes

# name: (C_in, C_out, kernel, stride, padding, groups, cell c_o, cell c_i,
#        cells n, spatial)
LAYERS = {
    '1x1': (16, 32, (1, 1), 1, 0, 1, 16, 16, 7, 6),
    '1x1 strided, G_i=2': (32, 16, (1, 1), 2, 0, 1, 16, 16, 5, 7),
    '3x3, G_o=2': (8, 16, (3, 3), 1, 1, 1, 8, 8, 11, 6),
    '3x3 strided, half-gcd cells': (16, 16, (3, 3), 2, 1, 1, 8, 8, 13, 9),
    '3x1 padded': (8, 8, (3, 1), 1, (1, 0), 1, 8, 4, 9, 5),
    '1x1 padded': (8, 8, (1, 1), 1, 1, 1, 8, 8, 3, 4),
    'depthwise 3x3': (16, 16, (3, 3), 1, 1, 16, 8, 1, 10, 6),
    'depthwise 3x3 large map': (16, 16, (3, 3), 1, 1, 16, 8, 1, 10, 12),
    'grouped 3x3': (8, 16, (3, 3), 1, 1, 2, 8, 4, 6, 5),
    'large map 3x3': (8, 8, (3, 3), 1, 1, 1, 8, 8, 6, 20),
    '1-D k3': (8, 16, (3, ), 1, 1, 1, 8, 8, 6, 11),
    'linear': (24, 10, (1, ), 1, 0, 1, 10, 8, 5, 1),
}


def make_inputs(name, batch, dtype=torch.float32, seed=0):
    c_in, c_out, kernel, stride, padding, groups, c_o, c_i, n, size = \
        LAYERS[name]
    dims = len(kernel)
    as_tuple = (lambda v: tuple(v) if isinstance(v, tuple) else (v, ) * dims)
    weight_shape = (c_out, c_in // groups, *kernel)
    split = (int(torch.tensor(kernel).prod()), c_out // c_o,
             (c_in // groups) // c_i)
    gen = torch.Generator().manual_seed(seed)
    rand = (lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype))
    m = split[0] * split[1] * split[2]
    tensors = dict(
        x=rand(batch, c_in, *([size] * dims)),
        attention=rand(batch * m, n) / n,
        warehouse=rand(n, c_o, c_i, *([1] * dims)) / c_i**0.5,
        bias=rand(c_out),
        out_scale=rand(c_out))
    geometry = ConvGeometry(weight_shape, as_tuple(stride), as_tuple(padding),
                            (1, ) * dims, groups, split)
    return tensors, geometry


def reference(tensors, geometry, with_scale):
    t = tensors
    out = kw_conv_reference(t['x'], t['attention'], t['warehouse'], geometry)
    view = (1, -1, *([1] * (out.dim() - 2)))
    if with_scale:
        out = out * t['out_scale'].reshape(view)
    return out + t['bias'].reshape(view)


def fast(tensors, geometry, with_scale, engine=None):
    t = tensors
    return kw_conv_blocked(
        t['x'],
        t['attention'],
        t['warehouse'],
        geometry,
        bias=t['bias'],
        out_scale=t['out_scale'] if with_scale else None,
        engine=engine)


def outputs_and_grads(fn, tensors, with_scale):
    leaves = {
        k: v.detach().clone().requires_grad_(True)
        for k, v in tensors.items()
    }
    out = fn(leaves)
    grad = torch.randn(
        out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    names = [k for k in leaves if with_scale or k != 'out_scale']
    grads = torch.autograd.grad(out, [leaves[k] for k in names], grad)
    return out, dict(zip(names, grads))


def engines_for(name):
    c_in, c_out, kernel, stride, padding, groups = LAYERS[name][:6]
    if groups == 1 and all(k == 1 for k in kernel) and not padding:
        return ['gemm', 'conv']
    return ['conv']


CASES = [(name, engine) for name in LAYERS for engine in engines_for(name)]


@pytest.mark.parametrize('name,engine', CASES)
@pytest.mark.parametrize('batch', [1, 8])
@pytest.mark.parametrize('with_scale', [False, True])
@pytest.mark.parametrize('block_bytes', [1, blocked.BLOCK_BYTES])
@pytest.mark.parametrize('native_mixing', [True, False])
def test_matches_reference_float32(name, engine, batch, with_scale,
                                   block_bytes, native_mixing, monkeypatch):
    """block_bytes=1: one cell row per block (many blocks); the mixing
    products with mmkw's compiled kernel and without it."""
    if native_mixing and not native.available():
        pytest.skip('the C++ mixing kernel is not built here')
    monkeypatch.setattr(blocked, 'BLOCK_BYTES', block_bytes)
    monkeypatch.setattr(blocked, 'NATIVE', native_mixing)
    tensors, geometry = make_inputs(name, batch)
    expected, expected_grads = outputs_and_grads(
        lambda t: reference(t, geometry, with_scale), tensors, with_scale)
    out, grads = outputs_and_grads(
        lambda t: fast(t, geometry, with_scale, engine), tensors, with_scale)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for key, value in expected_grads.items():
        torch.testing.assert_close(
            grads[key], value, rtol=1e-4, atol=1e-4, msg=lambda m: key + m)


@pytest.mark.parametrize('name', list(LAYERS))
@pytest.mark.parametrize('batch', [1, 3])
def test_export_formulation_matches_reference(name, batch):
    """unfold + batched matmul (what torch.onnx.export records)."""
    tensors, geometry = make_inputs(name, batch)

    def unfold(t):
        return kw_conv_unfold(
            t['x'],
            t['attention'],
            t['warehouse'],
            geometry,
            bias=t['bias'],
            out_scale=t['out_scale'])

    expected, expected_grads = outputs_and_grads(
        lambda t: reference(t, geometry, True), tensors, True)
    out, grads = outputs_and_grads(unfold, tensors, True)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for key, value in expected_grads.items():
        torch.testing.assert_close(
            grads[key], value, rtol=1e-4, atol=1e-4, msg=lambda m: key + m)


@pytest.mark.parametrize(
    'name', ['1x1 strided, G_i=2', '3x3, G_o=2', 'depthwise 3x3', 'linear'])
def test_matches_reference_under_bf16_autocast(name):
    tensors, geometry = make_inputs(name, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        expected, expected_grads = outputs_and_grads(
            lambda t: reference(t, geometry, True), tensors, True)
        out, grads = outputs_and_grads(lambda t: fast(t, geometry, True),
                                       tensors, True)
    # The convolution runs in bf16, as the reference's does; the float32
    # scale and bias then promote both results alike.
    assert out.dtype == expected.dtype
    t = tensors
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert kw_conv_blocked(t['x'], t['attention'], t['warehouse'],
                               geometry).dtype == torch.bfloat16
    scale = expected.float().abs().max()
    assert (out.float() - expected.float()).abs().max() <= 0.05 * scale
    for key, value in expected_grads.items():
        assert grads[key].dtype == tensors[key].dtype, key
        assert torch.isfinite(grads[key]).all(), key
        err = (grads[key].float() - value.float()).abs().max()
        assert err <= 0.05 * value.float().abs().max(), key


def test_backward_keeps_input_and_attention_not_kernels():
    tensors, geometry = make_inputs('3x3, G_o=2', 8)
    leaves = {k: v.requires_grad_(True) for k, v in tensors.items()}
    kept = saved_tensor_bytes(lambda: fast(leaves, geometry, True))
    inputs = sum(leaves[k].nbytes
                 for k in ('x', 'attention', 'warehouse', 'out_scale'))
    assert kept == inputs
    per_sample_kernels = 8 * 16 * 8 * 9 * 4
    assert saved_tensor_bytes(lambda: reference(leaves, geometry, True)) >= \
        per_sample_kernels


def test_small_kernels_are_kept_instead_of_recomputed():
    """Kernels at most half the size of the input cost less to keep than to
    mix again (depthwise layers)."""
    tensors, geometry = make_inputs('depthwise 3x3 large map', 8)
    leaves = {k: v.requires_grad_(True) for k, v in tensors.items()}
    kept = saved_tensor_bytes(lambda: fast(leaves, geometry, False))
    kernels = 8 * 16 * 1 * 9 * 4
    inputs = sum(leaves[k].nbytes for k in ('x', 'attention', 'warehouse'))
    assert kept == inputs + kernels


def test_engine_errors():
    tensors, geometry = make_inputs('depthwise 3x3', 2)
    with pytest.raises(ValueError, match="got 'cuda'"):
        fast(tensors, geometry, False, engine='cuda')
    for name, wrong in (('depthwise 3x3', 'groups 16'), ('3x3, G_o=2',
                                                         r'kernel \(3, 3\)'),
                        ('1x1 padded', r'padding \(1, 1\)')):
        tensors, geometry = make_inputs(name, 2)
        with pytest.raises(ValueError, match=f"'gemm' engine needs .*{wrong}"):
            fast(tensors, geometry, False, engine='gemm')


def test_block_budget_depends_on_the_device(monkeypatch):
    """Blocks fit the caches on the CPU and only bound the memory of the
    kernels on CUDA: a larger budget there, so fewer blocks for one layer
    (checked without a GPU, on a fake CUDA tensor)."""
    assert blocked.block_bytes_for('cpu') == blocked.BLOCK_BYTES
    assert blocked.block_bytes_for(torch.device('cuda')) == \
        blocked.CUDA_BLOCK_BYTES > blocked.BLOCK_BYTES
    monkeypatch.setattr(blocked, 'BLOCK_BYTES', 1)  # one row per block
    tensors, geometry = make_inputs('3x3, G_o=2', 8)
    x, shape = tensors['x'], tensors['warehouse'].shape
    with FakeTensorMode(allow_non_fake_inputs=True):
        x_cuda = x.to('cuda')
    cpu = blocked._plan(x, torch.float32, shape, geometry, None)
    cuda = blocked._plan(x_cuda, torch.float32, shape, geometry, None)
    assert cpu.conv is geometry and cuda.conv is geometry
    assert cpu.blocks == tuple([(r, r + 1) for r in range(8)])
    assert cuda.blocks == ((0, 8), ) and cuda.rows == 8


def test_mixing_products_take_onednn_only_for_plain_strides():
    """oneDNN takes the float32 CPU mixing products whose cell operand is
    contiguous or transposed; a strided block of cell rows (several blocks
    per layer) stays on ``mm``: oneDNN runs it a thousand times slower."""
    cells = torch.randn(5, 8, 3)
    attention = torch.randn(4, 5)
    whole, rows = cells.reshape(5, -1), cells[:, 2:6].reshape(5, -1)
    onednn = blocked._ONEDNN is not None
    assert blocked._onednn(attention, whole) == onednn
    assert blocked._onednn(attention, whole.t()) == onednn
    assert not blocked._onednn(attention, rows)
    assert not blocked._onednn(attention.double(), whole.double())
    for block in (whole, rows):
        torch.testing.assert_close(
            blocked._matmul(attention, block, 'mixed'), attention @ block)


class TwoLayers(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = KWConv2d(8, 16, 3, padding=1, bias=True, warehouse='w')
        self.fc = KWLinear(16, 10, warehouse='f')
        self.manager = WarehouseManager()
        self.manager.declare('w')
        self.manager.declare('f')
        self.manager.bind(self)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_layers_default_to_the_fast_path_and_switch_back():
    torch.manual_seed(0)
    net = TwoLayers().train()
    x = torch.randn(4, 8, 6, 6)
    results = {}
    for impl in ('blocked', 'reference', 'unfold'):
        net.zero_grad()
        with kw_conv_implementation(impl):
            out = net(x)
            out.square().sum().backward()
        results[impl] = (out, [p.grad.clone() for p in net.parameters()])
    for impl in ('blocked', 'unfold'):
        torch.testing.assert_close(results[impl][0], results['reference'][0])
        for a, b in zip(results[impl][1], results['reference'][1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="one of .*'official'"):
        with kw_conv_implementation('official'):
            pass


def test_kw_conv_dispatches_out_scale_on_both_implementations():
    tensors, geometry = make_inputs('3x3, G_o=2', 2)
    t = tensors
    results = []
    for impl in ('blocked', 'reference', 'unfold'):
        with kw_conv_implementation(impl):
            results.append(
                kw_conv(t['x'], t['attention'], t['warehouse'], geometry,
                        t['bias'], t['out_scale']))
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results[1], reference(t, geometry, True))


def test_torch_compile_traces_one_graph():
    """Dynamo traces the blocked conv (forward and backward) into one graph
    (``aot_eager``: no C++ compiler needed) with the eager results."""
    torch.manual_seed(0)
    net = TwoLayers().train()
    compiled = torch.compile(net, backend='aot_eager', fullgraph=True)
    x = torch.randn(4, 8, 6, 6)
    expected = net(x)
    expected.square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    got = compiled(x)
    got.square().sum().backward()
    torch.testing.assert_close(got, expected)
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)
