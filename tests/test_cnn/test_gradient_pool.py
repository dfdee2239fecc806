"""The fast path's pool of warehouse-gradient buffers: a buffer is handed
out again only when nothing else holds it, so gradients a user keeps never
change, and the results equal fresh tensors'."""
import pytest
import torch

import mmkw.cnn.blocked as blocked
from mmkw.cnn import ConvGeometry, kw_conv_blocked

GEOMETRY = ConvGeometry((16, 8, 3, 3), (1, 1), (1, 1), (1, 1), 1, (9, 2, 1))


@pytest.fixture(autouse=True)
def small_pool(monkeypatch):
    """Pool every gradient, however small; a fresh pool for each test."""
    monkeypatch.setattr(blocked, 'GRADIENT_POOL_MIN_NUMEL', 1)
    monkeypatch.setattr(blocked._workspace, 'gradients', [])


def two_layers(warehouse, seed, block_bytes=None):
    """Two KW layers sharing ``warehouse`` (autograd adds their gradients
    up); ``block_bytes=1``: one cell row per block."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 5, 5, generator=gen)
    alpha = torch.randn(2 * 18, warehouse.shape[0], generator=gen)
    if block_bytes is not None:
        blocked.BLOCK_BYTES, saved = block_bytes, blocked.BLOCK_BYTES
    try:
        hidden = kw_conv_blocked(x, alpha, warehouse, GEOMETRY)
        out = kw_conv_blocked(hidden[:, :8], alpha, warehouse, GEOMETRY)
    finally:
        if block_bytes is not None:
            blocked.BLOCK_BYTES = saved
    return out.square().mean()


@pytest.mark.parametrize('block_bytes', [None, 1])
def test_kept_gradients_never_change(block_bytes):
    warehouse = torch.randn(5, 8, 8, 1, 1, requires_grad=True)
    kept = [
        torch.autograd.grad(
            two_layers(warehouse, seed, block_bytes), warehouse)[0]
        for seed in range(4)
    ]
    copies = [g.clone() for g in kept]
    for seed in range(4, 8):  # more gradients while those are held
        torch.autograd.grad(
            two_layers(warehouse, seed, block_bytes), warehouse)
    for g, c in zip(kept, copies):
        assert torch.equal(g, c)
    assert len({g.data_ptr() for g in kept}) == len(kept)


@pytest.mark.parametrize('set_to_none', [True, False])
def test_training_steps_equal_fresh_gradients(set_to_none, monkeypatch):

    def train(pool_bytes):
        monkeypatch.setattr(blocked, 'GRADIENT_POOL_BYTES', pool_bytes)
        warehouse = torch.nn.Parameter(
            torch.randn(
                5, 8, 8, 1, 1, generator=torch.Generator().manual_seed(0)))
        opt = torch.optim.SGD([warehouse], lr=1e-3, momentum=0.9)
        for seed in range(4):
            opt.zero_grad(set_to_none=set_to_none)
            two_layers(warehouse, seed).backward()
            opt.step()
        return warehouse.detach()

    pooled = train(blocked.GRADIENT_POOL_BYTES)
    assert torch.isfinite(pooled).all()
    assert torch.equal(pooled, train(0))


def test_a_buffer_is_reused_once_freed():
    """What the pool is for: no fresh allocation once a gradient is gone,
    and never one that is still held (by the caller or by a view)."""
    like = torch.empty(0)
    first = blocked._gradient_buffer((6, 7), like)
    held = blocked._gradient_buffer((6, 7), like)
    pointer = first.data_ptr()
    view = first[2:]
    del first
    assert blocked._gradient_buffer(
        (6, 7), like).data_ptr() not in (pointer, held.data_ptr())
    del view
    again = blocked._gradient_buffer((6, 7), like)
    assert again.data_ptr() == pointer
    assert not again._is_view() and again.shape == (6, 7)


def test_the_pool_keeps_to_its_budget(monkeypatch):
    """Free buffers of other shapes make way, least recently used first;
    a buffer that does not fit is handed out unpooled."""
    like = torch.empty(0)
    monkeypatch.setattr(blocked, 'GRADIENT_POOL_BYTES', 2 * 4 * 100)
    a = blocked._gradient_buffer((10, 10), like).data_ptr()
    b = blocked._gradient_buffer((5, 20), like).data_ptr()
    pool = blocked._workspace.gradients
    assert [t.data_ptr() for t in pool] == [a, b]
    blocked._gradient_buffer((4, 25), like)  # drops a, the older
    assert [t.data_ptr() for t in pool][0] == b and len(pool) == 2
    held = blocked._gradient_buffer((5, 20), like)  # b again
    assert held.data_ptr() == b
    blocked._gradient_buffer((3, 100), like)  # too big beside b: unpooled
    assert sum([t.nbytes for t in pool]) <= blocked.GRADIENT_POOL_BYTES
    assert b in [t.data_ptr() for t in pool]
