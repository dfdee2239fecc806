"""What a new user meets in the first hour: ``tools/train.py --amp`` on a
machine without CUDA, the attention statistics in MMPretrain's log plots,
and a console free of the stack's ``pkg_resources`` warnings."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers import CONFIG_DIR, REPO_ROOT
from kw_tiny import make_image_folder, tiny_classifier_cfg, tiny_runner
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, OPTIM_WRAPPERS

import mmkw  # noqa: F401
from mmkw.cnn import KWConvNd

pytestmark = pytest.mark.usefixtures('one_thread')

ANALYZE_LOGS = osp.join(
    osp.dirname(__import__('mmpretrain').__file__), '.mim', 'tools',
    'analysis_tools', 'analyze_logs.py')


@HOOKS.register_module(force=True)
class FirstHourDtypeProbeHook(Hook):
    """Records the output dtype of every KW conv during training."""

    seen = []

    def before_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        for m in model.modules():
            if isinstance(m, KWConvNd):
                m.register_forward_hook(lambda mod, args, out: self.seen.
                                        append((mod.training, out.dtype)))


@pytest.mark.skipif(
    torch.cuda.is_available(),
    reason='--amp picks CUDA AMP where CUDA is available')
def test_amp_trains_with_bf16_autocast_on_cpu(tmp_path, load_tool):
    data = make_image_folder(str(tmp_path / 'images'))
    work_dir = str(tmp_path / 'work')
    cfg = tiny_classifier_cfg(
        work_dir,
        data,
        max_epochs=1,
        temperature_epochs=1,
        log_level='INFO',
        custom_hooks=[
            dict(type='FirstHourDtypeProbeHook'),
            dict(type='KWTemperatureHook', epochs=1)
        ])
    Config(cfg).dump(str(tmp_path / 'cfg.py'))
    FirstHourDtypeProbeHook.seen.clear()

    load_tool('train').main([str(tmp_path / 'cfg.py'), '--amp'])

    # 4 iterations of batch 4, every KW conv of the training forward in bf16.
    assert FirstHourDtypeProbeHook.seen
    assert {dtype
            for _, dtype in FirstHourDtypeProbeHook.seen} == {torch.bfloat16}
    assert all(training for training, _ in FirstHourDtypeProbeHook.seen)
    # The checkpoint of the epoch is there, its weights still float32.
    state = torch.load(
        osp.join(work_dir, 'epoch_1.pth'),
        map_location='cpu',
        weights_only=False)
    assert state['meta']['epoch'] == 1
    assert {
        v.dtype
        for v in state['state_dict'].values() if v.is_floating_point()
    } == {torch.float32}
    # One log line says what --amp chose.
    (log, ) = glob.glob(osp.join(work_dir, '*', '*.log'))
    with open(log) as f:
        lines = [line for line in f if '--amp:' in line]
    assert len(lines) == 1
    assert ('CUDA is not available; training with bfloat16 autocast on '
            'the CPU (CPUAutocastOptimWrapper)') in lines[0]


def test_cpu_autocast_wrapper_from_every_scope():
    """The wrapper builds from MMEngine's root registry and the scopes
    below it, and its context autocasts a conv to bf16 on the CPU."""
    from mmdet.registry import OPTIM_WRAPPERS as DET_WRAPPERS
    from mmpretrain.registry import OPTIM_WRAPPERS as PRETRAIN_WRAPPERS

    from mmkw.engine import CPUAutocastOptimWrapper
    conv = torch.nn.Conv2d(3, 4, 3)
    for registry in (OPTIM_WRAPPERS, PRETRAIN_WRAPPERS, DET_WRAPPERS):
        wrapper = registry.build(
            dict(
                type='CPUAutocastOptimWrapper',
                optimizer=torch.optim.SGD(conv.parameters(), lr=0.1)))
        assert isinstance(wrapper, CPUAutocastOptimWrapper)
        with wrapper.optim_context(conv):
            assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.bfloat16
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.float32
    with pytest.raises(ValueError, match='dtype must be one of'):
        CPUAutocastOptimWrapper(
            dtype='float64',
            optimizer=torch.optim.SGD(conv.parameters(), lr=0.1))


def test_attention_stats_in_first_logged_record_and_plot(tmp_path):
    """MMPretrain's analyze_logs.py takes the valid keys from the first
    logged record; the hook's scalars are there from iteration 1 on."""
    data = make_image_folder(str(tmp_path / 'images'))
    work_dir = str(tmp_path / 'work')
    cfg = tiny_classifier_cfg(
        work_dir,
        data,
        by_epoch=False,
        max_iters=3,
        temperature_epochs=None,
        custom_hooks=[
            dict(type='KWAttentionStatsHook', interval=2),
            dict(type='KWTemperatureHook', iters=3)
        ])
    assert cfg['default_hooks']['logger']['interval'] == 1
    tiny_runner(cfg).train()

    (scalars, ) = glob.glob(
        osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    assert [r['iter'] for r in records] == [1, 2, 3]
    keys = [
        f'kw_attention/backbone.stage{i}_{kind}' for i in range(4)
        for kind in ('own', 'foreign')
    ]
    for record in records:
        assert set(keys) <= set(record)
        assert all(0 < record[k] < 1 for k in keys)

    out = str(tmp_path / 'curves.png')
    env = dict(os.environ, MPLBACKEND='Agg')
    result = subprocess.run([
        sys.executable, ANALYZE_LOGS, 'plot_curve', scalars, '--keys',
        'kw_attention/backbone.stage2_own',
        'kw_attention/backbone.stage2_foreign', '--out', out
    ],
                            capture_output=True,
                            text=True,
                            env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert osp.getsize(out) > 0


def test_no_pkg_resources_warnings_on_the_console():
    # The checkout first on the path, installed (editable) or not.
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            filter(
                None,
                [str(REPO_ROOT), os.environ.get('PYTHONPATH')])))
    env.pop('PYTHONWARNINGS', None)
    result = subprocess.run([
        sys.executable, 'tools/analysis_tools/kw_plan.py',
        str(CONFIG_DIR / 'kw1x-resnet18_8xb32_in1k.py')
    ],
                            cwd=REPO_ROOT,
                            capture_output=True,
                            text=True,
                            env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '[backbone.warehouse_manager]' in result.stdout
    assert 'pkg_resources' not in result.stdout + result.stderr
