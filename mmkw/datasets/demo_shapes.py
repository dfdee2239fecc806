"""A tiny, deterministic COCO-format instance-segmentation dataset.

The demo of mmkw trains Mask R-CNN from scratch on coloured circles,
squares and triangles drawn on noisy backgrounds. Everything is generated
locally from a seed (no download): the images are PNG files and the
annotations COCO JSON files, so MMDetection's ``CocoDataset`` and
``CocoMetric`` read them unchanged.

Every object is a polygon. Its mask is the polygon rasterised by
pycocotools, exactly as MMDetection's ``LoadAnnotations`` and the COCO API
rasterise it, and the image pixels of the object are painted through that
same mask, so masks are pixel-exact. Objects never overlap (their
circumscribed discs are disjoint), so no mask is occluded; ``bbox`` is the
tight box of the mask and ``area`` its pixel count.

Layout written by :func:`generate_demo_shapes`::

    out_dir/
    ├── annotations/{train,val}.json
    ├── train/00000.png ...
    └── val/00000.png ...
"""
import json
import os
import os.path as osp
from typing import Dict, List, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    'DEMO_CLASSES', 'shape_polygon', 'render_split', 'generate_demo_shapes'
]

#: Category names; category ``id`` is the index plus one.
DEMO_CLASSES = ('circle', 'square', 'triangle')

# Vertices of each shape on its circumscribed circle (circle: a fine
# regular polygon).
_NUM_VERTICES = {'circle': 40, 'square': 4, 'triangle': 3}


def shape_polygon(kind: str, cx: float, cy: float, radius: float,
                  angle: float) -> np.ndarray:
    """The polygon of a shape inscribed in a circle.

    Args:
        kind (str): One of :data:`DEMO_CLASSES`.
        cx (float): Centre x in pixels.
        cy (float): Centre y in pixels.
        radius (float): Radius of the circumscribed circle in pixels.
        angle (float): Rotation in radians.

    Returns:
        np.ndarray: ``(k, 2)`` float64 vertices ``(x, y)`` rounded to
        2 decimals, so the JSON polygon is the rasterised one.
    """
    if kind not in _NUM_VERTICES:
        raise ValueError(f'kind must be one of {DEMO_CLASSES}, got {kind!r}')
    if radius <= 0:
        raise ValueError(f'radius must be positive, got {radius!r}')
    k = _NUM_VERTICES[kind]
    theta = angle + 2 * np.pi * np.arange(k) / k
    xy = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)],
                  axis=1)
    return np.round(xy, 2)


def _rasterise(polygon: np.ndarray, height: int, width: int) -> dict:
    """Compressed RLE of a polygon, as the COCO API rasterises it."""
    rles = mask_utils.frPyObjects([polygon.reshape(-1).tolist()], height,
                                  width)
    return mask_utils.merge(rles)


def _sample_layout(rng: np.random.Generator, img_size: int, max_shapes: int,
                   min_radius: float,
                   max_radius: float) -> List[Tuple[float, float, float]]:
    """Centres and radii of 1..max_shapes disjoint discs inside the
    image."""
    num = int(rng.integers(1, max_shapes + 1))
    discs: List[Tuple[float, float, float]] = []
    for _ in range(num * 20):  # rejection sampling; gives up quietly
        if len(discs) == num:
            break
        r = float(rng.uniform(min_radius, max_radius))
        cx, cy = rng.uniform(r + 1, img_size - r - 1, size=2)
        if all(np.hypot(cx - x, cy - y) > r + s + 2 for x, y, s in discs):
            discs.append((float(cx), float(cy), r))
    return discs


def _contrasting_colour(rng: np.random.Generator,
                        background: np.ndarray) -> np.ndarray:
    """A random RGB colour at L1 distance >= 150 from the background."""
    while True:
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - background).sum() >= 150:
            return colour


