"""``mmkw.compat`` is the one place where ``import mmkw`` changes the stack:
its table names every change, applying it again changes nothing, a fresh
``import mmkw`` changes exactly the listed upstream objects, and each
patched behaviour is exercised through the upstream API (here or in the
test each patch names)."""
import ast
import json
import subprocess
import sys
import textwrap
import warnings

import pytest
from helpers import REPO_ROOT
from mmengine.config import Config

from mmkw import compat
from mmkw.compat import STACK_PATCHES, StackPatch, StackVersionWarning

PATCHES = {patch.name: patch for patch in STACK_PATCHES}
STACK = ('mmengine', 'mmcv', 'mmdet', 'mmpretrain')


def _targets() -> dict:
    return {
        target: compat.resolve(target)
        for patch in STACK_PATCHES
        for target in patch.replaces if target != 'warnings:filters'
    }


def test_the_table_names_every_patch():
    assert list(PATCHES) == [
        'pkg-resources-warning', 'mmkw-config-bases', 'history-buffer-pickle',
        'local-checkpoint-loader', 'url-checkpoint-loaders',
        'atomic-checkpoint-save', 'checkpoint-save-then-prune',
        'efficient-conv-bn-for-kw'
    ]
    assert compat.applied_patches() == list(STACK_PATCHES)
    for patch in STACK_PATCHES:
        assert patch.is_applied(), patch.name
        assert patch.upstream and patch.why and patch.tests, patch.name
        assert not patch.version_mismatches(), patch.name  # pinned stack


def test_each_patch_names_tests_that_exist():
    for patch in STACK_PATCHES:
        for test in patch.tests:
            path, name = test.split('::')
            tree = ast.parse((REPO_ROOT / path).read_text())
            defined = {
                node.name
                for node in tree.body if isinstance(node, ast.FunctionDef)
            }
            assert name in defined, f'{patch.name}: {test} does not exist'


def test_applying_again_changes_nothing():
    targets = _targets()
    filters = list(warnings.filters)
    assert compat.apply_stack_patches() == list(STACK_PATCHES)
    for patch in STACK_PATCHES:  # even forced, each change is the same
        patch.apply()
    for target, obj in _targets().items():
        assert obj is targets[target], target
    assert warnings.filters == filters


def test_patched_objects_are_mmkw_ones():
    """The upstream names hold mmkw's objects; the behaviours are exercised
    through MMEngine by the tests each patch names (test_checkpoint.py,
    test_url_checkpoints.py, test_exact_resume.py, test_detection.py,
    test_efficient_conv_bn.py)."""
    from mmengine.hooks import CheckpointHook
    from mmengine.logging import HistoryBuffer
    from mmengine.model import efficient_conv_bn_eval
    from mmengine.runner import CheckpointLoader, runner

    from mmkw.engine import checkpoint, checkpoint_saving, efficient_conv_bn
    assert HistoryBuffer.__getstate__ is checkpoint._history_buffer_getstate
    assert HistoryBuffer.__setstate__ is checkpoint._history_buffer_setstate
    for name, loader in [('/a.pth', checkpoint.load_from_local),
                         ('https://h/a.pth', checkpoint.load_from_http),
                         ('torchvision://r', checkpoint.load_from_torchvision),
                         ('open-mmlab://r', checkpoint.load_from_openmmlab),
                         ('mmcls://r', checkpoint.load_from_mmcls)]:
        assert CheckpointLoader._get_checkpoint_loader(name) is loader
    assert runner.save_checkpoint is checkpoint_saving.save_checkpoint
    assert CheckpointHook._save_checkpoint_with_step is \
        checkpoint_saving.save_then_prune
    for module in (runner, efficient_conv_bn_eval):
        assert module.turn_on_efficient_conv_bn_eval is \
            efficient_conv_bn.turn_on_efficient_conv_bn_eval
    assert Config._get_cfg_path._mmkw


def test_mmkw_config_base_resolves(tmp_path):
    config = tmp_path / 'user.py'
    config.write_text("_base_ = 'mmkw::kw1x-resnet18_8xb32_in1k.py'\n"
                      'model = dict(backbone=dict(budget=2.0))\n')
    cfg = Config.fromfile(str(config))
    assert cfg.model.backbone.type == 'KWResNet'
    assert cfg.model.backbone.budget == 2.0
    config.write_text("_base_ = 'mmkw::no_such_config.py'\n")
    with pytest.raises(FileNotFoundError, match='mmkw has no such config'):
        Config.fromfile(str(config))


