"""Generate the demo dataset: coloured shapes in COCO format.

Example:
    python tools/generate_demo_data.py data/demo_shapes
"""
import argparse
import time

from mmkw.datasets import generate_demo_shapes

__all__ = ['parse_args', 'main']


def parse_args(args=None):
    parser = argparse.ArgumentParser(
        description='Generate the deterministic demo instance-segmentation '
        'dataset (coloured circles, squares and triangles, COCO format).')
    parser.add_argument(
        'out_dir',
        nargs='?',
        default='data/demo_shapes',
        help='dataset root (default: data/demo_shapes)')
    parser.add_argument(
        '--num-train', type=int, default=400, help='training images')
    parser.add_argument(
        '--num-val', type=int, default=64, help='validation images')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--img-size', type=int, default=128, help='image height and width')
    parser.add_argument(
        '--max-shapes', type=int, default=4, help='most objects per image')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace an existing dataset in out_dir')
    return parser.parse_args(args)


def main(args=None):
    args = parse_args(args)
    start = time.perf_counter()
    try:
        paths = generate_demo_shapes(
            args.out_dir,
            num_train=args.num_train,
            num_val=args.num_val,
            seed=args.seed,
            img_size=args.img_size,
            max_shapes=args.max_shapes,
            overwrite=args.overwrite)
    except FileExistsError as e:
        raise SystemExit(f'{e} (use --overwrite)') from None
    print(f'demo data written to {args.out_dir} in '
          f'{time.perf_counter() - start:.1f}s: ' +
          ', '.join(f'{k}: {v}' for k, v in paths.items()))


if __name__ == '__main__':
    main()
