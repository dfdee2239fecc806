"""mmkw's compiled mixing kernel (``mmkw.cnn.native``) against torch.mm,
in float32 and (where the CPU has AVX512_BF16) bf16."""
import pytest
import torch

from mmkw.cnn import native

pytestmark = pytest.mark.skipif(
    not native.available(),
    reason='the C++ mixing kernel is not built or this CPU has no AVX-512')


def _double_mm(a, b):
    return (a.double() @ b.double()).float()


# (M, K, N): register blocks of 6 rows and tiles of 64 columns, with every
# kind of remainder, and a batch-1 and a batch-8 ResNet50 shape.
SHAPES = [(1, 1, 1), (5, 3, 17), (6, 47, 64), (7, 13, 65), (13, 200, 1000),
          (12, 8, 4096 + 48), (9, 47, 512 * 36), (72, 87, 4096)]


@pytest.mark.parametrize('m,k,n', SHAPES)
def test_mix_matches_mm(m, k, n):
    gen = torch.Generator().manual_seed(m * 1000 + n)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    out = torch.full((m, n), float('nan'))
    assert native.mix(a, b, out) is out
    torch.testing.assert_close(out, _double_mm(a, b), rtol=1e-5, atol=1e-4)


def test_mix_reads_and_writes_strided_rows():
    """A block of cell rows in, a block of warehouse-gradient rows out; the
    rows around them are neither read nor written."""
    gen = torch.Generator().manual_seed(0)
    cells = torch.randn(11, 40, 24, generator=gen)
    a = torch.randn(10, 11, generator=gen)
    grad = torch.zeros(10, 40, 24)
    block = cells[:, 5:30].reshape(11, -1)
    assert not block.is_contiguous()
    native.mix(a, block, grad[:, 5:30].view(10, -1))
    torch.testing.assert_close(grad[:, 5:30].reshape(10, -1),
                               _double_mm(a, block))
    assert grad[:, :5].abs().max() == 0 and grad[:, 30:].abs().max() == 0


@pytest.mark.parametrize('threads', [1, 2])
def test_mix_gives_the_same_bits_on_any_thread_count(threads):
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(
        20, 30, generator=gen), torch.randn(
            30, 3000, generator=gen)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = native.mix(a, b, torch.empty(20, 3000))
        torch.set_num_threads(threads)
        assert torch.equal(native.mix(a, b, torch.empty(20, 3000)), expected)
    finally:
        torch.set_num_threads(before)


needs_bf16 = pytest.mark.skipif(
    not native.available(torch.bfloat16), reason='this CPU has no AVX512_BF16')


def _bf16(*shape, generator):
    return torch.randn(*shape, generator=generator).bfloat16()


@needs_bf16
@pytest.mark.parametrize('m,k,n', SHAPES + [(4, 2, 130), (6, 138, 64)])
def test_mix_bf16_sums_in_float32(m, k, n):
    """bf16 operands (odd and even inner sizes: the kernel takes them in
    pairs): float32 sums of their exact products, and the bf16 result is
    those sums rounded to the nearest bf16."""
    gen = torch.Generator().manual_seed(m * 1000 + n)
    a, b = _bf16(m, k, generator=gen), _bf16(k, n, generator=gen)
    out = torch.full((m, n), float('nan'))
    assert native.mix(a, b, out) is out
    torch.testing.assert_close(out, _double_mm(a, b), rtol=1e-5, atol=1e-4)
    rounded = torch.full((m, n), float('nan'), dtype=torch.bfloat16)
    native.mix(a, b, rounded)
    assert torch.equal(rounded, out.bfloat16())


@needs_bf16
@pytest.mark.parametrize('out_dtype', [torch.float32, torch.bfloat16])
def test_mix_bf16_reads_and_writes_strided_rows(out_dtype):
    gen = torch.Generator().manual_seed(0)
    cells = _bf16(11, 40, 24, generator=gen)
    a = _bf16(10, 11, generator=gen)
    grad = torch.zeros(10, 40, 24, dtype=out_dtype)
    block = cells[:, 5:30].reshape(11, -1)
    assert not block.is_contiguous()
    native.mix(a, block, grad[:, 5:30].view(10, -1))
    torch.testing.assert_close(grad[:, 5:30].reshape(10, -1).float(),
                               _double_mm(a, block).to(out_dtype).float())
    assert grad[:, :5].abs().max() == 0 and grad[:, 30:].abs().max() == 0


@needs_bf16
def test_mix_bf16_gives_the_same_bits_on_any_thread_count():
    gen = torch.Generator().manual_seed(1)
    a, b = _bf16(20, 31, generator=gen), _bf16(31, 3000, generator=gen)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = native.mix(a, b, torch.empty(20, 3000))
        torch.set_num_threads(2)
        assert torch.equal(native.mix(a, b, torch.empty(20, 3000)), expected)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize('a,b,out,message', [
    (torch.ones(2, 3, dtype=torch.float64), torch.ones(3, 4), torch.ones(
        2, 4), 'float32 or bfloat16'),
    (torch.ones(2, 3), torch.ones(3, 4, dtype=torch.bfloat16), torch.ones(
        2, 4), 'b must be a 2-D float32'),
    (torch.ones(2, 3), torch.ones(4, 3).t(), torch.ones(2, 4), 'rows'),
    (torch.ones(2, 3), torch.ones(3, 4), torch.ones(2, 5), 'shapes'),
    (torch.ones(2, 3), torch.ones(3, 4), torch.ones(1, 4).expand(2,
                                                                 4), 'rows'),
])
def test_mix_refuses_what_it_cannot_read(a, b, out, message):
    with pytest.raises(RuntimeError, match=message):
        native.mix(a, b, out)


@needs_bf16
@pytest.mark.parametrize('b,out,message', [
    (torch.ones(3, 4), torch.ones(2, 4), 'b must be a 2-D bfloat16'),
    (torch.ones(3, 4, dtype=torch.bfloat16),
     torch.ones(2, 4, dtype=torch.float16), 'bfloat16 or float32'),
])
def test_mix_bf16_refuses_mixed_dtypes(b, out, message):
    with pytest.raises(RuntimeError, match=message):
        native.mix(torch.ones(2, 3, dtype=torch.bfloat16), b, out)


def test_available_names_the_dtypes_it_runs():
    assert native.available(torch.float64) is False
    assert native.available(torch.float16) is False
    if native.available(torch.bfloat16):
        assert native.available(torch.float32)