def render_split(num_images: int,
                 seed: int,
                 img_size: int = 128,
                 max_shapes: int = 4,
                 min_radius: float = 10.0,
                 max_radius: float = 26.0,
                 noise_std: float = 8.0) -> Tuple[List[np.ndarray], dict]:
    """Render one split in memory.

    Args:
        num_images (int): Number of images.
        seed (int): Seed of the split; equal seeds give equal outputs.
        img_size (int): Height and width of the square images.
            Defaults to 128.
        max_shapes (int): At most this many objects per image (at least 1).
            Defaults to 4.
        min_radius (float): Smallest circumscribed radius. Defaults to 10.
        max_radius (float): Largest circumscribed radius. Defaults to 26.
        noise_std (float): Std of the Gaussian pixel noise. Defaults to 8.

    Returns:
        tuple[list[np.ndarray], dict]: BGR uint8 images (cv2 order) and the
        COCO dict whose ``file_name`` entries are ``'{index:05d}.png'``.
    """
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images!r}')
    if max_shapes < 1:
        raise ValueError(f'max_shapes must be >= 1, got {max_shapes!r}')
    if not 0 < min_radius <= max_radius or 2 * max_radius + 2 >= img_size:
        raise ValueError(
            f'need 0 < min_radius <= max_radius < (img_size - 2) / 2, got '
            f'min_radius={min_radius!r}, max_radius={max_radius!r}, '
            f'img_size={img_size!r}')
    rng = np.random.default_rng(seed)
    images, image_infos, annotations = [], [], []
    for index in range(num_images):
        background = rng.integers(0, 256, size=3)
        canvas = np.empty((img_size, img_size, 3), np.float64)
        canvas[:] = background
        for cx, cy, r in _sample_layout(rng, img_size, max_shapes, min_radius,
                                        max_radius):
            label = int(rng.integers(len(DEMO_CLASSES)))
            polygon = shape_polygon(DEMO_CLASSES[label], cx, cy, r,
                                    float(rng.uniform(0, 2 * np.pi)))
            rle = _rasterise(polygon, img_size, img_size)
            mask = mask_utils.decode(rle).astype(bool)
            canvas[mask] = _contrasting_colour(rng, background)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=index + 1,
                    category_id=label + 1,
                    segmentation=[polygon.reshape(-1).tolist()],
                    area=float(mask.sum()),
                    bbox=[float(v) for v in mask_utils.toBbox(rle)],
                    iscrowd=0))
        canvas += rng.normal(0.0, noise_std, size=canvas.shape)
        rgb = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
        images.append(np.ascontiguousarray(rgb[..., ::-1]))
        image_infos.append(
            dict(
                id=index + 1,
                file_name=f'{index:05d}.png',
                height=img_size,
                width=img_size))
    coco = dict(
        images=image_infos,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(DEMO_CLASSES)
        ])
    return images, coco


def generate_demo_shapes(out_dir: str,
                         num_train: int = 400,
                         num_val: int = 64,
                         seed: int = 0,
                         img_size: int = 128,
                         max_shapes: int = 4,
                         overwrite: bool = False,
                         **kwargs) -> Dict[str, str]:
    """Write the demo dataset (PNG images + COCO JSON) to ``out_dir``.

    The output depends only on the arguments: the same arguments write
    byte-identical files. Train and val use independent streams derived
    from ``seed``.

    Args:
        out_dir (str): Dataset root, e.g. ``data/demo_shapes``.
        num_train (int): Training images. Defaults to 400.
        num_val (int): Validation images. Defaults to 64.
        seed (int): Seed of the whole dataset. Defaults to 0.
        img_size (int): Image height and width. Defaults to 128.
        max_shapes (int): Most objects per image. Defaults to 4.
        overwrite (bool): Replace an existing dataset (its PNG files
            included). If False and annotation files exist, raise
            ``FileExistsError``. Defaults to False.
        **kwargs: Other arguments of :func:`render_split`.

    Returns:
        dict[str, str]: Annotation file path of each split.
    """
    splits = {'train': num_train, 'val': num_val}
    ann_paths = {
        split: osp.join(out_dir, 'annotations', f'{split}.json')
        for split in splits
    }
    existing = [p for p in ann_paths.values() if osp.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(f'demo data already exists: {existing}; pass '
                              f'overwrite=True to regenerate it')
    seeds = np.random.SeedSequence(seed).generate_state(len(splits))
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    for (split, num), split_seed in zip(splits.items(), seeds):
        images, coco = render_split(
            num,
            int(split_seed),
            img_size=img_size,
            max_shapes=max_shapes,
            **kwargs)
        img_dir = osp.join(out_dir, split)
        os.makedirs(img_dir, exist_ok=True)
        for name in os.listdir(img_dir):  # stale images of an older run
            if name.endswith('.png'):
                os.remove(osp.join(img_dir, name))
        for info, image in zip(coco['images'], images):
            path = osp.join(img_dir, info['file_name'])
            if not cv2.imwrite(path, image):
                raise OSError(f'could not write {path}')
        with open(ann_paths[split], 'w') as f:
            json.dump(coco, f)
    return ann_paths
