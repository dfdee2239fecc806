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
        'deploy': requirements('deploy.txt'),
        'tests': requirements('tests.txt'),
    },
    zip_safe=False)
