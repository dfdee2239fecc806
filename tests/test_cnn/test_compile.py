"""``torch.compile`` of KW layers: the fast path is an opaque custom op.

Under ``torch.compile`` :func:`~mmkw.cnn.kw_conv` calls
``mmkw::kw_conv_blocked`` (forward) and ``mmkw::kw_conv_blocked_backward``
(:mod:`mmkw.cnn.custom_op`), which run the eager blocked code. Pinned here:
compiled forward and backward equal eager (outputs and the gradients of the
input, attention, warehouse, bias and folded scale), no graph break in a KW
model, the ops pass ``torch.library.opcheck``, and eager mode never calls
them. The ``aot_eager`` backend (no C++ compiler) checks correctness; one
test (``-k inductor``) compiles with inductor, which takes about a minute
here with a cold inductor cache.
"""
import re

import pytest
import torch
from test_kw_conv_fast import TwoLayers, make_inputs
from torch.utils._python_dispatch import TorchDispatchMode

from mmkw.cnn import kw_conv
from mmkw.cnn.custom_op import geometry_args

pytestmark = pytest.mark.usefixtures('one_thread')

OP = torch.ops.mmkw.kw_conv_blocked
BACKWARD_OP = torch.ops.mmkw.kw_conv_blocked_backward
# A 3x3 conv (conv engine) and a 1x1 conv (gemm engine), from the fast
# path's own tests.
LAYERS = ['3x3, G_o=2', '1x1']
NAMES = ('x', 'attention', 'warehouse', 'bias', 'out_scale')


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _conv(geometry, with_scale):

    def conv(x, attention, warehouse, bias, out_scale):
        return kw_conv(x, attention, warehouse, geometry, bias,
                       out_scale if with_scale else None)

    return conv


def _outputs_and_grads(fn, tensors, with_scale):
    leaves = [tensors[k].detach().clone().requires_grad_() for k in NAMES]
    out = fn(*leaves)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    names = [k for k in NAMES if with_scale or k != 'out_scale']
    grads = torch.autograd.grad(out, [leaves[NAMES.index(k)] for k in names],
                                grad.to(out.dtype))
    return out, dict(zip(names, grads))


class GraphRecorder:
    """An ``aot_eager`` backend that keeps the Dynamo graphs it gets."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return torch._dynamo.backends.debugging.aot_eager(gm, example_inputs)

    def targets(self):
        return [
            node.target for gm in self.graphs for node in gm.graph.nodes
            if node.op == 'call_function'
        ]


@pytest.mark.parametrize('name', LAYERS)
@pytest.mark.parametrize('with_scale', [False, True])
def test_compiled_forward_and_backward_equal_eager(name, with_scale):
    tensors, geometry = make_inputs(name, 3)
    conv = _conv(geometry, with_scale)
    expected, expected_grads = _outputs_and_grads(conv, tensors, with_scale)
    recorder = GraphRecorder()
    compiled = torch.compile(conv, backend=recorder, fullgraph=True)
    out, grads = _outputs_and_grads(compiled, tensors, with_scale)
    assert len(recorder.graphs) == 1 and OP in recorder.targets()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert set(grads) == set(expected_grads)
    for key, value in expected_grads.items():
        torch.testing.assert_close(
            grads[key], value, rtol=1e-5, atol=1e-6, msg=lambda m: key + m)


@pytest.mark.parametrize('name', LAYERS)
def test_compiled_under_bf16_autocast_equals_eager(name):
    """The graph casts the input to autocast's dtype before the op (the op
    computes in its input's dtype, autocast or not); gradients come back
    in the dtypes of the leaves, as in eager mode."""
    tensors, geometry = make_inputs(name, 3)
    conv = _conv(geometry, True)

    def under_autocast(*args):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return conv(*args)

    expected, expected_grads = _outputs_and_grads(under_autocast, tensors,
                                                  True)
    compiled = torch.compile(
        under_autocast, backend='aot_eager', fullgraph=True)
    out, grads = _outputs_and_grads(compiled, tensors, True)
    assert out.dtype == expected.dtype
    torch.testing.assert_close(out, expected, rtol=1e-2, atol=1e-2)
    for key, value in expected_grads.items():
        assert grads[key].dtype == value.dtype == torch.float32, key
        torch.testing.assert_close(
            grads[key], value, rtol=2e-2, atol=2e-2, msg=lambda m: key + m)


def test_dynamic_batch():
    """The op's fake function takes a symbolic batch."""
    tensors, geometry = make_inputs('3x3, G_o=2', 2)
    conv = _conv(geometry, True)
    compiled = torch.compile(
        conv, backend='aot_eager', dynamic=True, fullgraph=True)
    for batch in (2, 3):
        tensors, _ = make_inputs('3x3, G_o=2', batch)
        args = [tensors[k] for k in NAMES]
        torch.testing.assert_close(
            compiled(*args), conv(*args), rtol=1e-5, atol=1e-6)


def test_kw_model_has_no_graph_break():
    torch.manual_seed(0)
    net = TwoLayers().train()
    x = torch.randn(4, 8, 6, 6)
    explained = torch._dynamo.explain(net)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    targets = [
        node.target for gm in explained.graphs for node in gm.graph.nodes
    ]
    assert targets.count(OP) == 2  # one call per KW layer, opaque


