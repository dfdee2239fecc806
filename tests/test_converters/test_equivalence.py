"""Official checkpoints -> mmkw: golden logits, every official budget, CLI.

Each golden file in ``tests/data/golden/equivalence`` is picked up
automatically: its official state dict is regenerated with ``fill.py``,
converted, loaded strictly into the model of the config the converter
infers, and the logits must match the official ones at three temperatures.
"""
import argparse
import copy
import re

import pytest
import torch
from helpers import (CONFIG_DIR, fill_state_dict, golden_config_name,
                     golden_names, golden_plan_names, load_golden,
                     load_golden_plan, num_threads)
from mmengine.runner import load_checkpoint

import mmkw
from mmkw.cnn import kw_conv_implementation
from mmkw.converters import (convert_official_state_dict, detect_family,
                             find_matching_config, load_official_checkpoint,
                             model_warehouse_keys)
from mmkw.models import build_model_from_config

TEMPERATURES = ('0.0', '0.5', '1.0')


@pytest.fixture
def official_kernels():
    """Run the official formulation (``kw_conv_implementation('reference')``),
    as the golden logits were made, at two threads (the suite runs one per
    xdist worker)."""
    with num_threads(max(2, torch.get_num_threads())), \
            kw_conv_implementation('reference'):
        yield


def assert_official_logits(model, golden: dict, temperature: str) -> None:
    """``model`` (eval, float32) gives the official logits of ``golden`` at
    ``temperature``.

    The golden logits are the official code's float32 output on one CPU,
    and the golden networks' random (filled) weights amplify float32
    rounding: another summation order (another CPU's kernels, another
    thread count) moves the ResNet50 and MobileNetV2 logits by up to 0.5
    (ConvNeXt's by 1e-5). So the model runs in float64, and must agree with
    the official logits within three times the float32 rounding of the same
    computation, measured here (its largest float32 / float64 difference
    at one and two threads), plus 1e-4. A wrong conversion moves them by
    whole units (the temperatures alone move them by 2-20).
    """
    inputs, expected = golden['input'], golden['outputs'][temperature]
    exact = copy.deepcopy(model).double()
    with torch.no_grad():
        logits = exact(inputs.double(), mode='tensor')
        noise = 0.0
        for threads in (1, 2):
            with num_threads(threads):
                rounded = model(inputs, mode='tensor')
            noise = max(noise, (rounded - logits).abs().max().item())
    assert logits.shape == expected.shape
    err = (logits - expected).abs().max().item()
    assert err <= 1e-4 + 3 * noise, (
        f'at temperature {temperature}: max error {err:.2e}, float32 '
        f'rounding here {noise:.2e}')


def official_state_dict(golden: dict,
                        temperature: str,
                        filled: dict = None) -> dict:
    """The official state dict of a golden model at a temperature
    (``filled``: the output of ``fill_state_dict``, if already computed)."""
    state = dict(filled or fill_state_dict(golden['keys']))
    state.update(golden['overrides'][temperature])
    return state


@pytest.mark.parametrize('name', golden_names())
def test_golden_logits(name, official_kernels):
    golden = load_golden(name)
    filled = fill_state_dict(golden['keys'])
    states = {t: official_state_dict(golden, t, filled) for t in TEMPERATURES}
    config, family = find_matching_config(states['0.0'], CONFIG_DIR)
    assert str(config) == golden_config_name(name)
    model = build_model_from_config(config)
    model.eval()
    for t in TEMPERATURES:
        converted = convert_official_state_dict(states[t], model, family)
        model.load_state_dict(converted, strict=True)
        assert mmkw.get_temperature(model) == 0.0
        mmkw.set_temperature(model, float(t))
        assert_official_logits(model, golden, t)


