"""Convert an official KernelWarehouse checkpoint to an mmkw checkpoint.

The architecture (family and budget) is inferred by matching the
checkpoint against every mmkw config of its family; ``--config`` skips the
search. The result loads with ``mmengine.runner.load_checkpoint``, with
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` and with the
``Runner``'s ``load_from``.

Example::

    python tools/model_converters/kw_official_to_mmkw.py \\
        kw1x_resnet50.pth checkpoints/kw1x-resnet50_in1k.pth
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

import torch

from mmkw.apis import model_index_root
from mmkw.converters import (convert_official_state_dict, detect_family,
                             find_matching_config, load_official_checkpoint,
                             model_warehouse_keys)
from mmkw.models import build_model_from_config

__all__ = ['parse_args', 'convert', 'main']


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` if None.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description='Convert an official KernelWarehouse checkpoint (Li & '
        'Yao, ICML 2024) to an mmkw checkpoint.')
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='mmkw checkpoint to write')
    parser.add_argument(
        '--config',
        help='mmkw config of the model; inferred from the checkpoint if '
        'omitted')
    parser.add_argument(
        '--config-dir',
        default=osp.realpath(osp.join(model_index_root(), 'configs')),
        help='where to look for matching configs (default: %(default)s)')
    return parser.parse_args(argv)


def convert(src, dst, config=None, config_dir=None) -> dict:
    """Convert ``src`` and save it as ``dst``.

    Args:
        src (str | Path): Official checkpoint.
        dst (str | Path): Output mmkw checkpoint.
        config (str | Path, optional): mmkw config; inferred if None.
        config_dir (str | Path, optional): Configs to search; the
            repository's ``configs/`` if None.

    Returns:
        dict: The saved checkpoint (``state_dict`` and ``meta``).
    """
    state_dict = load_official_checkpoint(src)
    if config is None:
        config, family = find_matching_config(
            state_dict, config_dir
            or osp.realpath(osp.join(model_index_root(), 'configs')))
        print(f'matching config: {config}')
    else:
        family = detect_family(state_dict.keys())
    model = build_model_from_config(config, device='meta')
    converted = convert_official_state_dict(state_dict, model, family)
    checkpoint = dict(
        state_dict=converted,
        meta=dict(
            converted_from=str(src),
            config=str(config),
            official_family=family.name))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, dst)

    warehouses = model_warehouse_keys(model)
    num_params = sum(v.numel() for k, v in converted.items()
                     if v.is_floating_point() and 'running_' not in k
                     and not k.endswith('.temperature'))
    print(f'family: {family.name}\n'
          f'keys: {len(state_dict)} official -> {len(converted)} mmkw '
          f'(+{len(converted) - len(state_dict)} attention temperatures, '
          f'set to 0)\n'
          f'warehouses: ' + ', '.join(f'{key} {list(shape)}'
                                      for key, shape in warehouses) + '\n'
          f'parameters: {num_params:,}\n'
          f'saved: {dst}')
    return checkpoint


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        convert(args.src, args.dst, args.config, args.config_dir)
    except (ValueError, FileNotFoundError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
