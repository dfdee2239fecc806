"""Edges a plain convolution handles and a KW layer must too: batches of
no samples, conv arguments checked at construction, and the switch of the
KW conv implementation staying in the thread that asked for it."""
import threading

import pytest
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

import mmkw  # noqa: F401  (registers the KW backbones)
from mmkw.cnn import (KWConv1d, KWConv2d, KWLinear, WarehouseManager,
                      functional, kw_conv_implementation)

pytestmark = pytest.mark.usefixtures('one_thread')

BACKBONES = [
    dict(type='KWResNet', depth=18, base_channels=8, stem_channels=8),
    dict(type='KWResNet', depth=50, base_channels=8, stem_channels=8),
    dict(type='KWMobileNetV2', widen_factor=0.25),
    dict(type='KWMobileNetV2', widen_factor=0.25, attention_type='kw_star'),
    dict(
        type='KWConvNeXt',
        arch=dict(depths=[1, 1, 1, 1], channels=[16, 32, 64, 128])),
    dict(
        type='KWVisionTransformer',
        arch='deit-tiny',
        img_size=32,
        patch_size=8),
]


@pytest.mark.parametrize(
    'cfg',
    BACKBONES,
    ids=lambda c: c['type'] + str(c.get('depth', c.get('attention_type', ''))))
def test_empty_batch_flows_like_through_the_plain_network(cfg):
    model = MODELS.build(cfg).train()
    x = torch.randn(0, 3, 32, 32, requires_grad=True)
    outputs = model(x)
    with torch.no_grad():
        expected = model(torch.randn(2, 3, 32, 32))
    for out, ref in zip(outputs, expected):
        assert out.shape == (0, ) + ref.shape[1:]
    sum(o.sum() for o in outputs).backward()
    assert x.grad.shape == x.shape
    for name, weight in model.warehouse_manager.weights.items():
        if weight.requires_grad:
            assert weight.grad is not None and not weight.grad.any(), name


class _Layers(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv1d = KWConv1d(4, 8, 3, padding=1, bias=True, warehouse='a')
        self.conv2d = KWConv2d(4, 8, 3, stride=2, padding=1, warehouse='b')
        self.linear = KWLinear(4, 6, warehouse='c')
        self.manager = WarehouseManager()
        for name in 'abc':
            self.manager.declare(name)
        self.manager.bind(self)


@pytest.mark.parametrize('implementation', ['blocked', 'reference', 'unfold'])
def test_empty_batch_every_layer_kind(implementation):
    net = _Layers().train()
    with kw_conv_implementation(implementation):
        assert net.conv1d(torch.randn(0, 4, 9)).shape == (0, 8, 9)
        assert net.conv2d(torch.randn(0, 4, 9, 9)).shape == (0, 8, 5, 5)
        assert net.linear(torch.randn(0, 4)).shape == (0, 6)
        assert net.linear(torch.randn(0, 5, 4)).shape == (0, 5, 6)
        out = net.conv2d(
            torch.randn(0, 4, 9, 9), torch.ones(8), torch.zeros(8))
        assert out.shape == (0, 8, 5, 5)
    # Non-empty batches still take their usual shapes.
    assert net.linear(torch.randn(3, 5, 4)).shape == (3, 5, 6)


@pytest.mark.parametrize('kwargs,match', [
    (dict(stride=0), 'stride must be ints >= 1, got \\(0, 0\\)'),
    (dict(stride=(1, -2)), 'stride must be ints >= 1'),
    (dict(padding=-1), 'padding must be ints >= 0'),
    (dict(dilation=0), 'dilation must be ints >= 1'),
    (dict(kernel_size=0), 'kernel_size must be ints >= 1'),
    (dict(stride=1.5), 'stride must be ints >= 1'),
])
def test_conv_arguments_checked_at_construction(kwargs, match):
    args = dict(in_channels=4, out_channels=8, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        KWConv2d(**args)


def _recording(monkeypatch):
    """Record which formulation each thread's KW convs run."""
    seen = []
    for name in ('kw_conv_blocked', 'kw_conv_reference'):
        original = getattr(functional, name)

        def record(*args, _name=name, _original=original, **kwargs):
            seen.append((threading.current_thread().name, _name))
            return _original(*args, **kwargs)

        monkeypatch.setattr(functional, name, record)
    return seen


def test_implementation_switch_is_local_to_its_thread(monkeypatch):
    net = _Layers().eval()
    x = torch.randn(2, 4, 9, 9)
    seen = _recording(monkeypatch)
    inside, done = threading.Event(), threading.Event()

    def compare():
        with kw_conv_implementation('reference'):
            net.conv2d(x)
            inside.set()
            done.wait(10)

    worker = threading.Thread(target=compare, name='worker')
    worker.start()
    assert inside.wait(10)
    net.conv2d(x)  # this thread never asked for the reference
    done.set()
    worker.join(10)
    assert seen == [('worker', 'kw_conv_reference'),
                    ('MainThread', 'kw_conv_blocked')]


def test_overlapping_blocks_in_two_threads_leave_the_default(monkeypatch):
    """A enters, B enters, A leaves, B leaves: with one global switch B
    restored A's choice and the process stayed on the reference."""
    net = _Layers().eval()
    x = torch.randn(2, 4, 9, 9)
    steps = [threading.Event() for _ in range(3)]

    def a():
        with kw_conv_implementation('reference'):
            steps[0].set()
            steps[1].wait(10)
        steps[2].set()

    def b():
        steps[0].wait(10)
        with kw_conv_implementation('reference'):
            steps[1].set()
            steps[2].wait(10)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    seen = _recording(monkeypatch)
    net.conv2d(x)
    assert seen == [('MainThread', 'kw_conv_blocked')]