@pytest.mark.parametrize('name', golden_names())
def test_fast_path_on_golden_models(name):
    """The default (blocked) KW conv gives the official formulation's logits
    on every golden model and temperature, in float64 (exact up to rounding,
    whatever the summation order)."""
    golden = load_golden(name)
    state = official_state_dict(golden, '0.0')
    config, family = find_matching_config(state, CONFIG_DIR)
    model = build_model_from_config(config)
    model.load_state_dict(convert_official_state_dict(state, model, family))
    model.double().eval()
    inputs = golden['input'].double()
    for t in TEMPERATURES:
        mmkw.set_temperature(model, float(t))
        with torch.no_grad():
            fast = model(inputs, mode='tensor')
            with kw_conv_implementation('reference'):
                reference = model(inputs, mode='tensor')
        scale = reference.abs().max().item()
        err = (fast - reference).abs().max().item()
        assert err <= 1e-9 * scale, f'{name} at {t}: max error {err:.2e}'


def official_keys_of(model) -> dict:
    """Invert the conversion on an mmkw model: official key -> shape.

    Test-only: ``backbone.warehouse_manager.weights.<name>`` -> official
    warehouse index, ``head.fc.*`` -> ``fc.*``, ``backbone.*`` -> ``*``,
    attention temperatures dropped (the official code does not save them).
    """
    warehouses = {
        key: i
        for i, (key, _) in enumerate(model_warehouse_keys(model))
    }
    result = {}
    for key, value in model.state_dict().items():
        if key.endswith('attention.temperature'):
            continue
        if key in warehouses:
            official = f'warehouse_manager.weights.{warehouses[key]}'
        elif key.startswith('head.'):
            official = key[len('head.'):]
        else:
            official = key[len('backbone.'):]
        result[official] = tuple(value.shape)
    return result


RESNET_PLANS = golden_plan_names('resnet')


@pytest.mark.parametrize('name', RESNET_PLANS)
def test_every_official_resnet_budget(name):
    """No golden logits for these: build the official layout from our model
    (checked against the golden plan) and round-trip it."""
    golden = load_golden_plan(name)
    model = build_model_from_config(golden_config_name(name), device='meta')
    keys = official_keys_of(model)
    for wh in golden['warehouses']:
        assert keys[f"warehouse_manager.weights.{wh['index']}"] == \
            (wh['n'], *wh['cell_shape'])
    for layer in golden['kw_layers']:
        assert keys[f"{layer['path']}.attention.fc1.weight"] == \
            (layer['attention_hidden'], layer['in_channels'])
        assert f"{layer['path']}.weight" not in keys
    for layer in golden['plain_layers']:
        assert keys[f"{layer['path']}.weight"] == tuple(layer['shape'])
    assert sum(
        torch.Size(shape).numel() for key, shape in keys.items()
        if not re.search(r'running_|num_batches', key)) == \
        golden['params_total']

    official = {
        k: torch.empty(shape, device='meta')
        for k, shape in keys.items()
    }
    config, family = find_matching_config(official, CONFIG_DIR)
    assert str(config) == golden_config_name(name)
    assert family.name == 'resnet'
    converted = convert_official_state_dict(official, model)
    assert {k: tuple(v.shape) for k, v in converted.items()} == \
        {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture(scope='module')
def resnet18_official():
    golden = load_golden('resnet18_kw1x')
    return golden, official_state_dict(golden, '0.0')


def test_cli_end_to_end(tmp_path, capsys, resnet18_official, official_kernels,
                        load_tool):
    golden, state = resnet18_official
    src = tmp_path / 'kw1x_resnet18.pth'
    dst = tmp_path / 'out' / 'kw1x-resnet18_in1k.pth'
    # The authors' layout: the model beside training state and an
    # argparse.Namespace, which the converter reads with weights_only=True.
    torch.save(
        dict(
            model=state,
            epoch=99,
            args=argparse.Namespace(
                model='kw_resnet18', lr=0.1, cell_num_ratio=1)), src)
    assert set(load_official_checkpoint(src)) == set(state)

    assert load_tool('model_converters/kw_official_to_mmkw').main(
        [str(src), str(dst)]) == 0
    printed = capsys.readouterr().out
    config = golden_config_name('resnet18_kw1x')
    assert f'matching config: {config}' in printed
    assert 'family: resnet' in printed
    total = load_golden_plan('resnet18_kw1x')['params_total']
    assert f'parameters: {total:,}' in printed

    checkpoint = torch.load(dst, weights_only=True)
    assert checkpoint['meta'] == dict(
        converted_from=str(src), config=config, official_family='resnet')

    model = build_model_from_config(config)
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)
    model.eval()
    assert_official_logits(model, golden, '0.0')
    with torch.no_grad():
        logits = model(golden['input'], mode='tensor')

    # The same file as the classifier's Pretrained init_cfg.
    pretrained = build_model_from_config(config)
    pretrained.init_cfg = dict(type='Pretrained', checkpoint=str(dst))
    pretrained.init_weights()
    pretrained.eval()
    with torch.no_grad():
        assert torch.equal(pretrained(golden['input'], mode='tensor'), logits)


