"""Shared set-up of ``tools/train.py`` and ``tools/test.py``.

Both tools follow MMDetection's and MMPretrain's: load a config, apply the
command line, build the runner. Two things are mmkw's own:

- the runner comes from ``cfg.runner_type`` when a config sets one (MMEngine's
  ``Runner`` otherwise), for MMPretrain and MMDetection configs alike;
- distributed runs on machines without CUDA work: MMEngine 0.10.7 calls
  ``torch.cuda.set_device`` while initialising the process group and wraps
  the model with ``device_ids=[LOCAL_RANK]``, both of which fail for CPU
  modules. :func:`setup_cpu_distributed` initialises the (gloo) process
  group itself and wraps the model without ``device_ids``.
"""
import argparse
import os
import os.path as osp
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS, init_default_scope
from mmengine.runner import Runner

__all__ = [
    'add_cfg_options', 'add_common_args', 'parse_common_args', 'load_config',
    'setup_cpu_distributed', 'build_runner', 'add_tool_hooks', 'TOOL_HOOKS'
]


def add_cfg_options(parser: argparse.ArgumentParser,
                    example: str = 'model.backbone.budget=2.0') -> None:
    """Add ``--cfg-options`` (key=value overrides merged into the config),
    as MMDetection's and MMPretrain's tools have it.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        example (str): An example override for the help.
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs merged into '
        f'it, e.g. {example} or key="[a,b]"')


def add_common_args(parser: argparse.ArgumentParser, example: str) -> None:
    """Add the arguments tools/train.py and tools/test.py share, as
    MMDetection's and MMPretrain's tools have them.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        example (str): An example ``--cfg-options`` override for the help.
    """
    add_cfg_options(parser, example)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (PyTorch >= 2.0).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_common_args(parser: argparse.ArgumentParser,
                      argv=None) -> argparse.Namespace:
    """Parse ``argv`` and export ``LOCAL_RANK`` for the launcher.

    Args:
        parser (argparse.ArgumentParser): A parser given
            :func:`add_common_args`.
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` if None.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_config(path: str,
                launcher: str = 'none',
                work_dir: Optional[str] = None,
                cfg_options: Optional[dict] = None) -> Config:
    """Load a config and apply the options every tool shares.

    Args:
        path (str): Config file.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
            Defaults to ``'none'``.
        work_dir (str, optional): Overrides the config's ``work_dir``; without
            either, ``./work_dirs/<config name>``. Defaults to None.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
            Defaults to None.

    Returns:
        Config: The config to build a runner from.
    """
    if launcher not in ('none', 'pytorch', 'slurm', 'mpi'):
        raise ValueError(f'launcher must be none, pytorch, slurm or mpi, '
                         f'got {launcher!r}')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    # work_dir priority: command line > config > config file name.
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def setup_cpu_distributed(cfg: Config) -> None:
    """Prepare a distributed run without CUDA (gloo on CPU).

    Does nothing for non-distributed runs or when CUDA is available.
    Otherwise initialises the process group from the ``torch.distributed.run``
    environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...) and makes
    the model wrapper a ``MMDistributedDataParallel`` without
    ``device_ids``.

    Args:
        cfg (Config): The config; ``env_cfg.dist_cfg.backend`` must be
            ``'gloo'``.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise ValueError(f'without CUDA only launcher "pytorch" is '
                         f'supported, got {cfg.launcher!r}')
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    backend = dist_cfg.pop('backend', 'nccl')
    if backend != 'gloo':
        raise ValueError(
            f'distributed training without CUDA needs the gloo backend, got '
            f'env_cfg.dist_cfg.backend={backend!r}; add --cfg-options '
            f'env_cfg.dist_cfg.backend=gloo')
    if not torch_dist.is_initialized():
        timeout = dist_cfg.pop('timeout', None)
        if timeout is not None:
            import datetime
            dist_cfg['timeout'] = datetime.timedelta(seconds=timeout)
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **dist_cfg)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


#: Hooks every run of mmkw's tools gets (unless its config has them).
TOOL_HOOKS = ('CheckpointCoverageHook', 'RandomStateHook')


def add_tool_hooks(cfg: Config) -> None:
    """Add :data:`TOOL_HOOKS` to ``cfg.custom_hooks``: a ``load_from`` or
    test checkpoint that fills little of the model is refused, and
    checkpoints carry the random states an exact ``--resume`` needs."""
    hooks = list(cfg.get('custom_hooks') or [])
    present = {str(h.get('type', '')).split('.')[-1] for h in hooks}
    for name in TOOL_HOOKS:
        if name not in present:
            hooks.append(dict(type=f'mmkw.{name}'))
    cfg.custom_hooks = hooks


def build_runner(cfg: Config) -> Runner:
    """Build the runner of a config, with :data:`TOOL_HOOKS` added.

    Args:
        cfg (Config): A config prepared by :func:`load_config`.

    Returns:
        Runner: ``RUNNERS.build(cfg)`` when the config sets ``runner_type``
        (looked up in the registry of the config's ``default_scope``), else
        ``Runner.from_cfg(cfg)``.
    """
    setup_cpu_distributed(cfg)
    add_tool_hooks(cfg)
    if 'runner_type' in cfg:
        init_default_scope(cfg.get('default_scope', 'mmengine'))
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
