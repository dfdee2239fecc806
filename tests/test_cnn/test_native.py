"""mmkw's compiled mixing kernel (``mmkw.cnn.native``) against torch.mm."""
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


@pytest.mark.parametrize('a,b,out,message', [
    (torch.ones(2, 3, dtype=torch.float64), torch.ones(3, 4), torch.ones(
        2, 4), 'float32'),
    (torch.ones(2, 3), torch.ones(4, 3).t(), torch.ones(2, 4), 'rows'),
    (torch.ones(2, 3), torch.ones(3, 4), torch.ones(2, 5), 'shapes'),
    (torch.ones(2, 3), torch.ones(3, 4), torch.ones(1, 4).expand(2,
                                                                 4), 'rows'),
])
def test_mix_refuses_what_it_cannot_read(a, b, out, message):
    with pytest.raises(RuntimeError, match=message):
        native.mix(a, b, out)
