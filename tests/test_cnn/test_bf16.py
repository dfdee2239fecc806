"""The fast path in bf16 against the official formulation in float32.

``test_kw_conv_fast.py`` pins the fast path under bf16 autocast to the
reference under the same autocast, on four layer shapes with the
default engine and block size. Here every layer shape of that module
(:data:`test_kw_conv_fast.LAYERS`), both engines where both apply, one and
many blocks of cell rows, with and without a folded scale, runs under
``torch.autocast('cpu', torch.bfloat16)`` and is pinned to
``kw_conv_implementation('reference')`` in float32: the output and the
gradients of the input, attention, warehouse, bias and scale, each within
bf16 tolerance. A layer whose tensors are bf16 themselves (a model moved
with ``.to(torch.bfloat16)``, no autocast) is pinned the same way.

bf16 keeps 8 significant bits (a relative rounding error of 2**-9); the
products accumulate in float32 but their inputs, the mixed kernels and the
results are rounded to bf16. Measured over these cases (batch 4): the
largest error is at most 1.5e-2 of the largest value (the scale gradient,
a sum over every kernel entry), the error norm at most 1.0e-2 of the norm
(tolerances: twice that).
"""
import pytest
import torch
from test_kw_conv_fast import CASES, LAYERS, make_inputs

import mmkw.cnn.blocked as blocked
import mmkw.cnn.native as native
from mmkw.cnn import kw_conv, kw_conv_blocked, kw_conv_implementation
from mmkw.cnn.attention import _spatial_mean

pytestmark = pytest.mark.usefixtures('one_thread')

#: Largest error over the largest value, error norm over the norm.
MAX_TOLERANCE, NORM_TOLERANCE = 3e-2, 2e-2
NAMES = ('x', 'attention', 'warehouse', 'bias', 'out_scale')


def _outputs_and_grads(fn, tensors, with_scale):
    leaves = {
        k: v.detach().clone().requires_grad_()
        for k, v in tensors.items()
    }
    if not with_scale:
        leaves['out_scale'] = None
    out = fn(**leaves)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    names = [k for k in NAMES if leaves[k] is not None]
    grads = torch.autograd.grad(out, [leaves[k] for k in names],
                                grad.to(out.dtype))
    return out, dict(zip(names, grads))


def _float32_reference(tensors, geometry, with_scale):
    tensors = {k: v.float() for k, v in tensors.items()}

    def reference(x, attention, warehouse, bias, out_scale):
        with kw_conv_implementation('reference'):
            return kw_conv(x, attention, warehouse, geometry, bias, out_scale)

    return _outputs_and_grads(reference, tensors, with_scale)


def _assert_within_bf16_tolerance(got, expected, name):
    assert torch.isfinite(got).all(), name
    error = got.float() - expected
    largest = expected.abs().max()
    assert error.abs().max() <= MAX_TOLERANCE * largest, \
        f'{name}: largest error {error.abs().max() / largest:.2e} of ' \
        'the largest value'
    assert error.norm() <= NORM_TOLERANCE * expected.norm(), \
        f'{name}: error norm {error.norm() / expected.norm():.2e} of ' \
        'the norm'


#: How the bf16 mixing products run: mmkw's compiled kernel, ``torch.mm``
#: in bf16 (oneDNN where the CPU has bf16 products, else a reference loop),
#: or in float32 (a CPU with neither).
MIXINGS = ('native', 'bf16', 'upcast')


def _mixing_kernel(monkeypatch, mixing):
    """The bf16 mixing products as ``mixing`` (one of :data:`MIXINGS`)
    says, on any CPU."""
    if mixing == 'native' and not native.available(torch.bfloat16):
        pytest.skip('the compiled bf16 mixing kernel is not built or this '
                    'CPU has no AVX512_BF16')
    monkeypatch.setattr(blocked, 'NATIVE', mixing == 'native')
    monkeypatch.setitem(blocked._HALF_PRODUCTS, torch.bfloat16,
                        mixing == 'bf16')


@pytest.mark.parametrize('name,engine', CASES)
@pytest.mark.parametrize('with_scale', [False, True])
@pytest.mark.parametrize('block_bytes', [1, blocked.BLOCK_BYTES])
@pytest.mark.parametrize('mixing', MIXINGS)
def test_autocast_matches_float32_reference(name, engine, with_scale,
                                            block_bytes, mixing, monkeypatch):
    """block_bytes=1: one cell row per block (many blocks)."""
    monkeypatch.setattr(blocked, 'BLOCK_BYTES', block_bytes)
    _mixing_kernel(monkeypatch, mixing)
    tensors, geometry = make_inputs(name, 4)
    expected, expected_grads = _float32_reference(tensors, geometry,
                                                  with_scale)

    def fast(x, attention, warehouse, bias, out_scale):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = kw_conv_blocked(x, attention, warehouse, geometry, None,
                                  out_scale, engine)
            assert out.dtype == torch.bfloat16  # the conv ran in bf16
            return out + bias.view(1, -1, *([1] * (x.dim() - 2)))

    out, grads = _outputs_and_grads(fast, tensors, with_scale)
    _assert_within_bf16_tolerance(out, expected, 'out')
    assert set(grads) == set(expected_grads)
    for key, value in expected_grads.items():
        assert grads[key].dtype == torch.float32, key  # the leaves' dtype
        _assert_within_bf16_tolerance(grads[key], value, key)


