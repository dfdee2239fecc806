"""Command-line handling of tools/train.py and tools/test.py (the runs
themselves are exercised by tests/test_engine/test_ddp.py), and the progress
and device handling of the analysis and deployment tools."""
import re

import pytest
import torch
from helpers import CONFIG_DIR
from mmengine.config import Config

CONFIG = str(CONFIG_DIR / 'kw1x-resnet18_32xb128-adamw-300e_in1k.py')


@pytest.fixture(scope='module')
def train(load_tool):
    return load_tool('train')


@pytest.fixture(scope='module')
def tool_test(load_tool):
    return load_tool('test')


@pytest.fixture(scope='module')
def benchmark(load_tool):
    return load_tool('analysis_tools/benchmark')


def _train_cfg(train, *argv):
    return train.build_config(train.parse_args([CONFIG, *argv]))


def test_defaults(train):
    cfg = _train_cfg(train)
    assert cfg.work_dir == './work_dirs/kw1x-resnet18_32xb128-adamw-300e_in1k'
    assert cfg.launcher == 'none'
    assert not cfg.get('resume', False)
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert not cfg.auto_scale_lr.get('enable', False)


def test_options(monkeypatch, train):
    monkeypatch.setattr('torch.cuda.is_available', lambda: True)
    cfg = _train_cfg(train, '--work-dir', '/tmp/w', '--amp', '--auto-scale-lr',
                     '--cfg-options', 'train_dataloader.batch_size=4',
                     'env_cfg.dist_cfg.backend=gloo')
    assert cfg.work_dir == '/tmp/w'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert train.amp_message(cfg) == ("--amp: training with CUDA automatic "
                                      "mixed precision (AmpOptimWrapper, "
                                      "loss_scale='dynamic')")
    assert cfg.auto_scale_lr == dict(base_batch_size=4096, enable=True)
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


def test_amp_without_cuda_autocasts_on_the_cpu(monkeypatch, train):
    """MMEngine's AmpOptimWrapper refuses CPU devices: --amp picks the
    bf16 CPU autocast wrapper there, dropping AmpOptimWrapper's own
    arguments of a config that names it."""
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    cfg = _train_cfg(train, '--amp')
    assert cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert 'loss_scale' not in cfg.optim_wrapper
    assert train.amp_message(cfg) == (
        '--amp: CUDA is not available; training with bfloat16 autocast on '
        'the CPU (CPUAutocastOptimWrapper)')
    cfg = _train_cfg(train, '--amp', '--cfg-options',
                     'optim_wrapper.type=AmpOptimWrapper',
                     'optim_wrapper.loss_scale=512.0')
    assert cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper


@pytest.mark.parametrize('argv,resume,load_from', [
    (['--resume'], True, None),
    (['--resume', 'w/epoch_3.pth'], True, 'w/epoch_3.pth'),
])
def test_resume(argv, resume, load_from, train):
    cfg = _train_cfg(train, *argv)
    assert cfg.resume is resume and cfg.load_from == load_from


def test_auto_scale_lr_needs_base_batch(tmp_path, train):
    config = tmp_path / 'no_scale.py'
    Config.fromfile(CONFIG).dump(str(config))
    cfg = Config.fromfile(str(config))
    cfg.pop('auto_scale_lr')
    cfg.dump(str(config))
    with pytest.raises(ValueError, match='no_scale.py'):
        train.build_config(train.parse_args([str(config), '--auto-scale-lr']))


def test_bad_launcher_rejected(train):
    with pytest.raises(SystemExit):
        train.parse_args([CONFIG, '--launcher', 'ray'])


def test_cpu_distributed_needs_gloo(monkeypatch, train):
    from mmkw.engine import setup_cpu_distributed
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    cfg = _train_cfg(train, '--launcher', 'pytorch')
    with pytest.raises(ValueError, match="'nccl'"):
        setup_cpu_distributed(cfg)


def test_test_tool_arguments(tool_test):
    args = tool_test.parse_args([CONFIG, 'ckpt.pth', '--out', 'r.pkl'])
    assert (args.checkpoint, args.out) == ('ckpt.pth', 'r.pkl')
    with pytest.raises(SystemExit):
        tool_test.parse_args([CONFIG, 'ckpt.pth', '--out', 'r.json'])


@pytest.mark.parametrize('scope,hook,expected', [
    ('mmpretrain', dict(type='VisualizationHook',
                        enable=False), dict(enable=True, out_dir='shows')),
    ('mmdet', dict(type='DetVisualizationHook'),
     dict(draw=True, test_out_dir='shows')),
])
def test_show_dir(scope, hook, expected, tool_test):
    cfg = Config(
        dict(default_scope=scope, default_hooks=dict(visualization=hook)))
    args = tool_test.parse_args([CONFIG, 'ckpt.pth', '--show-dir', 'shows'])
    tool_test.enable_visualization(cfg, args)
    vis = cfg.default_hooks.visualization
    assert {k: vis[k] for k in expected} == expected