def _compiled_equals_eager(backend, out_tol, grad_tol):
    """A compiled KW model's output and parameter gradients equal eager's
    (``out_tol``/``grad_tol``: ``dict(rtol=..., atol=...)``)."""
    torch.manual_seed(0)
    net = TwoLayers().train()
    x = torch.randn(4, 8, 6, 6)
    expected = net(x)
    expected.square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    got = torch.compile(net, backend=backend, fullgraph=True)(x)
    got.square().sum().backward()
    torch.testing.assert_close(got, expected, **out_tol)
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g, **grad_tol)


def test_model_compiled_forward_and_backward_equal_eager():
    _compiled_equals_eager('aot_eager', {}, dict(rtol=1e-5, atol=1e-6))


def test_eager_mode_does_not_call_the_op():
    """Eager mode keeps the autograd.Function path (no custom-op
    dispatch)."""

    class Ops(TorchDispatchMode):

        def __init__(self):
            super().__init__()
            self.seen = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.add(func.overloadpacket)
            return func(*args, **(kwargs or {}))

    tensors, geometry = make_inputs('3x3, G_o=2', 2)
    leaves = [tensors[k].requires_grad_() for k in NAMES]
    with Ops() as ops:
        _conv(geometry, True)(*leaves).sum().backward()
    assert OP not in ops.seen and BACKWARD_OP not in ops.seen
    assert torch.ops.aten.convolution in ops.seen


def _op_args(name, with_scale, requires_grad):
    tensors, geometry = make_inputs(name, 2)
    tensors = {k: v.requires_grad_(requires_grad) for k, v in tensors.items()}
    scale = tensors['out_scale'] if with_scale else None
    return (tensors['x'], tensors['attention'], tensors['warehouse'], scale,
            *geometry_args(geometry))


@pytest.mark.parametrize('name', LAYERS + ['depthwise 3x3', '1-D k3'])
@pytest.mark.parametrize('with_scale', [False, True])
def test_opcheck(name, with_scale):
    """Schema, fake function, autograd registration and dispatch of both
    ops (``torch.library.opcheck``)."""
    args = _op_args(name, with_scale, True)
    torch.library.opcheck(OP.default, args)
    torch.library.opcheck(OP.default, _op_args(name, with_scale, False))
    out = OP(*args)
    grad = torch.randn(out.shape)
    for needs in ([True, True, True, with_scale], [False, True, False, False]):
        detached = [a.detach() if torch.is_tensor(a) else a for a in args]
        torch.library.opcheck(BACKWARD_OP.default, (grad, *detached, needs))


def test_ops_compute_in_the_input_dtype():
    """The op follows ``x``'s dtype (the caller casts it to autocast's):
    the other inputs are cast inside and their gradients come back in
    their own dtypes."""
    x, attention, warehouse, scale, *geometry = _op_args('1x1', True, False)
    out = OP(x.to(torch.bfloat16), attention, warehouse, scale, *geometry)
    assert out.dtype == torch.bfloat16
    grads = BACKWARD_OP(out, x.to(torch.bfloat16), attention, warehouse, scale,
                        *geometry, [True, True, True, True])
    assert [g.dtype for g in grads] == [torch.bfloat16] + [torch.float32] * 3
    assert [g.shape for g in grads
            ] == [x.shape, attention.shape, warehouse.shape, scale.shape]


def test_inductor_compiles_a_kw_model():
    """inductor (C++ codegen) around the opaque op: forward and backward
    equal eager."""
    tol = dict(rtol=1e-4, atol=1e-5)
    _compiled_equals_eager('inductor', tol, tol)


def test_benchmark_reports_compiled_and_bf16_figures(capsys, load_tool):
    """``benchmark.py --dtype fp32 bf16 --compile``: every table once per
    dtype, the compiled variants next to the eager ones, compilation timed
    apart."""
    benchmark = load_tool('analysis_tools/benchmark')
    # Inference only (compiling a training step too doubles the time; the
    # compiled backward is pinned above).
    results = benchmark.main([
        '--models', 'resnet18:1', '--batch', '1', '--size', '32', '--rounds',
        '1', '--skip', 'train', 'saved', '--dtype', 'fp32', 'bf16',
        '--compile', '--compile-backend', 'aot_eager'
    ])
    out = capsys.readouterr().out
    assert out.startswith(f'torch {torch.__version__}, cpu,')
    assert 'dtype fp32 + bf16, compiled with aot_eager' in out.split('\n')[0]
    assert 'inference, batch 1: ms median (min-max), ratio to plain ' \
        'median' in out
    assert 'inference, batch 1, bf16 autocast: ms median (min-max), ratio ' \
        'to plain bf16 median' in out
    labels = [
        'plain', 'KW reference', 'KW fast', 'plain compiled',
        'KW fast compiled'
    ]
    (result, ) = results
    assert list(result['inference']
                [1]) == labels + [label + ' bf16' for label in labels]
    for label in result['inference'][1]:  # a row in its dtype's table
        assert re.search(rf'^  {label} +[\d.]+ \(', out, re.M), label
    assert sorted(result['compile']) == sorted([
        ('inference 1', label) for label in result['inference'][1]
        if 'compiled' in label
    ])
    assert 'torch.compile, first call (compilation and one run, not in the ' \
        'figures): plain compiled ' in out


def test_benchmark_fp16_needs_cuda(capsys, load_tool):
    benchmark = load_tool('analysis_tools/benchmark')
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--dtype', 'fp16'])
    assert '--dtype fp16 needs --device cuda' in capsys.readouterr().err
    args = benchmark.parse_args(['--dtype', 'bf16', 'fp32', 'bf16'])
    assert args.dtype == ['bf16', 'fp32']
