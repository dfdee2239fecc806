"""Every KW model runs its forward pass on a CUDA device, checked without a
GPU: built on the CPU, moved to a fake CUDA device (PyTorch's
``FakeTensorMode``) and run there, in float32 and under fp16 autocast. This
catches tensors created on the CPU, or without the input's device or
dtype, in the fast path, the attention and the layers."""
import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS
from torch._subclasses.fake_tensor import FakeTensorMode

import mmkw  # noqa: F401  (registers the KW models)

pytestmark = pytest.mark.usefixtures('one_thread')

MODELS_ON_CUDA = {
    'KWResNet':
    dict(type='KWResNet', depth=18, base_channels=8, stem_channels=8),
    'KWResNet50 1/2x':
    dict(
        type='KWResNet',
        depth=50,
        base_channels=8,
        stem_channels=8,
        budget=0.5,
        nonlocal_basis_ratio=0.0625),
    'KWMobileNetV2':
    dict(type='KWMobileNetV2', widen_factor=0.25),
    'KW*MobileNetV2':
    dict(type='KWMobileNetV2', widen_factor=0.25, attention_type='kw_star'),
    'KWConvNeXt':
    dict(
        type='KWConvNeXt',
        arch=dict(depths=[1, 1, 1, 1], channels=[16, 32, 64, 128])),
    'KWVisionTransformer':
    dict(
        type='KWVisionTransformer',
        arch='deit-tiny',
        img_size=32,
        patch_size=8),
    'KWConverted':
    dict(
        type='KWConverted',
        input_shape=(3, 32, 32),
        backbone=dict(type='RegNet', arch='regnetx_400mf')),
    'classifier with KWLinearClsHead':
    dict(
        type='ImageClassifier',
        backbone=dict(type='KWMobileNetV2', widen_factor=0.25, budget=0.5),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='KWLinearClsHead', num_classes=10, in_channels=1280)),
}


def _outputs(model, x):
    out = model(x) if not hasattr(model, 'extract_feat') else \
        model(x, mode='tensor')
    return list(out) if isinstance(out, (tuple, list)) else [out]


@pytest.mark.parametrize('name', MODELS_ON_CUDA)
@pytest.mark.parametrize('train', [False, True])
def test_forward_on_a_fake_cuda_device(name, train):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(MODELS_ON_CUDA[name])
    model.train(train)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = [o.shape for o in _outputs(model, x)]
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = model.to('cuda')
        x = x.to('cuda')
        outputs = _outputs(model, x)
        assert [o.shape for o in outputs] == expected
        assert all(o.device.type == 'cuda' for o in outputs)
        with torch.autocast('cuda', dtype=torch.float16):
            half = _outputs(model, x)
        assert [o.shape for o in half] == expected
        assert all(o.device.type == 'cuda' for o in half)
