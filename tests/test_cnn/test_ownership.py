"""One-way ownership: the manager owns the warehouses, layers follow the
manager of their own copy (deepcopy, DataParallel replicas), checkpoints
are checked where PyTorch loads them."""
import copy
import importlib

import pytest
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

import mmkw  # noqa: F401  (registers the KW backbones)
from mmkw.cnn import KWConvNd

# The module (``torch.nn.parallel.replicate`` names the function).
replicate_module = importlib.import_module('torch.nn.parallel.replicate')
TINY = dict(
    type='KWResNet',
    depth=18,
    base_channels=8,
    stem_channels=8,
    out_indices=(3, ))


def _layers(model):
    return [m for m in model.modules() if isinstance(m, KWConvNd)]


def test_deepcopy_points_at_its_own_warehouses():
    model = MODELS.build(TINY).eval()
    twin = copy.deepcopy(model)
    assert all(layer._manager[0] is twin.warehouse_manager
               for layer in _layers(twin))
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(twin(x)[0], model(x)[0])
    with torch.no_grad():
        twin.warehouse_manager.weights['stage3'].mul_(2)
    assert not torch.allclose(twin(x)[0], model(x)[0])


def _clone_broadcast(tensors, devices, detach=False):
    """DataParallel's broadcast, on the CPU: one copy per device (a
    differentiable copy unless ``detach``)."""
    if not tensors:
        return []
    return [[t.detach().clone() if detach else t.clone() for t in tensors]
            for _ in devices]


def test_dataparallel_replicas_use_their_own_warehouses(monkeypatch):
    """``torch.nn.parallel.replicate`` (DataParallel's) copies every
    module's attributes, so a layer's handle in a replica still names the
    original manager; the network's forward pre-hook re-points it."""
    monkeypatch.setattr(replicate_module, '_broadcast_coalesced_reshape',
                        _clone_broadcast)
    model = MODELS.build(TINY).eval()
    replicas = replicate_module.replicate(model, [0, 1])
    x = torch.rand(2, 3, 64, 64)
    expected = model(x)[0]
    for replica in replicas:
        out = replica(x)[0]
        torch.testing.assert_close(out, expected)
        assert all(layer._manager[0] is replica.warehouse_manager
                   for layer in _layers(replica))
        warehouse = replica.warehouse_manager.weights['stage3']
        assert warehouse is not model.warehouse_manager.weights['stage3']
        # The replica's output depends on the replica's warehouse copy.
        grad, = torch.autograd.grad(out.sum(), warehouse)
        assert grad.abs().sum() > 0
    assert all(layer._manager[0] is model.warehouse_manager
               for layer in _layers(model))


def test_manager_checks_the_checkpoint_where_pytorch_loads_it():
    model = MODELS.build(TINY)
    state = model.state_dict()
    # Under any prefix: the manager receives its own.
    wrapper = nn.Module()
    wrapper.backbone = MODELS.build(dict(TINY, budget=2.0))
    with pytest.raises(
            ValueError,
            match=r"'backbone.warehouse_manager."
            r"weights.stage0' has shape \[56, 8, 8, 1, 1\]"):
        wrapper.load_state_dict({
            'backbone.' + k: v
            for k, v in state.items()
        },
                                strict=False)
    numbered = {
        k.replace('weights.stage', 'weights.'): v
        for k, v in state.items()
    }
    with pytest.raises(
            ValueError,
            match='numbered warehouses come from an '
            'unconverted official checkpoint'):
        MODELS.build(TINY).load_state_dict(numbered, strict=False)
    # No load pre-hooks left on the network.
    assert not model._load_state_dict_pre_hooks