def test_cli_with_config_and_errors(tmp_path, capsys, resnet18_official,
                                    load_tool):
    _, state = resnet18_official
    tool = load_tool('model_converters/kw_official_to_mmkw')
    src = tmp_path / 'bare.pth'
    torch.save(state, src)  # a bare state dict
    config = golden_config_name('resnet18_kw1x')
    assert tool.main([str(src),
                      str(tmp_path / 'a.pth'), '--config', config]) == 0
    assert 'matching config' not in capsys.readouterr().out

    # A config of another budget does not fit.
    wrong = golden_config_name('resnet18_kw2x')
    assert tool.main([str(src),
                      str(tmp_path / 'b.pth'), '--config', wrong]) == 1
    err = capsys.readouterr().err
    assert 'mismatched' in err and 'warehouse_manager.weights.stage0' in err
    assert not (tmp_path / 'b.pth').exists()

    foreign = dict(state, **{'proj.weight': torch.zeros(3)})
    torch.save({'model': foreign}, src)
    assert tool.main([str(src), str(tmp_path / 'c.pth')]) == 1
    err = capsys.readouterr().err
    assert "closest, kw1x-resnet18_8xb32_in1k.py" in err
    assert '1 unmapped: [proj.weight]' in err


def test_conversion_errors(resnet18_official):
    _, state = resnet18_official
    model = build_model_from_config(
        golden_config_name('resnet18_kw1x'), device='meta')

    with pytest.raises(ValueError, match=r'1 unmapped: \[proj\.weight\]'):
        convert_official_state_dict(
            dict(state, **{'proj.weight': torch.zeros(3)}), model)

    missing = dict(state)
    del missing['layer1.0.conv1.attention.fc2.bias']
    with pytest.raises(
            ValueError,
            match=r'1 missing: \[backbone\.layer1\.0'
            r'\.conv1\.attention\.fc2\.bias\]'):
        convert_official_state_dict(missing, model)

    extra = dict(state, **{'warehouse_manager.weights.4': torch.zeros(1)})
    with pytest.raises(
            ValueError, match=r'weights\.4 \(the model has 4 '
            r'warehouses\)'):
        convert_official_state_dict(extra, model)

    shape = dict(state, **{'fc.bias': torch.zeros(10)})
    with pytest.raises(
            ValueError, match=r'head\.fc\.bias \(10,\) != '
            r'\(1000,\)'):
        convert_official_state_dict(shape, model)

    with pytest.raises(ValueError, match='not an official KernelWarehouse'):
        detect_family(['conv1.weight', 'fc.weight'])
    with pytest.raises(ValueError, match='cannot tell the architecture'):
        detect_family(['warehouse_manager.weights.0', 'encoder.weight'])

    truncated = dict(state)
    truncated['warehouse_manager.weights.0'] = torch.zeros(5, 64, 64, 1, 1)
    with pytest.raises(
            ValueError,
            match=r"no mmkw config fits the official "
            r"resnet checkpoint; tried \[.*'kw1x-resnet18"):
        find_matching_config(truncated, CONFIG_DIR)