@pytest.mark.parametrize('name', list(LAYERS))
@pytest.mark.parametrize('mixing', MIXINGS)
def test_bf16_tensors_match_float32_reference(name, mixing, monkeypatch):
    """A layer in bf16 (``.to(torch.bfloat16)``, no autocast): the same
    bf16 values through the float32 reference."""
    _mixing_kernel(monkeypatch, mixing)
    tensors, geometry = make_inputs(name, 4)
    tensors = {k: v.to(torch.bfloat16) for k, v in tensors.items()}
    expected, expected_grads = _float32_reference(tensors, geometry, True)

    def fast(x, attention, warehouse, bias, out_scale):
        return kw_conv(x, attention, warehouse, geometry, bias, out_scale)

    out, grads = _outputs_and_grads(fast, tensors, True)
    assert out.dtype == torch.bfloat16
    _assert_within_bf16_tolerance(out, expected, 'out')
    for key, value in expected_grads.items():
        assert grads[key].dtype == torch.bfloat16, key
        _assert_within_bf16_tolerance(grads[key], value, key)


def test_autocast_keeps_the_cast_input_for_backward():
    """Under bf16 autocast a float32 input is kept in bf16, as a plain
    convolution keeps it (a float32 copy would double the bytes), and its
    gradient comes back in float32."""
    name = next(iter(LAYERS))
    tensors, geometry = make_inputs(name, 2)
    x = tensors['x'].requires_grad_()
    kept = []

    def pack(tensor):
        kept.append((tuple(tensor.shape), tensor.dtype))
        return tensor

    with torch.autocast('cpu', torch.bfloat16), \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = kw_conv_blocked(x, tensors['attention'], tensors['warehouse'],
                              geometry)
    assert (tuple(x.shape), torch.bfloat16) in kept
    assert (tuple(x.shape), torch.float32) not in kept
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32


def test_a_warehouse_is_cast_again_once_it_changes(monkeypatch):
    """Under autocast the fast path casts each warehouse once per value
    (several layers read it): an optimizer step, a ``copy_`` or a new
    ``.data`` must reach the next call, and a dropped warehouse takes its
    cast along."""
    _mixing_kernel(monkeypatch, 'bf16')  # products in bf16: a cast warehouse
    tensors, geometry = make_inputs('3x3, G_o=2', 2)
    x, alpha = tensors['x'], tensors['attention']

    def run(warehouse):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return kw_conv_blocked(x, alpha, warehouse, geometry).float()

    def check(warehouse):
        assert torch.equal(run(warehouse), run(warehouse.detach().clone()))

    warehouse = torch.nn.Parameter(tensors['warehouse'].clone())
    check(warehouse)
    run(warehouse).sum().backward()
    torch.optim.SGD([warehouse], lr=10.0).step()
    check(warehouse)
    with torch.no_grad():
        warehouse.copy_(-warehouse)
    check(warehouse)
    warehouse.data = torch.randn_like(warehouse)
    check(warehouse)
    key = (id(warehouse), torch.bfloat16)
    assert key in blocked._cast_cache.entries
    del warehouse
    assert key not in blocked._cast_cache.entries


@pytest.mark.parametrize('spatial', [(50, ), (24, 24), (4, 6, 5)])
def test_attention_pool_sums_bf16_itself(spatial):
    """The attention's global pool of a bf16 input (a sum with float32
    accumulation, then a division: PyTorch's bf16 ``mean`` on the CPU
    copies the input to float32 first) is the mean within two bf16
    roundings, and its gradient is 1 / n everywhere; float32 inputs take
    ``mean`` itself."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, *spatial, generator=gen) + 0.5
    expected = x.double().flatten(2).mean(-1)
    leaf = x.to(torch.bfloat16).requires_grad_()
    pooled = _spatial_mean(leaf)
    assert pooled.dtype == torch.bfloat16
    error = (pooled.double() - leaf.double().flatten(2).mean(-1)).abs()
    assert (error <= 2**-7 * expected.abs() + 1e-6).all()
    pooled.float().sum().backward()
    n = x[0, 0].numel()
    torch.testing.assert_close(
        leaf.grad.float(), torch.full_like(x, 1 / n), rtol=2**-8, atol=0)
    assert torch.equal(_spatial_mean(x), x.flatten(2).mean(-1))
