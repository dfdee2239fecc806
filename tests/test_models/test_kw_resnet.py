"""KWResNet: official sizes and plans, the MM backbone contract, registry."""
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import (REPO_ROOT, assert_plan_matches_golden, golden_config_name,
                     golden_plan_names, load_golden_plan)
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from mmkw.models import KWResNet, build_model_from_config

RESNET_PLANS = golden_plan_names('resnet')


@pytest.mark.parametrize('name', RESNET_PLANS)
def test_config_matches_golden(name):
    """Parameter totals and the whole plan, from the config, on meta."""
    golden = load_golden_plan(name)
    model = build_model_from_config(golden_config_name(name), device='meta')
    assert sum(p.numel() for p in model.parameters()) == \
        golden['params_total']
    plan = model.backbone.plan
    assert_plan_matches_golden(plan, golden)
    for lp, ref in zip(plan.layers, golden['kw_layers']):
        attention = model.backbone.get_submodule(lp.name).attention
        assert attention.hidden_channels == ref['attention_hidden']
        assert (attention.num_local_cells is not None) == \
            ref['nonlocal_basis']
    plain = {
        name
        for name, m in model.backbone.named_modules()
        if type(m) is torch.nn.Conv2d
    }
    assert plain == {
        p['path']
        for p in golden['plain_layers'] if p['type'] == 'Conv2d'
    }


@pytest.mark.parametrize('depth, channels', [(18, (64, 128, 256, 512)),
                                             (50, (256, 512, 1024, 2048))])
def test_out_indices(depth, channels):
    model = KWResNet(
        depth, budget=0.25 if depth == 18 else 0.5, out_indices=(0, 1, 2, 3))
    model.eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape)
            for o in outs] == [(1, c, 64 // 2**(i + 2), 64 // 2**(i + 2))
                               for i, c in enumerate(channels)]


@pytest.fixture(scope='module')
def resnet18():
    return KWResNet(18, budget=0.25, frozen_stages=2, norm_eval=False)


def test_frozen_stages(resnet18):
    model = resnet18
    model.train()
    frozen = ['conv1', 'bn1', 'layer1', 'layer2']
    for name, param in model.named_parameters():
        if name.split('.')[0] in frozen:
            assert not param.requires_grad, name
    weights = model.warehouse_manager.weights
    assert not weights['stage0'].requires_grad
    assert not weights['stage1'].requires_grad
    assert weights['stage2'].requires_grad and weights['stage3'].requires_grad
    assert all(p.requires_grad for p in model.layer3.parameters())
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm):
            assert m.training == (name.split('.')[0] not in frozen), name


def test_norm_eval():
    model = KWResNet(18, budget=0.25, norm_eval=True)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in norms)
    assert not any(m.training for m in norms)
    assert model.layer4.training


def test_with_cp():
    torch.manual_seed(0)
    plain = KWResNet(18, budget=0.25)
    checkpointed = KWResNet(18, budget=0.25, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32)
    outs = []
    for model in (plain, checkpointed):
        model.train()
        out = model(x)[-1]
        out.pow(2).mean().backward()
        outs.append(out)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for (name, p), q in zip(plain.named_parameters(),
                            checkpointed.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


@pytest.mark.parametrize('kwargs, pattern', [
    (dict(depth=19), 'depth.*19'),
    (dict(depth=18, out_indices=(4, )), 'out_indices.*4'),
    (dict(depth=18, out_indices=()), r'out_indices.*\(\)'),
    (dict(depth=18, frozen_stages=5), 'frozen_stages.*5'),
    (dict(depth=18, budget=0), 'budget.*0'),
    (dict(depth=18, budget=-0.5), r'budget.*-0\.5'),
])
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        KWResNet(**kwargs)


def _is_resnet18(model):
    return isinstance(model, KWResNet) and model.depth == 18


def test_registry():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    cfg = dict(type='KWResNet', depth=18, budget=0.25)
    assert _is_resnet18(MMPRETRAIN_MODELS.build(cfg))
    assert _is_resnet18(MMDET_MODELS.build(cfg))
    for scope in ('mmpretrain', 'mmdet'):
        with DefaultScope.overwrite_default_scope(scope):
            assert _is_resnet18(MMENGINE_MODELS.build(cfg))
    assert _is_resnet18(MMENGINE_MODELS.build(dict(cfg, type='mmkw.KWResNet')))


def test_config_with_custom_imports_only(tmp_path):
    """A fresh interpreter: nothing but ``custom_imports`` registers mmkw."""
    config = tmp_path / 'cfg.py'
    config.write_text(
        textwrap.dedent("""
        custom_imports = dict(imports=['mmkw'], allow_failed_imports=False)
        model = dict(type='KWResNet', depth=18, budget=0.25)
        """))
    script = textwrap.dedent(f"""
        from mmengine.config import Config
        from mmpretrain.registry import MODELS
        cfg = Config.fromfile({str(config)!r})
        model = MODELS.build(cfg.model)
        print(type(model).__module__, type(model).__name__)
        """)
    result = subprocess.run([sys.executable, '-c', script],
                            cwd=REPO_ROOT,
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'mmkw.models.backbones.kw_resnet KWResNet' in result.stdout


def test_init_weights():
    model = KWResNet(18, budget=0.25)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float('nan'))
    model.init_weights()
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
    manager = model.warehouse_manager
    for wh in manager.plan.warehouses:
        weight = manager.weights[wh.name]
        for lp in wh.layers:
            # Kaiming normal (fan_out) over the layer's slice viewed as
            # [cells * c_o, c_i, 1, 1]: std = sqrt(2 / (cells * c_o)).
            cells = weight[lp.start:lp.start + lp.num_cells]
            expected = (2 / (lp.num_cells * wh.cell_shape[0]))**0.5
            assert cells.std().item() == pytest.approx(expected, rel=0.1), \
                lp.name
