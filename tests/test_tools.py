"""Command-line handling of tools/train.py and tools/test.py (the runs
themselves are exercised by tests/test_ddp.py)."""
import pytest
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


def test_options(train):
    cfg = _train_cfg(train, '--work-dir', '/tmp/w', '--amp', '--auto-scale-lr',
                     '--cfg-options', 'train_dataloader.batch_size=4',
                     'env_cfg.dist_cfg.backend=gloo')
    assert cfg.work_dir == '/tmp/w'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.auto_scale_lr == dict(base_batch_size=4096, enable=True)
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


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
        train.build_config(train.parse_args([str(config),
                                             '--auto-scale-lr']))


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
    ('mmpretrain', dict(type='VisualizationHook', enable=False),
     dict(enable=True, out_dir='shows')),
    ('mmdet', dict(type='DetVisualizationHook'),
     dict(draw=True, test_out_dir='shows')),
])
def test_show_dir(scope, hook, expected, tool_test):
    cfg = Config(dict(default_scope=scope, default_hooks=dict(
        visualization=hook)))
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
