"""``mmkw.utils.saved_tensor_bytes`` leaves nothing behind."""
import gc
import weakref

import torch
import torch.nn as nn

from mmkw.utils import saved_tensor_bytes


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def test_leaves_no_model_alive_under_autocast():
    """Under autocast the convs save the casts of their weights, outputs
    of a graph node: packed with their graph, they held it (and the model)
    in a cycle nothing collected."""

    def measure():
        net = _net()
        with torch.autocast('cpu', torch.bfloat16):
            assert saved_tensor_bytes(
                lambda: net(torch.randn(2, 3, 10, 10)).float().sum()) > 0
        return [weakref.ref(p) for p in net.parameters()]

    alive = measure()
    gc.collect()
    assert not any(ref() is not None for ref in alive)
