"""``tools/analysis_tools/gpu_check.sh`` runs with PyTorch alone: its
Python part on the CPU in a tiny configuration (``--device cpu --quick``),
the OpenMMLab packages made unimportable, from outside the repository."""
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import REPO_ROOT

SCRIPT = REPO_ROOT / 'tools' / 'analysis_tools' / 'gpu_check.sh'
# Loaded at start-up from PYTHONPATH: "not installed" for the OpenMMLab
# packages (the GPU machine may have none of them).
NO_OPENMMLAB = '''import sys
for name in ('mmengine', 'mmcv', 'mmdet', 'mmpretrain'):
    sys.modules[name] = None
'''
ROWS = ('ResNet50', 'KW-ResNet50 1x official', 'KW-ResNet50 1x fast')


def _run(tmp_path, *args):
    site = tmp_path / 'site'
    site.mkdir(exist_ok=True)
    (site / 'sitecustomize.py').write_text(NO_OPENMMLAB)
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PYTHONPATH=str(site),
        OMP_NUM_THREADS='1')
    return subprocess.run(['bash', str(SCRIPT), *args],
                          cwd=tmp_path,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)


def test_quick_check_on_cpu(tmp_path):
    result = _run(tmp_path, '--device', 'cpu', '--quick')
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert 'KW-ResNet50 1x: 28,052,310 parameters (official plan: ' \
        '28,052,310)' in out
    # 1. the pin: every distinct layer in fp32 and bf16, with the default
    # block budget and four blocks, all within tolerance.
    cases = int(re.search(r'on the (\d+) distinct KW layers', out).group(1))
    assert cases == 21
    pinned = re.findall(
        r'^  (layer\S+) \(x(\d+)\) +(fp32|bf16) +(default|4 blocks) +(.*)$',
        out, re.M)
    assert len(pinned) == 4 * cases
    assert {p[2:4]
            for p in pinned} == {(dtype, budget)
                                 for dtype in ('fp32', 'bf16')
                                 for budget in ('default', '4 blocks')}
    assert all(p[4].endswith('ok') for p in pinned)
    # The KW layers of ResNet50 counted once each (the stem, the first
    # block's conv1 and downsample conv are plain).
    assert sum(int(p[1]) for p in pinned
               if p[2:4] == ('fp32', 'default')) == 50
    assert f'pin: {4 * cases} of {4 * cases} within tolerance' in out
    # 2. the benchmark: a table per dtype, a row per model, the paper's
    # figures under it.
    for where in ('float32', 'bf16 autocast'):
        assert f'2. KW-ResNet50 1x vs ResNet50, {where}, 32x32' in out
    for label in ROWS:
        rows = re.findall(
            rf'^  {re.escape(label)} +([\d.]+) +([\d.]+)x .*'
            rf'\| +([\d.]+) +([\d.]+)x .* (\d+)$', out, re.M)
        assert len(rows) == 2, label
        for ips, time_ratio, tps, train_ratio, batch in rows:
            assert float(ips) > 0 and float(tps) > 0 and batch == '2'
            if label == 'ResNet50':
                assert time_ratio == train_ratio == '1.00'
    assert out.count('paper, 1 TITAN X (T12, T16)  647.0 -> 265.4') == 2
    assert 'done, all checks passed' in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available')
def test_refuses_cuda_without_it_in_one_line(tmp_path):
    result = _run(tmp_path)  # --device cuda is the default
    assert result.returncode == 1
    assert result.stdout == ''
    assert result.stderr.startswith('error: --device cuda needs a CUDA GPU')
    assert result.stderr.count('\n') == 1


def test_fp16_needs_cuda(tmp_path):
    result = _run(tmp_path, '--device', 'cpu', '--dtype', 'fp16')
    assert result.returncode == 2
    assert '--dtype fp16 needs --device cuda' in result.stderr
