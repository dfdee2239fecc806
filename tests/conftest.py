"""Fixtures shared by the tests (plain helpers are in ``helpers.py``)."""
import pytest
from helpers import REPO_ROOT, load_script, num_threads


@pytest.fixture(scope='session')
def load_tool():
    """Import a script under ``tools/`` as a module: ``load_tool(
    'deployment/pytorch2onnx').main([...])``."""

    def load(name: str):
        return load_script(REPO_ROOT / 'tools' / f'{name}.py',
                           'mmkw_tools_' + name.replace('/', '_'))

    return load


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread: the tiny models here are far
    faster that way, and ``pytest -n 2`` already keeps two cores busy."""
    with num_threads(1):
        yield
