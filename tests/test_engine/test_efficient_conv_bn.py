"""Efficient ConvBN for KW: frozen BatchNorms folded into KW convolutions."""
import copy

import pytest
import torch
import torch.nn as nn
from mmengine.model.efficient_conv_bn_eval import \
    efficient_conv_bn_eval_control

import mmkw
from mmkw.cnn import KWConvNd
from mmkw.engine import kw_conv_bn_eval_control, turn_on_efficient_conv_bn_eval
from mmkw.models import KWMobileNetV2, KWResNet
from mmkw.utils import saved_tensor_bytes


class Detector(nn.Module):
    """Holds a backbone under the name MMDetection gives it."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def randomise_norms(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()


BACKBONES = {
    'resnet50': lambda: KWResNet(depth=50, norm_eval=True, frozen_stages=1),
    'resnet18 1/2x': lambda: KWResNet(depth=18, budget=0.5, norm_eval=True),
    'mobilenet-v2 1/2x': lambda: KWMobileNetV2(budget=0.5, norm_eval=True),
}


def folded_pair(name):
    """A backbone and a folded copy, with the number of its KW and plain
    convolutions (every one of them is followed by a BatchNorm)."""
    torch.manual_seed(0)
    backbone = BACKBONES[name]()
    kw_pairs = sum(isinstance(m, KWConvNd) for m in backbone.modules())
    plain_pairs = sum(isinstance(m, nn.Conv2d) for m in backbone.modules())
    mmkw.set_temperature(backbone, 0.3)
    randomise_norms(backbone)
    backbone.train()  # norm_eval keeps every BatchNorm in eval mode
    folded = copy.deepcopy(backbone)
    turn_on_efficient_conv_bn_eval(Detector(folded), ['backbone'])
    return backbone, folded, kw_pairs, plain_pairs


@pytest.mark.parametrize('name', BACKBONES)
def test_folded_outputs_and_every_gradient_match(name):
    backbone, folded, kw_pairs, plain_pairs = folded_pair(name)
    targets = [n.target for n in folded.forward.__self__.graph.nodes]
    assert targets.count(kw_conv_bn_eval_control) == kw_pairs
    assert targets.count(efficient_conv_bn_eval_control) == plain_pairs
    x = torch.randn(2, 3, 32, 32)
    expected, got = backbone(x), folded(x)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    sum(o.square().mean() for o in expected).backward()
    sum(o.square().mean() for o in got).backward()
    params = dict(folded.named_parameters())
    compared = 0
    for key, p in backbone.named_parameters():
        if p.grad is None:
            assert params[key].grad is None, key
            continue
        scale = p.grad.abs().max().item()
        torch.testing.assert_close(
            params[key].grad,
            p.grad,
            rtol=1e-3,
            atol=1e-4 * scale + 1e-8,
            msg=lambda m: f'{key}: {m}')
        compared += 1
    assert compared > 0


def test_folded_model_follows_temperature_and_bn_mode():
    backbone, folded, *_ = folded_pair('resnet18 1/2x')
    x = torch.randn(2, 3, 32, 32)
    for tau in (0.0, 1.0):
        mmkw.set_temperature(backbone, tau)
        mmkw.set_temperature(folded, tau)
        with torch.no_grad():
            torch.testing.assert_close(
                folded(x)[0], backbone(x)[0], rtol=1e-4, atol=1e-5)
    # BatchNorm in training mode is not folded: statistics update alike.
    backbone.norm_eval = folded.norm_eval = False
    backbone.train()
    folded.train()
    expected, got = backbone(x), folded(x)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(folded.bn1.running_mean,
                               backbone.bn1.running_mean)
    torch.testing.assert_close(folded.layer4[1].bn2.running_var,
                               backbone.layer4[1].bn2.running_var)


def test_folding_saves_the_conv_outputs():
    backbone, folded, *_ = folded_pair('resnet50')
    x = torch.randn(2, 3, 64, 64)
    weights = {p.untyped_storage().data_ptr() for p in backbone.parameters()}
    weights |= {p.untyped_storage().data_ptr() for p in folded.parameters()}
    unfused = saved_tensor_bytes(lambda: backbone(x), exclude=weights)
    fused = saved_tensor_bytes(lambda: folded(x), exclude=weights)
    # BatchNorm no longer keeps its input: about a third of the activations.
    assert fused < 0.75 * unfused, (fused, unfused)


def test_folding_under_bf16_autocast_stays_bf16_and_saves_bytes():
    """As MMEngine's fold of a plain conv: the folded KW conv's output is
    in autocast's dtype (a float32 shift would promote every activation
    after it), the outputs match the unfolded model's and fewer bytes are
    kept for backward."""
    backbone, folded, *_ = folded_pair('resnet50')
    x = torch.randn(2, 3, 64, 64)
    weights = {p.untyped_storage().data_ptr() for p in backbone.parameters()}
    weights |= {p.untyped_storage().data_ptr() for p in folded.parameters()}
    with torch.autocast('cpu', dtype=torch.bfloat16):
        conv = folded.layer1[0].conv2
        assert kw_conv_bn_eval_control(folded.layer1[0].bn2, conv,
                                       torch.randn(2, 64, 16, 16)).dtype \
            == torch.bfloat16
        expected, got = backbone(x), folded(x)
        unfused = saved_tensor_bytes(lambda: backbone(x), exclude=weights)
        fused = saved_tensor_bytes(lambda: folded(x), exclude=weights)
    for a, b in zip(expected, got):
        assert b.dtype == a.dtype
        err = (b.float() - a.float()).abs().max()
        assert err <= 0.05 * a.float().abs().max()
    assert fused < 0.9 * unfused, (fused, unfused)


def test_runner_calls_the_kw_aware_pass():
    from mmengine.runner import runner
    assert runner.turn_on_efficient_conv_bn_eval is \
        turn_on_efficient_conv_bn_eval


def test_mmengine_public_function_folds_kw_models():
    """MMEngine's public function, called directly on a KW model, folds it
    (MMEngine's own raised a bare KeyError there)."""
    from mmengine.model.efficient_conv_bn_eval import \
        turn_on_efficient_conv_bn_eval as public
    torch.manual_seed(0)
    backbone = BACKBONES['resnet18 1/2x']()
    randomise_norms(backbone)
    backbone.train()
    folded = copy.deepcopy(backbone)
    public(Detector(folded), ['backbone'])
    x = torch.randn(2, 3, 32, 32)
    for a, b in zip(backbone(x), folded(x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
