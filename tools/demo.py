"""The main job of mmkw: Mask R-CNN with a KernelWarehouse backbone trained
from scratch on the generated demo data, then evaluated.

Generates ``data/demo_shapes`` (if missing), trains
``configs/demo/mask-rcnn_kw1x-r18_demo-shapes.py`` with MMEngine's
``Runner`` (work dir ``work_dirs/demo``), evaluates on the val split with
``CocoMetric`` and prints the bbox and segm mAP and the wall time.

Example:
    python tools/demo.py
    python tools/demo.py --cfg-options train_cfg.max_epochs=2
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmkw  # noqa: E402,F401  registers mmkw's models, hooks and fixes
from mmkw.datasets import generate_demo_shapes  # noqa: E402

__all__ = ['DEFAULT_CONFIG', 'parse_args', 'prepare_data', 'run', 'main']

DEFAULT_CONFIG = 'configs/demo/mask-rcnn_kw1x-r18_demo-shapes.py'
METRICS = ('coco/bbox_mAP', 'coco/segm_mAP')


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` if None.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description='Generate the demo data, train Mask R-CNN with a '
        'KernelWarehouse backbone from scratch on it and print its bbox and '
        'segm mAP.')
    parser.add_argument(
        '--config',
        default=DEFAULT_CONFIG,
        help='demo config (default: %(default)s)')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='logs, checkpoint and results (default: %(default)s)')
    parser.add_argument(
        '--regenerate',
        action='store_true',
        help='regenerate the demo data even if it exists')
    parser.add_argument(
        '--min-map',
        type=float,
        default=None,
        help='exit with status 1 if bbox or segm mAP is below this value')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    return parser.parse_args(argv)


def prepare_data(cfg: Config, regenerate: bool = False) -> float:
    """Generate the demo data under ``cfg.data_root`` unless it exists.

    Args:
        cfg (Config): The demo config (its ``data_root`` is used).
        regenerate (bool): Write the data even if it exists.
            Defaults to False.

    Returns:
        float: Seconds spent generating (0 if the data existed).
    """
    data_root = cfg.get('data_root')
    if not data_root:
        raise ValueError(f'the demo config must define data_root, got '
                         f'{data_root!r}')
    names = ('train.json', 'val.json')
    if not regenerate and all(
            osp.exists(osp.join(data_root, 'annotations', n)) for n in names):
        return 0.0
    start = time.perf_counter()
    generate_demo_shapes(data_root, overwrite=True)
    return time.perf_counter() - start


def run(cfg: Config) -> dict:
    """Train and evaluate ``cfg``; the config validates after its last
    epoch.

    Args:
        cfg (Config): The demo config with ``work_dir`` set.

    Returns:
        dict: ``bbox_mAP``, ``segm_mAP``, ``loss_first`` and ``loss_last``
        (the training loss of the first and the last iteration),
        ``seconds`` (train + eval wall time, including building the runner)
        and ``cpu_seconds`` (CPU time of the process over all its threads,
        which depends less on other load on the machine than the wall
        time).
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    if not all(f'val/{k}' in hub.log_scalars for k in METRICS):
        # The config did not validate at the end of training: do it now.
        runner.val()
    result = {
        k.split('/')[1]: float(hub.get_scalar(f'val/{k}').current())
        for k in METRICS
    }
    losses = hub.get_scalar('train/loss').data[0]
    result['loss_first'], result['loss_last'] = map(float, losses[[0, -1]])
    result['seconds'] = time.perf_counter() - start
    result['cpu_seconds'] = time.process_time() - cpu_start
    return result


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir
    gen_seconds = prepare_data(cfg, args.regenerate)
    load_before = os.getloadavg()[0]
    result = run(cfg)
    load_after = os.getloadavg()[0]
    result.update(
        config=args.config,
        data_seconds=gen_seconds,
        load_average_1min=(load_before, load_after),
        cpu_count=os.cpu_count())
    with open(osp.join(args.work_dir, 'demo_result.json'), 'w') as f:
        json.dump(result, f, indent=2)
    seconds, cpu = result['seconds'], result['cpu_seconds']
    print(f'\nmmkw demo: Mask R-CNN, KW-ResNet18 (b=1) from scratch on '
          f'{cfg.data_root}\n'
          f'  bbox mAP: {result["bbox_mAP"]:.3f}\n'
          f'  segm mAP: {result["segm_mAP"]:.3f}\n'
          f'  training loss: {result["loss_first"]:.3f} (first iteration) '
          f'-> {result["loss_last"]:.3f} (last)\n'
          f'  wall time (train + eval): {seconds / 60:.1f} min '
          f'({seconds:.0f} s, CPU time {cpu:.0f} s; data generation '
          f'{gen_seconds:.1f} s)\n'
          f'  load average (1 min) before/after: {load_before:.1f}/'
          f'{load_after:.1f} on {os.cpu_count()} CPUs\n'
          f'  results: {osp.join(args.work_dir, "demo_result.json")}')
    if args.min_map is not None and min(result['bbox_mAP'],
                                        result['segm_mAP']) < args.min_map:
        print(f'mAP below --min-map {args.min_map}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