def test_benchmark_model_specs(capsys, benchmark):
    args = benchmark.parse_args(['--models', 'resnet50:4', 'convnext-t'])
    assert args.models == [('resnet50', 4.0), ('convnext-t', 1.0)]
    for spec, message in (('vgg16', "unknown model 'vgg16'; choose from"),
                          ('resnet18:big',
                           "budget of 'resnet18:big' must be a number")):
        with pytest.raises(SystemExit):
            benchmark.parse_args(['--models', spec])
        assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available')
def test_benchmark_refuses_cuda_without_it(capsys, benchmark):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(['--device', 'cuda', '--models', 'resnet18:1'])
    message = str(exit_info.value.code)
    assert '--device cuda needs a CUDA device' in message
    assert 'use --device cpu' in message and '\n' not in message
    assert capsys.readouterr().out == ''  # refused before any work


def test_benchmark_on_cpu_with_progress_and_plot(tmp_path, capsys, benchmark,
                                                 one_thread):
    plot = tmp_path / 'ratios.png'
    results = benchmark.main([
        '--models', 'resnet18:1', '--batch', '1', '2', '--size', '32',
        '--rounds', '1', '--skip', 'train', 'saved', '--device', 'cpu',
        '--plot',
        str(plot)
    ])
    printed = capsys.readouterr()
    # The tables on stdout, one progress line per measurement on stderr.
    assert printed.out.startswith(f'torch {torch.__version__}, cpu,')
    for batch in (1, 2):
        assert f'inference, batch {batch}: ms median' in printed.out
        assert (f'resnet18 KW 1x: timing inference at batch {batch}, '
                f'3 variants x (1 warm-up + 1) rounds') in printed.err
    assert '[benchmark' not in printed.out
    assert f'plot of the KW / plain inference ratios: {plot}' in printed.out
    # The figure: a non-empty PNG.
    with open(plot, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert plot.stat().st_size > 10_000
    # The FLOP floor drawn is KW FLOPs / plain FLOPs (kernel assembly and
    # attention included: above 1).
    (result, ) = results
    assert sorted(result['inference']) == [1, 2]
    assert set(result['inference'][1]) == {'plain', 'KW reference', 'KW fast'}
    assert result['flop_floor'] > 1


def test_benchmark_arguments_checked(capsys, benchmark):
    for argv, message in ((['--plot', 'x.png', '--skip',
                            'inference'], '--plot draws the inference ratios'),
                          (['--device', 'cuda',
                            '--peak-rss'], '--peak-rss measures CPU memory'),
                          (['--device', 'tpu'], "invalid choice: 'tpu'")):
        with pytest.raises(SystemExit):
            benchmark.parse_args(argv)
        assert message in capsys.readouterr().err


def test_pytorch2onnx_reports_each_stage(tmp_path, capsys, load_tool,
                                         one_thread):
    from kw_tiny import tiny_classifier_cfg
    from mmpretrain.registry import MODELS

    cfg = Config(tiny_classifier_cfg(str(tmp_path / 'work'), 'unused'))
    cfg.dump(str(tmp_path / 'cfg.py'))
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()},
               tmp_path / 'model.pth')
    onnx_file = str(tmp_path / 'model.onnx')
    load_tool('deployment/pytorch2onnx').main([
        str(tmp_path / 'cfg.py'),
        str(tmp_path / 'model.pth'), '--out', onnx_file, '--shape', '32', '32',
        '--torchscript', '--verify'
    ])
    printed = capsys.readouterr()
    stages = [
        line for line in printed.err.splitlines()
        if line.startswith('[pytorch2onnx] ')
    ]
    assert len(stages) == 4
    assert stages[0] == (f'[pytorch2onnx] building the model of '
                         f'{tmp_path / "cfg.py"} with '
                         f'{tmp_path / "model.pth"}')
    assert re.fullmatch(
        r'\[pytorch2onnx\] built in \d+\.\d s; exporting to ' +
        re.escape(onnx_file) + r' \(input \[1, 3, 32, 32\], TorchScript '
        r'exporter, opset 18\)', stages[1])
    assert re.fullmatch(
        r'\[pytorch2onnx\] exported in \d+\.\d s; '
        r'verifying with ONNX Runtime at batch 1', stages[2])
    assert re.fullmatch(
        r'\[pytorch2onnx\] verified in \d+\.\d s; '
        r'\d+\.\d s in all', stages[3])
    # stdout keeps the results alone.
    assert printed.out.splitlines()[-2:] == [
        f'Exported {onnx_file} (input [1, 3, 32, 32])',
        printed.out.splitlines()[-1]
    ]
    assert printed.out.splitlines()[-1].startswith(
        'ONNX Runtime vs PyTorch, batch 1: max relative difference')
    assert '[pytorch2onnx]' not in printed.out
