"""A wheel built from the checkout is an OpenMMLab package: installed into a
fresh virtual environment (which sees this stack's site-packages, not the
checkout) it serves ``_base_ = 'mmkw::...'`` in a user's config, mmkw's
models by name, and its tools with their configs."""
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest
from helpers import REPO_ROOT

from mmkw.cnn import native

pytestmark = pytest.mark.xdist_group('wheel')


def _run(cmd, cwd, returncode=0):
    """Run ``cmd`` without the checkout on the path; it must exit with
    ``returncode``. Returns the finished process."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == returncode, result.stdout + result.stderr
    return result


@pytest.fixture(scope='module')
def venv(tmp_path_factory):
    """The wheel of a copy of the checkout (its tracked and unignored
    files) installed with --no-deps into a new venv; yields its python."""
    root = tmp_path_factory.mktemp('package')
    source = root / 'source'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'],
                           cwd=REPO_ROOT,
                           capture_output=True,
                           text=True,
                           check=True).stdout.split()
    for name in files:
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    _run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w',
        str(root / 'dist'),
        str(source)
    ],
         cwd=root)
    wheel = next((root / 'dist').glob('mmkw-*.whl'))
    _run([sys.executable, '-m', 'venv', '--without-pip',
          str(root / 'venv')],
         cwd=root)
    python = root / 'venv' / 'bin' / 'python'
    site = _run([
        str(python), '-c',
        'import sysconfig; print(sysconfig.get_path("purelib"))'
    ],
                cwd=root).stdout.strip()
    # The stack, without the checkout's editable mmkw (a plain path entry:
    # the .pth files of that directory are not run).
    with open(os.path.join(site, 'stack.pth'), 'w') as f:
        f.write(sysconfig.get_path('purelib') + '\n')
    _run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target',
        site,
        str(wheel)
    ],
         cwd=root)
    shutil.copy(wheel, root / 'venv')
    return python, root


def test_wheel_carries_configs_tools_and_index(venv):
    python, root = venv
    listing = _run([
        str(python), '-c',
        textwrap.dedent('''
        import mmkw, os.path as osp
        pkg = osp.dirname(mmkw.__file__)
        print(pkg)
        for p in ('configs/mask-rcnn_kw-r50_1x_coco.py',
                  'configs/_base_/imagenet_runtime.py', 'tools/train.py',
                  'model-index.yml', 'configs/metafiles/kw-resnet.yml'):
            print(p, osp.isfile(osp.join(pkg, '.mim', p)))
        ''')
    ],
                   cwd=root).stdout
    assert str(REPO_ROOT) not in listing.splitlines()[0]
    assert 'False' not in listing


@pytest.mark.skipif(
    not native.available(),
    reason='the checkout has no C++ mixing kernel (no compiler or no '
    'AVX-512 here), so neither can its wheel')
def test_wheel_carries_the_mixing_kernel(venv):
    """Built where the checkout's own kernel was built, and run by the fast
    path of the installed package."""
    python, root = venv
    out = _run([
        str(python), '-c',
        textwrap.dedent('''
        import torch
        from mmkw.cnn import blocked, native
        print(native.__file__, native.available())
        a, b = torch.randn(7, 5), torch.randn(5, 100)
        print(torch.allclose(blocked._matmul(a, b), a @ b, atol=1e-5))
        ''')
    ],
               cwd=root).stdout.split()
    assert str(REPO_ROOT) not in out[0]
    assert out[1:] == ['True', 'True']


def test_user_config_inherits_an_mmkw_config(venv):
    """A fresh process: the user's config names only custom_imports."""
    python, root = venv
    user = root / 'user'
    user.mkdir(exist_ok=True)
    (user / 'my_kw2x.py').write_text(
        textwrap.dedent('''
        _base_ = 'mmkw::kw1x-resnet18_8xb32_in1k.py'
        custom_imports = dict(imports=['mmkw'], allow_failed_imports=False)
        model = dict(backbone=dict(budget=2.0))
        '''))
    (user / 'my_demo.py').write_text(
        textwrap.dedent('''
        _base_ = 'mmkw::demo/mask-rcnn_kw1x-r18_demo-shapes.py'
        model = dict(backbone=dict(budget=0.5))
        '''))
    out = _run([
        str(python), '-c',
        textwrap.dedent('''
        import sys
        from mmengine.config import Config
        from mmengine.registry import MODELS, DefaultScope
        for path in ('my_kw2x.py', 'my_demo.py'):
            cfg = Config.fromfile(path)
            assert 'mmkw' in sys.modules  # custom_imports ran
            with DefaultScope.overwrite_default_scope(cfg.default_scope):
                model = MODELS.build(cfg.model)
            print(type(model).__name__, type(model.backbone).__name__,
                  model.backbone.warehouse_manager.budget)
        ''')
    ],
               cwd=user).stdout
    assert out.split('\n')[:2] == [
        'ImageClassifier KWResNet 2.0', 'MaskRCNN KWResNet 0.5'
    ]


def test_models_by_name_and_tools_from_the_wheel(venv):
    python, root = venv
    out = _run([
        str(python), '-c',
        textwrap.dedent('''
        import mmkw, mmpretrain, os.path as osp
        from mmkw.apis import config_path
        names = mmpretrain.list_models('*kw*')
        model = mmpretrain.get_model('kw1x-resnet18_8xb32_in1k')
        print(len(names), type(model.backbone).__name__)
        print(osp.dirname(mmkw.__file__) in config_path(
            'mask-rcnn_kw-r50_1x_coco'))
        ''')
    ],
               cwd=root).stdout
    count, backbone = out.splitlines()[0].split()
    assert int(count) > 20 and backbone == 'KWResNet'
    assert out.splitlines()[1] == 'True'
    plan = _run([
        str(python), '-m', 'mmkw', 'analysis_tools/kw_plan',
        'kw1x-resnet18_8xb32_in1k'
    ],
                cwd=root).stdout
    assert '11,932,148' in plan  # KW-ResNet18 1x, the official count
    # The packaged tool runs the packaged config: its pre-flight check
    # lists the missing COCO data and ImageNet checkpoint (exit 1).
    train = _run([
        str(python), '-m', 'mmkw', 'train', 'mask-rcnn_kw-r50_1x_coco',
        '--work-dir',
        str(root / 'work')
    ],
                 cwd=root,
                 returncode=1)
    assert 'data/coco/annotations/instances_train2017.json' in train.stderr
    assert 'checkpoints/kw1x-resnet50_in1k.pth' in train.stderr
