"""Test (and evaluate) a checkpoint with an MMPretrain or MMDetection config.

Example:
    python tools/test.py configs/mask-rcnn_kw-r50_1x_coco.py CHECKPOINT
    bash tools/dist_test.sh CONFIG CHECKPOINT 8 --out results.pkl
"""
import argparse

import mmkw  # noqa: F401  registers mmkw's models, hooks and fixes
from mmkw.engine import (MissingInputsError, add_common_args, build_runner,
                         check_inputs, load_config, parse_common_args)

__all__ = ['parse_args', 'main']


def parse_args(argv=None):
    """Parse the command line (MMDetection's and MMPretrain's arguments)."""
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a model with mmkw')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--out', help='dump the predictions to a pickle file (.pkl)')
    parser.add_argument(
        '--show-dir', help='save images painted with the predictions here')
    parser.add_argument(
        '--show', action='store_true', help='show the painted images')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds per shown image')
    add_common_args(parser, 'test_dataloader.batch_size=8')
    args = parse_common_args(parser, argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl file, got {args.out!r}')
    return args


def _is_detection(cfg) -> bool:
    return cfg.get('default_scope') == 'mmdet'


def enable_visualization(cfg, args) -> None:
    """Turn on the config's visualization hook for ``--show(-dir)``."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ValueError(
            f'--show/--show-dir need default_hooks.visualization in '
            f'{args.config!r}, e.g. visualization=dict('
            f'type="VisualizationHook")')
    if _is_detection(cfg):  # mmdet's DetVisualizationHook
        hook.update(draw=True, show=args.show, wait_time=args.wait_time)
        if args.show_dir:
            hook.test_out_dir = args.show_dir
    else:  # mmpretrain's VisualizationHook
        hook.update(
            enable=True,
            show=args.show,
            wait_time=args.wait_time,
            out_dir=args.show_dir)


def main(argv=None):
    """Test the checkpoint with the config and options of ``argv``."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.launcher, args.work_dir,
                      args.cfg_options)
    cfg.load_from = args.checkpoint
    try:
        check_inputs(cfg, ('test', ), [args.checkpoint])
    except MissingInputsError as error:
        raise SystemExit(f'error: {error}') from None
    if args.show or args.show_dir:
        enable_visualization(cfg, args)

    runner = build_runner(cfg)
    if args.out is not None:
        if _is_detection(cfg):
            from mmdet.evaluation import DumpDetResults as Dump
        else:
            from mmengine.evaluator import DumpResults as Dump
        runner.test_evaluator.metrics.append(Dump(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
