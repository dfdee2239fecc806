"""Train a model from an MMPretrain or MMDetection config.

Example:
    python tools/train.py configs/mask-rcnn_kw-r50_1x_coco.py
    python tools/train.py CONFIG --resume            # latest in work_dir
    bash tools/dist_train.sh CONFIG 8                # 8 processes
"""
import argparse
import logging
import os

import torch
from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint

import mmkw  # noqa: F401  registers mmkw's models, hooks and fixes
from mmkw.engine import (MissingInputsError, add_common_args, build_runner,
                         check_inputs, is_readable_checkpoint,
                         latest_readable_checkpoint, load_config,
                         parse_common_args)

__all__ = ['parse_args', 'build_config', 'amp_message', 'check_resume', 'main']


def parse_args(argv=None):
    """Parse the command line (MMDetection's and MMPretrain's arguments)."""
    parser = argparse.ArgumentParser(description='Train a model with mmkw')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training: CUDA AMP '
        '(AmpOptimWrapper) with CUDA, bfloat16 autocast on the CPU '
        '(CPUAutocastOptimWrapper) without')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the total batch size against '
        'auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, without a path, from '
        'the latest checkpoint in the work directory')
    add_common_args(parser, 'train_dataloader.batch_size=8')
    args = parse_common_args(parser, argv)
    return args


def build_config(args):
    """The training config: the file with the command line applied."""
    cfg = load_config(args.config, args.launcher, args.work_dir,
                      args.cfg_options)

    if args.amp:
        if cfg.optim_wrapper.get(
                'type',
                'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper',
                                        'CPUAutocastOptimWrapper'):
            raise ValueError(f'--amp needs an OptimWrapper, the config uses '
                             f'{cfg.optim_wrapper.type!r}')
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:
            # MMEngine's AmpOptimWrapper refuses CPU training: autocast to
            # bfloat16 on the CPU instead (no loss scaling needed).
            cfg.optim_wrapper.type = 'CPUAutocastOptimWrapper'
            for key in ('loss_scale', 'use_fsdp'):  # AmpOptimWrapper's own
                cfg.optim_wrapper.pop(key, None)
            if cfg.optim_wrapper.get('dtype') is None:
                cfg.optim_wrapper.dtype = 'bfloat16'

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ValueError(f'--auto-scale-lr needs auto_scale_lr='
                             f'dict(base_batch_size=...) in {args.config!r}')
        cfg.auto_scale_lr.enable = True

    # An explicit checkpoint wins over auto-resume.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def amp_message(cfg) -> str:
    """The line ``--amp`` logs: which mixed precision the run trains with."""
    wrapper = cfg.optim_wrapper
    if wrapper.type == 'CPUAutocastOptimWrapper':
        return (f'--amp: CUDA is not available; training with '
                f'{wrapper.dtype} autocast on the CPU '
                f'(CPUAutocastOptimWrapper)')
    return (f'--amp: training with CUDA automatic mixed precision '
            f'(AmpOptimWrapper, loss_scale={wrapper.loss_scale!r})')


def check_resume(cfg) -> None:
    """Resolve ``--resume`` without a path before MMEngine does.

    MMEngine resumes from the file ``last_checkpoint`` names and would log
    "Auto resumed from the latest checkpoint None" when there is none, or
    fail on a file that is gone or damaged (a run killed while writing it).
    Here: nothing to resume is said plainly (training starts from scratch);
    a missing or damaged file is replaced by the newest readable
    checkpoint of the work directory, and the log says so.
    """
    if cfg.get('resume') is not True or cfg.get('load_from') is not None:
        return
    named = find_latest_checkpoint(cfg.work_dir)
    if named is not None and is_readable_checkpoint(named):
        return
    fallback = latest_readable_checkpoint(cfg.work_dir)
    if named is None and fallback is None:
        print_log(
            f'--resume: no checkpoint to resume in {cfg.work_dir} (no '
            f'last_checkpoint file there); training starts from scratch',
            logger='current',
            level=logging.WARNING)
        cfg.resume = False
        return
    problem = ('there is no last_checkpoint file' if named is None else
               f'last_checkpoint names {named}, which is '
               f'{"damaged" if os.path.exists(named) else "missing"}')
    if fallback is None:
        raise SystemExit(f'error: --resume: {problem}, and {cfg.work_dir} '
                         f'holds no other readable checkpoint')
    print_log(
        f'--resume: {problem}; resuming from {fallback}, the newest '
        f'readable checkpoint in {cfg.work_dir}',
        logger='current',
        level=logging.WARNING)
    cfg.load_from = fallback


def main(argv=None):
    """Train with the config and options of ``argv``."""
    args = parse_args(argv)
    cfg = build_config(args)
    try:
        check_inputs(cfg, ('train', 'val'), [cfg.get('load_from')])
    except MissingInputsError as error:
        raise SystemExit(f'error: {error}') from None
    check_resume(cfg)
    runner = build_runner(cfg)
    if args.amp:
        runner.logger.info(amp_message(cfg))
    runner.train()


if __name__ == '__main__':
    main()
