"""Two-process DDP (gloo, CPU) through tools/dist_train.sh: the replicas'
warehouses stay identical while each rank trains on its own shard; the
checkpoint then goes through tools/test.py."""
import copy
import json
import os
import pickle
import socket
import subprocess
import sys

import pytest
from helpers import REPO_ROOT
from kw_tiny import make_image_folder, tiny_classifier_cfg
from mmengine.config import Config

pytestmark = [
    pytest.mark.usefixtures('one_thread'), pytest.mark.ddp,
    pytest.mark.xdist_group('ports')
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def ddp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('ddp')
    data_root = make_image_folder(str(root / 'images'))
    cfg = tiny_classifier_cfg(
        str(root / 'work'), data_root, max_epochs=2, with_val=True)
    cfg['custom_imports']['imports'].append('kw_tiny')
    cfg['custom_hooks'].append(dict(type='DDPProbeHook'))
    cfg.update(
        test_dataloader=cfg['val_dataloader'],
        test_evaluator=cfg['val_evaluator'],
        test_cfg=dict())
    config = root / 'tiny_kw_ddp.py'
    Config(copy.deepcopy(cfg)).dump(str(config))
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PORT=str(_free_port()),
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(
            [str(REPO_ROOT / 'tests'),
             os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([
        'bash',
        str(REPO_ROOT / 'tools' / 'dist_train.sh'),
        str(config), '2', '--cfg-options', 'env_cfg.dist_cfg.backend=gloo'
    ],
                          cwd=str(root),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    probe = json.loads((root / 'work' / 'ddp_probe.json').read_text())
    return config, root / 'work', probe


def test_replicas_stay_identical(ddp_run):
    _, _, probe = ddp_run
    assert probe['world_size'] == 2
    records = probe['records']
    # 16 images over 2 ranks, batch 4: 2 iterations per epoch, 2 epochs.
    assert [r['iter'] for r in records] == [0, 1, 2, 3]
    for r in records:
        assert r['replica_diff'] == 0, r
        # The temperature schedule runs on the wrapped model of each rank:
        # T = 2 epochs of 2 iterations.
        assert r['temperatures'] == [(4 - (r['iter'] + 1)) / 4] * 2
    # Training moved the warehouses, and the ranks saw different data (so
    # identical replicas come from the gradient all-reduce, not from
    # identical inputs).
    assert records[-1]['moved'] > 0
    assert any(r['losses'][0] != r['losses'][1] for r in records)


def test_test_tool_on_ddp_checkpoint(ddp_run, tmp_path, load_tool):
    config, work, _ = ddp_run
    out = tmp_path / 'preds.pkl'
    load_tool('test').main([
        str(config),
        str(work / 'epoch_2.pth'), '--work-dir',
        str(tmp_path), '--out',
        str(out)
    ])
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 16
    assert {'pred_label', 'gt_label'} <= set(predictions[0])
