"""Checkpoints named by URL load as safely as local files.

A loopback HTTP server started here serves a checkpoint whose unpickling
would create a marker file; through every entry point (the loader, the test
tool, ``load_from``, resume, ``init_cfg=Pretrained`` and the named schemes)
it is refused, the error names the URL and the offending object, and the
marker never appears. No other network is used.
"""
import copy
import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch
from kw_tiny import make_image_folder, tiny_classifier_cfg, tiny_runner
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmpretrain.registry import MODELS

from mmkw.engine import CheckpointLoadError
from mmkw.engine import checkpoint as mmkw_checkpoint
from mmkw.engine import load_from_http, load_from_local

pytestmark = [
    pytest.mark.usefixtures('one_thread'),
    pytest.mark.xdist_group('ports')  # see pytest.ini
]


class _Payload:
    """Unpickling it with ``weights_only=False`` would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


@pytest.fixture
def server(tmp_path):
    """Serves ``tmp_path / 'www'`` on 127.0.0.1 (a free port) until the
    test ends; yields ``(root directory, base URL)``."""
    root = tmp_path / 'www'
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Quiet, directory=str(root)))
    httpd.timeout = 10
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f'http://127.0.0.1:{httpd.server_address[1]}'
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def hub_dir(tmp_path):
    """A fresh download cache for the test."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    yield tmp_path / 'hub'
    torch.hub.set_dir(previous)


@pytest.fixture
def evil(server, hub_dir, tmp_path):
    """URL of the malicious checkpoint and the marker it would create."""
    root, base = server
    marker = tmp_path / 'marker'
    torch.save({'state_dict': {}, 'meta': _Payload(marker)}, root / 'evil.pth')
    yield f'{base}/evil.pth', marker
    assert not marker.exists(), 'the checkpoint ran code'


def _assert_refusal(info, url):
    message = str(info.value)
    assert url in message
    assert 'GLOBAL io.open' in message  # the object is named


def test_every_url_scheme_has_a_safe_loader():
    loaders = {
        'http://h/a.pth': load_from_http,
        'https://h/a.pth': load_from_http,
        'torchvision://resnet50': mmkw_checkpoint.load_from_torchvision,
        'modelzoo://resnet50': mmkw_checkpoint.load_from_torchvision,
        'open-mmlab://resnet50_caffe': mmkw_checkpoint.load_from_openmmlab,
        'openmmlab://resnet50_caffe': mmkw_checkpoint.load_from_openmmlab,
        'mmcls://resnet50': mmkw_checkpoint.load_from_mmcls,
        '/a/b.pth': load_from_local,
    }
    for name, loader in loaders.items():
        assert CheckpointLoader._get_checkpoint_loader(name) is loader, name


def test_a_benign_url_checkpoint_loads_and_is_cached(server, hub_dir):
    root, base = server
    buffer = HistoryBuffer()
    buffer.update(1.5)
    state = {
        'state_dict': {
            'w': torch.arange(4.0)
        },
        'message_hub': {
            'log_scalars': {
                'loss': buffer
            }
        }
    }
    torch.save(state, root / 'good.pth')
    url = f'{base}/good.pth'
    loaded = CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.arange(4.0))
    assert loaded['message_hub']['log_scalars']['loss'].current() == 1.5
    cached = Path(mmkw_checkpoint.url_cache_path(url))
    assert cached.parent == hub_dir / 'checkpoints'
    assert cached.name.endswith('-good.pth') and cached.is_file()
    (root / 'good.pth').unlink()  # the second load reads the cache
    assert torch.equal(
        CheckpointLoader.load_checkpoint(url)['state_dict']['w'],
        torch.arange(4.0))


def test_loader_refuses_malicious_url(evil):
    url, _ = evil
    with pytest.raises(CheckpointLoadError) as info:
        CheckpointLoader.load_checkpoint(url)
    _assert_refusal(info, url)


def test_init_cfg_pretrained_refuses_malicious_url(evil):
    url, _ = evil
    model = MODELS.build(
        dict(
            type='KWResNet',
            depth=18,
            base_channels=8,
            stem_channels=8,
            init_cfg=dict(
                type='Pretrained', checkpoint=url, prefix='backbone.')))
    with pytest.raises(CheckpointLoadError) as info:
        model.init_weights()
    _assert_refusal(info, url)


