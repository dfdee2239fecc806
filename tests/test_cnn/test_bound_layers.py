"""The bound-layer record and the one walk over a model's KW layers."""
import dataclasses

import pytest
import torch.nn as nn
from mmpretrain.registry import MODELS

import mmkw  # noqa: F401
from mmkw.cnn import (BoundLayer, KWConv2d, KWConvNd, WarehouseManager,
                      bound_layers)
from mmkw.converters import model_warehouse_keys


def _classifier(attention_init=True):
    """A KW backbone and a KW head: two managers under two owners."""
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='KWResNet',
                depth=18,
                base_channels=8,
                stem_channels=8,
                attention_init=attention_init),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='KWLinearClsHead',
                num_classes=5,
                in_channels=64,
                attention_init=attention_init)))


def test_records_name_what_the_model_holds():
    model = _classifier()
    records = list(bound_layers(model))
    layers = [m for m in model.modules() if isinstance(m, KWConvNd)]
    assert [layer for _, layer in records] == layers
    state = model.state_dict()
    for record, layer in records:
        assert model.get_submodule(record.path) is layer
        assert isinstance(
            model.get_submodule(record.manager_path), WarehouseManager)
        assert tuple(state[record.warehouse_key].shape) == \
            record.warehouse_shape
        assert record.geometry == layer.geometry
        assert record.geometry.weight_shape == layer.weight_shape
        assert record.attention_init is True
        assert record.attention_type == 'kw'
    owners = {r.owner_path for r, _ in records}
    assert owners == {'backbone', 'head'}
    assert {r.qualified_warehouse
            for r, _ in records} >= {'backbone.stage0', 'backbone.stage3'}
    # The same records seen from the backbone alone: paths relative to it.
    inner = [r for r, _ in bound_layers(model.backbone)]
    assert [r.path for r in inner] == [
        r.path[len('backbone.'):] for r, _ in records
        if r.owner_path == 'backbone'
    ]


def test_record_is_immutable_and_carries_attention_init():
    model = _classifier(attention_init=False)
    record, _ = next(bound_layers(model))
    assert record.attention_init is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.path = 'elsewhere'
    assert isinstance(record, BoundLayer)


def test_converter_targets_follow_the_records():
    model = _classifier()
    keys = [key for key, _ in model_warehouse_keys(model)]
    manager = model.backbone.warehouse_manager
    expected = [
        f'backbone.warehouse_manager.weights.{wh.name}'
        for wh in manager.plan.warehouses
    ] + [
        f'head.warehouse_manager.weights.{wh.name}'
        for wh in model.head.warehouse_manager.plan.warehouses
    ]
    assert keys == expected


def test_manager_outside_the_network_is_refused():
    net = nn.Sequential(KWConv2d(4, 4, 3, warehouse='w'))
    manager = WarehouseManager()
    manager.declare('w')
    with pytest.raises(ValueError, match='must be a submodule'):
        manager.bind(net)
    assert net[0].bound is None
