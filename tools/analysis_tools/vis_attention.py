"""Draw what the attentions of a KW model learnt (the paper's Figure 3).

Example:
    python tools/analysis_tools/vis_attention.py \
        configs/demo/mask-rcnn_kw1x-r18_demo-shapes.py \
        work_dirs/demo/epoch_6.pth --num-images 64 --out-dir attention_maps

Runs the model over a split of the config's dataset (its pipeline and data
preprocessor, at the checkpoint's temperature), averages the attention
``alpha`` of every KW layer over the images, and draws one heatmap per
warehouse: rows are the linear mixtures of its layers in order, columns the
warehouse cells, a diverging colour map centred at 0, each layer's own cells
outlined. The images go through MMEngine's Visualizer (to the config's
``vis_backends``: local files, TensorBoard, W&B); ``--out-dir`` also writes
PNGs and ``statistics.json`` (per layer: the share of ``|alpha|`` on its
own cells, the fraction of negative weights and the entropy). A progress
bar over the images (MMEngine's ``ProgressBar``) goes to stderr; the table
of statistics to stdout.
"""
import argparse
import json
import os
import os.path as osp
import sys

import mmcv
import torch
from mmengine.registry import VISUALIZERS, init_default_scope
from mmengine.runner import Runner, load_checkpoint
from mmengine.utils import ProgressBar

import mmkw  # noqa: F401  registers mmkw's models and the safe loaders
from mmkw.analysis import (AttentionRecorder, draw_warehouse_map,
                           layer_statistics)
from mmkw.engine import add_cfg_options, load_config
from mmkw.models import build_model_from_config

__all__ = ['parse_args', 'main']


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Heatmaps of the attention of every KW warehouse')
    parser.add_argument('config', help='MMPretrain or MMDetection config')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument(
        '--split',
        choices=['train', 'val', 'test'],
        default='val',
        help='the dataloader of the config to read (default: val)')
    parser.add_argument(
        '--num-images',
        type=int,
        default=100,
        help='images to average over (default: 100)')
    parser.add_argument('--out-dir', help='also write PNGs and statistics')
    add_cfg_options(parser)
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error(f'--num-images must be positive, got {args.num_images}')
    return args


def _features(model, inputs):
    """Run what holds the KW layers: the whole classifier (KW heads too)
    or the detector's backbone and neck."""
    if hasattr(model, 'extract_feat') and not hasattr(model, 'head'):
        return model.extract_feat(inputs)
    return model(inputs, mode='tensor')


def main(argv=None):
    """Draw (and return) the maps and statistics of ``argv``."""
    args = parse_args(argv)
    cfg = load_config(args.config, cfg_options=args.cfg_options)
    loader_cfg = cfg.get(f'{args.split}_dataloader')
    if not loader_cfg:
        raise ValueError(f'{args.config} has no {args.split}_dataloader; '
                         f'pick another --split')
    model = build_model_from_config(cfg)
    load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    model.eval()
    loader_cfg = dict(loader_cfg, num_workers=0, persistent_workers=False)
    # The dataset and its transforms are looked up in the config's scope.
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    loader = Runner.build_dataloader(loader_cfg)

    # Whole batches run: --num-images rounded up to a batch multiple.
    batch = loader.batch_size or 1
    total = min(-(-args.num_images // batch) * batch, len(loader.dataset))
    print(
        f'Averaging the attention over {total} images of the '
        f'{args.split} split',
        file=sys.stderr,
        flush=True)
    progress = ProgressBar(total, file=sys.stderr)
    with AttentionRecorder(model) as recorder, torch.no_grad():
        for data in loader:
            done = min(recorder.num_images, total)
            data = model.data_preprocessor(data, False)
            _features(model, data['inputs'])
            progress.update(min(recorder.num_images, total) - done)
            if recorder.num_images >= args.num_images:
                break
    sys.stderr.write('\n')
    maps = recorder.maps()
    stats = layer_statistics(maps)

    vis_cfg = dict(cfg.get('visualizer', dict(type='Visualizer')))
    vis_cfg.update(
        name='kw_attention',
        save_dir=args.out_dir
        or vis_cfg.get('save_dir', 'work_dirs/kw_attention'))
    visualizer = VISUALIZERS.build(vis_cfg)
    for warehouse, entry in maps.items():
        image = draw_warehouse_map(warehouse, entry)
        visualizer.add_image(f'kw_attention/{warehouse}', image)
        if args.out_dir:
            mmcv.imwrite(
                mmcv.rgb2bgr(image), osp.join(args.out_dir,
                                              f'{warehouse}.png'))
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(osp.join(args.out_dir, 'statistics.json'), 'w') as f:
            json.dump(stats, f, indent=2)
    print(f'{recorder.num_images} images of the {args.split} split')
    print(f'{"layer":40} {"own share":>9} {"negative":>8} {"entropy":>8}')
    for row in stats:
        print(f'{row["layer"]:40} {row["own_share"]:9.3f} '
              f'{row["negative"]:8.3f} {row["entropy"]:8.2f}')
    return maps, stats


if __name__ == '__main__':
    main()