@pytest.fixture
def tiny_cfg(tmp_path):
    data_root = make_image_folder(str(tmp_path / 'images'), per_class=2)
    return tiny_classifier_cfg(
        str(tmp_path / 'work'), data_root, max_epochs=1, with_val=True)


@pytest.mark.parametrize('resume', [False, True])
def test_load_from_and_resume_refuse_malicious_url(evil, tiny_cfg, resume):
    url, _ = evil
    cfg = copy.deepcopy(tiny_cfg)
    cfg.update(load_from=url, resume=resume)
    runner = tiny_runner(cfg)
    with pytest.raises(CheckpointLoadError) as info:
        runner.train()
    _assert_refusal(info, url)
    assert runner.iter == 0


def test_test_tool_refuses_malicious_url(evil, tiny_cfg, tmp_path, load_tool):
    url, _ = evil
    cfg = copy.deepcopy(tiny_cfg)
    cfg.update(
        test_dataloader=cfg['val_dataloader'],
        test_cfg=dict(),
        test_evaluator=cfg['val_evaluator'])
    config = tmp_path / 'tiny_config.py'
    Config(cfg).dump(str(config))
    tool = load_tool('test')
    with pytest.raises(CheckpointLoadError) as info:
        tool.main([str(config), url, '--work-dir', str(tmp_path / 'test')])
    _assert_refusal(info, url)


@pytest.mark.parametrize('scheme,table', [
    ('torchvision://', 'get_torchvision_models'),
    ('open-mmlab://', 'get_external_models'),
    ('mmcls://', 'get_mmcls_models'),
])
def test_named_schemes_refuse_malicious_url(evil, monkeypatch, scheme, table):
    url, _ = evil
    monkeypatch.setattr(mmengine_checkpoint, table, lambda: {'evil': url})
    with pytest.raises(CheckpointLoadError) as info:
        CheckpointLoader.load_checkpoint(f'{scheme}evil')
    _assert_refusal(info, url)


@pytest.mark.parametrize('scheme',
                         ['torchvision://', 'open-mmlab://', 'mmcls://'])
def test_unknown_model_name_is_named(scheme):
    with pytest.raises(
            ValueError, match=f"unknown checkpoint '{scheme}no_such_net'"):
        CheckpointLoader.load_checkpoint(f'{scheme}no_such_net')


def test_two_urls_with_one_file_name_are_two_checkpoints(server, hub_dir):
    root, base = server
    for folder, value in (('a', 1.0), ('b', 2.0)):
        (root / folder).mkdir()
        torch.save({'state_dict': {
            'w': torch.full((2, ), value)
        }}, root / folder / 'model.pth')
    first = CheckpointLoader.load_checkpoint(f'{base}/a/model.pth')
    second = CheckpointLoader.load_checkpoint(f'{base}/b/model.pth')
    assert first['state_dict']['w'].tolist() == [1.0, 1.0]
    assert second['state_dict']['w'].tolist() == [2.0, 2.0]
    assert len(list((hub_dir / 'checkpoints').iterdir())) == 2


def test_hash_in_the_file_name_is_checked(server, hub_dir):
    import hashlib
    root, base = server
    torch.save({'state_dict': {'w': torch.ones(3)}}, root / 'plain.pth')
    data = (root / 'plain.pth').read_bytes()
    good = hashlib.sha256(data).hexdigest()[:8]
    bad = f'{(int(good, 16) + 1) % 16**8:08x}'
    (root / f'model-{good}.pth').write_bytes(data)
    (root / f'model-{bad}.pth').write_bytes(data)
    with pytest.raises(CheckpointLoadError, match='invalid hash value') as e:
        CheckpointLoader.load_checkpoint(f'{base}/model-{bad}.pth')
    assert f'{base}/model-{bad}.pth' in str(e.value)
    assert not Path(
        mmkw_checkpoint.url_cache_path(f'{base}/model-{bad}.pth')).exists()
    loaded = CheckpointLoader.load_checkpoint(f'{base}/model-{good}.pth')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(3))


def test_refused_download_is_not_kept(evil):
    url, _ = evil
    with pytest.raises(CheckpointLoadError, match='now removed'):
        CheckpointLoader.load_checkpoint(url)
    assert not Path(mmkw_checkpoint.url_cache_path(url)).exists()
