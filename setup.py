"""Install mmkw. The pinned stack is installed by tools/install.sh.

As MMPretrain and MMDetection do, the package carries its configs, tools and
model index in ``mmkw/.mim`` (copied into a wheel or sdist, linked for an
editable install), so an installed mmkw serves ``_base_ = 'mmkw::...'``,
``mmpretrain.get_model(NAME)`` and its tools without the checkout.
"""
import os
import os.path as osp
import shutil
import sys
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

#: Runs mmkw_config_hook.install() at start-up, if the module is there.
PTH_NAME = 'mmkw-config-hook.pth'
PTH_LINE = ("import importlib.util; importlib.util.find_spec("
            "'mmkw_config_hook') is not None and "
            "__import__('mmkw_config_hook').install()\n")
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def readme() -> str:
    with open(
            osp.join(osp.dirname(__file__), 'README.md'),
            encoding='utf-8') as f:
        return f.read()


def version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'mmkw', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def requirements(name: str) -> list:
    """The requirements of ``requirements/NAME``, ``-r`` includes followed."""
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        lines = [line.split('#', 1)[0].strip() for line in f]
    result = []
    for line in filter(None, lines):
        if line.startswith('-r '):
            result += requirements(line[3:].strip())
        else:
            result.append(line)
    return result


def add_mim_extension() -> None:
    """Put the configs, tools and model index in ``mmkw/.mim``: copies for
    a wheel or sdist, links for ``develop`` (an editable install)."""
    if {'develop', 'editable_wheel'} & set(sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'build_py'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    root = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(root, 'mmkw', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(root, name), osp.join(mim_path, name)
        if mode == 'copy' and osp.islink(dst) and 'bdist_wheel' in sys.argv:
            # A checkout with an editable install keeps its links: building
            # a wheel copies the files they point to.
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(
                src, dst, ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copyfile(src, dst)


class BuildPyWithHook(build_py):
    """``build_py`` that also puts :data:`PTH_NAME` beside the package."""

    def run(self):
        super().run()
        with open(osp.join(self.build_lib, PTH_NAME), 'w') as f:
            f.write(PTH_LINE)

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [
            osp.join(self.build_lib, PTH_NAME)
        ]


def native_extensions() -> tuple:
    """The optional C++ mixing kernel (``mmkw/cnn/csrc``), built where torch
    and a C++ compiler are at hand; a failed build only warns (mmkw then
    runs the mixing products through oneDNN / ``torch.mm``)."""
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        return [], {}

    class OptionalBuildExtension(BuildExtension):

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as error:  # no compiler, or one that fails
                self.warn(f'mmkw: the C++ mixing kernel was not built '
                          f'({error}); the fast path runs without it')

    ext = CppExtension(
        'mmkw.cnn._native', ['mmkw/cnn/csrc/mixing.cpp'],
        extra_compile_args=['-O3', '-fopenmp'],
        extra_link_args=['-fopenmp'])
    return [ext], {'build_ext': OptionalBuildExtension}


add_mim_extension()
EXTENSIONS, BUILD_EXT = native_extensions()
setup(
    name='mmkw',
    version=version(),
    description='KernelWarehouse dynamic convolution for OpenMMLab '
    '(MMPretrain and MMDetection)',
    long_description=readme(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(include=['mmkw', 'mmkw.*']),
    py_modules=['mmkw_config_hook'],
    include_package_data=True,
    ext_modules=EXTENSIONS,
    cmdclass={
        'build_py': BuildPyWithHook,
        **BUILD_EXT
    },
    python_requires='>=3.9',
    install_requires=['torch>=2.0'],
    extras_require={
        'mm': requirements('runtime.txt') + requirements('mmcv.txt'),
        'deploy': requirements('deploy.txt'),
        'tests': requirements('tests.txt'),
    },
    zip_safe=False)
