"""Install mmkw. The pinned stack is installed by tools/install.sh."""
import os.path as osp

from setuptools import find_packages, setup


def readme() -> str:
    with open(osp.join(osp.dirname(__file__), 'README.md'),
              encoding='utf-8') as f:
        return f.read()


def version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'mmkw', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def requirements(name: str) -> list:
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


setup(
    name='mmkw',
    version=version(),
    description='KernelWarehouse dynamic convolution for OpenMMLab '
    '(MMPretrain and MMDetection)',
    long_description=readme(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(include=['mmkw', 'mmkw.*']),
    python_requires='>=3.9',
    install_requires=['torch>=2.0'],
    extras_require={
        'mm': requirements('runtime.txt') + requirements('mmcv.txt'),
        'tests': requirements('tests.txt'),
    },
    zip_safe=False)
