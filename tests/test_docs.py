"""README.md and docs/ stay true: every relative link, image and anchor
resolves, every config and tool they name exists, and the README's cheap
commands run as printed."""
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from helpers import REPO_ROOT

DOCS = [REPO_ROOT / 'README.md'] + sorted((REPO_ROOT / 'docs').glob('*.md'))
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
PATH = re.compile(r'(?<![\w/.-])((?:configs|tools)/[\w./-]+\.(?:py|sh))')


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def _anchors(path: Path) -> set:
    text = re.sub(r'```.*?```', '', path.read_text(), flags=re.S)
    return {
        _slug(line.lstrip('#'))
        for line in text.splitlines() if line.startswith('#')
    }


def _links():
    for doc in DOCS:
        text = re.sub(r'```.*?```', '', doc.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if not target.startswith(('http://', 'https://', 'mailto:')):
                yield doc, target


@pytest.mark.parametrize(
    'doc,target',
    list(_links()),
    ids=lambda v: v.name if isinstance(v, Path) else v)
def test_relative_links_resolve(doc, target):
    file, _, anchor = target.partition('#')
    path = (doc.parent / file).resolve() if file else doc
    assert path.exists(), f'{doc.name}: {target} does not exist'
    if anchor:
        assert anchor in _anchors(path), \
            f'{doc.name}: no heading #{anchor} in {path.name}'


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: p.name)
def test_named_configs_and_tools_exist(doc):
    for name in set(PATH.findall(doc.read_text())):
        assert (REPO_ROOT / name).exists(), f'{doc.name} names {name}'


def _readme_commands():
    """The README's command lines that are cheap to run as printed."""
    text = (REPO_ROOT / 'README.md').read_text()
    for block in re.findall(r'```shell\n(.*?)```', text, flags=re.S):
        for line in block.splitlines():
            if re.match(
                    r'\.venv/bin/python tools/analysis_tools/'
                    r'(kw_plan|get_flops)\.py \S+$', line):
                yield line


README_COMMANDS = list(_readme_commands())
TOOLS = sorted({
    name
    for doc in DOCS
    for name in PATH.findall(doc.read_text())
    if name.startswith('tools/') and name.endswith('.py')
})


def test_readme_shows_cheap_commands():
    assert len(README_COMMANDS) == 2


@pytest.mark.parametrize('command', README_COMMANDS)
def test_readme_command_runs_as_printed(command):
    result = subprocess.run(
        shlex.split(command),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()


@pytest.mark.parametrize('tool', TOOLS)
def test_every_documented_tool_has_help(tool):
    result = subprocess.run(['.venv/bin/python', tool, '--help'],
                            cwd=REPO_ROOT,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'usage' in result.stdout.lower()


def _python_blocks():
    text = (REPO_ROOT / 'README.md').read_text()
    return re.findall(r'```python\n(.*?)```', text, flags=re.S)


@pytest.mark.parametrize('index', range(len(_python_blocks())))
def test_readme_python_runs_as_printed(index, tmp_path, monkeypatch):
    """Each Python block of the README: configs build, code runs (in a
    folder holding the files it names: a converted checkpoint, an image)."""
    import cv2
    import numpy as np
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain import get_model
    from mmpretrain.registry import MODELS

    import mmkw  # noqa: F401  (as the README's code does)
    code = _python_blocks()[index]
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    if 'custom_imports' in code:  # a config
        (tmp_path / 'cfg.py').write_text(code)
        cfg = Config.fromfile(str(tmp_path / 'cfg.py'))
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model = MODELS.build(cfg.model)
        assert type(model.backbone).__name__ == 'KWResNet'
        return
    for path in set(re.findall(r"'(checkpoints/[\w.-]+\.pth)'", code)):
        (tmp_path / 'checkpoints').mkdir(exist_ok=True)
        name = re.search(r"get_model\('([\w.-]+)'", code).group(1)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            model = get_model(name)
        torch.save({'state_dict': model.state_dict()}, tmp_path / path)
    cv2.imwrite(
        str(tmp_path / 'demo.jpg'),
        np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        exec(compile(code, f'README block {index}', 'exec'), {})