def test_version_outside_the_range_warns_and_applies(monkeypatch):
    calls = []
    outside = StackPatch(
        name='outside',
        replaces=('mmengine.runner:Runner', ),
        by=(),
        upstream=('mmengine<0.1', ),
        why='a test.',
        tests=(),
        install=calls.append,
        in_place=lambda patch: bool(calls))
    absent = StackPatch(
        name='absent',
        replaces=('mmkw_no_such_package:x', ),
        by=(),
        upstream=('mmkw-no-such-package>=1', ),
        why='a test.',
        tests=(),
        install=calls.append)
    monkeypatch.setattr(compat, 'STACK_PATCHES', (outside, absent))
    monkeypatch.setattr(compat, '_applied', {})
    with pytest.warns(StackVersionWarning, match=r'mmengine<0\.1.*0\.10\.7'):
        assert compat.apply_stack_patches() == [outside]
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert compat.apply_stack_patches() == [outside]
    assert calls == [outside]


def test_docs_table_is_the_modules():
    text = (REPO_ROOT / 'docs' / 'compatibility.md').read_text()
    assert compat.markdown_table() in text, \
        'paste mmkw.compat.markdown_table() into docs/compatibility.md'


def _python(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, '-c', script, *args],
                            cwd=REPO_ROOT,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()[-1]


# Every upstream module that ``import mmkw`` loads, in import order.
LOADED = textwrap.dedent(f'''
    import json, sys
    import mmkw
    print(json.dumps([name for name, module in sys.modules.items()
                      if module is not None
                      and name.split('.')[0] in {STACK!r}]))
''')

# Imports those modules, then mmkw: which upstream module attributes, class
# attributes and entries of class-level dicts does it replace?
DIFF = textwrap.dedent(f'''
    import importlib, json, sys, types, warnings
    for name in json.loads(sys.argv[1]):
        importlib.import_module(name)

    def snapshot():
        seen = {{}}
        for name, module in list(sys.modules.items()):
            if module is None or name.split('.')[0] not in {STACK!r}:
                continue
            for attr, value in list(vars(module).items()):
                if isinstance(value, types.ModuleType):
                    continue
                seen[f'{{name}}:{{attr}}'] = value
                if not (isinstance(value, type)
                        and value.__module__ == name):
                    continue
                for member, item in list(vars(value).items()):
                    key = f'{{name}}:{{attr}}.{{member}}'
                    if isinstance(item, dict):
                        for k, v in list(item.items()):
                            seen[f'{{key}}[{{k!r}}]'] = v
                    else:
                        seen[key] = item
        return seen

    from mmengine.config import Config
    at_start_up = getattr(Config._get_cfg_path, '_mmkw', False)
    before = snapshot()
    filters = list(warnings.filters)
    import mmkw
    from mmkw.compat import applied_patches
    after = snapshot()
    print(json.dumps(dict(
        changed=sorted(key for key, value in before.items()
                       if key not in after or after[key] is not value),
        filters=[str(f[1] and f[1].pattern) for f in warnings.filters
                 if f not in filters],
        applied=[patch.name for patch in applied_patches()],
        at_start_up=at_start_up)))
''')


def test_import_changes_exactly_the_listed_objects():
    """A fresh process that has loaded every upstream module mmkw uses:
    ``import mmkw`` then replaces exactly the objects the table lists (and
    adds its one warnings filter)."""
    loaded = _python(LOADED)
    found = json.loads(_python(DIFF, loaded))
    assert found['applied'] == list(PATCHES)
    expected = set(_targets())
    if found['at_start_up']:  # an installed wheel's .pth patched Config
        expected.discard(PATCHES['mmkw-config-bases'].replaces[0])
    assert found['changed'] == sorted(expected)
    assert found['filters'] == ['pkg_resources is deprecated as an API']


def test_torch_only_import_applies_no_stack_patch():
    """With PyTorch alone (tests/test_cnn/test_torch_only.py), only the
    warnings filter is applied."""
    script = textwrap.dedent(f'''
        import sys
        for name in {STACK!r}:
            sys.modules[name] = None
        import mmkw
        print([patch.name for patch in mmkw.compat.applied_patches()])
    ''')
    assert _python(script) == "['pkg-resources-warning']"
