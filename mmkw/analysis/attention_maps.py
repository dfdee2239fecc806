"""What the attentions learnt: the paper's Figure 3 for any KW model.

:class:`AttentionRecorder` averages the attention ``alpha`` of every KW
layer over the images a model sees (forward hooks, no change to the model).
Per warehouse, :func:`warehouse_maps` stacks the layers' averaged mixtures
(rows, in layer order) over the warehouse cells (columns), and
:func:`layer_statistics` gives, per layer, the share of ``|alpha|`` on its
own cells, the fraction of negative weights and the entropy of the
normalised ``|alpha|``. :func:`draw_warehouse_map` renders one warehouse as
an RGB image (diverging colour map centred at 0, layer boundaries marked).
"""
import math
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn

from mmkw.cnn import bound_layers

__all__ = [
    'AttentionRecorder', 'warehouse_maps', 'layer_statistics',
    'draw_warehouse_map'
]


class AttentionRecorder:
    """Average ``alpha`` of every KW layer of ``model`` over the images run
    inside the ``with`` block.

    Args:
        model (nn.Module): A model with bound KW layers.

    Example:
        >>> with AttentionRecorder(model) as recorder:
        ...     model(images)
        >>> means = recorder.means()  # layer path -> [m, n] mean alpha
    """

    def __init__(self, model: nn.Module):
        self.layers = list(bound_layers(model))
        if not self.layers:
            raise ValueError(f'{type(model).__name__} has no KW layer')
        self._sums: Dict[str, torch.Tensor] = {}
        self._counts: Dict[str, int] = {}
        self._handles: list = []

    def __enter__(self) -> 'AttentionRecorder':
        for record, layer in self.layers:
            self._handles.append(
                layer.attention.register_forward_hook(
                    self._recorder(record.path, record.plan.num_mixtures)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _recorder(self, path: str, num_mixtures: int):

        def record(module, args, output):
            alpha = output.alpha  # an AttentionOutput
            per_image = alpha.detach().float().reshape(-1, num_mixtures,
                                                       alpha.shape[-1])
            total = per_image.sum(0).cpu()
            if path in self._sums:
                self._sums[path] += total
            else:
                self._sums[path] = total
            self._counts[path] = self._counts.get(path, 0) + \
                per_image.shape[0]

        return record

    @property
    def num_images(self) -> int:
        return max(self._counts.values(), default=0)

    def means(self) -> Dict[str, torch.Tensor]:
        """``{layer path: [m, n] mean alpha}`` of the layers that ran (module
        paths in the recorded model)."""
        if not self._sums:
            raise RuntimeError('no image was recorded')
        return {
            path: total / self._counts[path]
            for path, total in self._sums.items()
        }

    def maps(self) -> Dict[str, dict]:
        """See :func:`warehouse_maps`."""
        return warehouse_maps([record for record, _ in self.layers],
                              self.means())


def warehouse_maps(records, means: Dict[str, torch.Tensor]) -> Dict[str, dict]:
    """Per warehouse: ``alpha`` (``[sum m, n]`` mean mixtures of its layers
    in order), ``layers`` (paths), ``rows`` (first row of each layer) and
    ``own`` (``(start, num_cells)`` of each layer).

    Args:
        records (list[BoundLayer]): The layers (:func:`~mmkw.cnn.
            bound_layers`), in order.
        means (dict): ``{layer path: [m, n] mean alpha}``; a layer that
            never ran (no mean) is left out.
    """
    maps: Dict[str, dict] = {}
    for record in records:
        if record.path not in means:
            continue
        entry = maps.setdefault(record.qualified_warehouse,
                                dict(alpha=[], layers=[], rows=[], own=[]))
        entry['rows'].append(sum(a.shape[0] for a in entry['alpha']))
        entry['alpha'].append(means[record.path])
        entry['layers'].append(record.path)
        entry['own'].append((record.plan.start, record.plan.num_cells))
    for entry in maps.values():
        entry['alpha'] = torch.cat(entry['alpha']).numpy()
    return maps


def layer_statistics(maps: Dict[str, dict]) -> List[dict]:
    """Per layer: ``own_share`` (share of ``sum |alpha|`` on its own cells),
    ``negative`` (fraction of negative weights) and ``entropy`` (of
    ``|alpha|`` normalised per mixture, in nats, averaged over mixtures;
    ``log(n)`` is uniform)."""
    stats = []
    for warehouse, entry in maps.items():
        bounds = entry['rows'] + [entry['alpha'].shape[0]]
        for i, name in enumerate(entry['layers']):
            alpha = entry['alpha'][bounds[i]:bounds[i + 1]]
            start, count = entry['own'][i]
            magnitude = np.abs(alpha)
            p = magnitude / np.maximum(magnitude.sum(1, keepdims=True), 1e-12)
            entropy = -(p * np.log(np.maximum(p, 1e-12))).sum(1).mean()
            stats.append(
                dict(
                    warehouse=warehouse,
                    layer=name,
                    own_share=float(magnitude[:, start:start + count].sum() /
                                    max(magnitude.sum(), 1e-12)),
                    negative=float((alpha < 0).mean()),
                    entropy=float(entropy),
                    uniform_entropy=math.log(alpha.shape[1])))
    return stats


def draw_warehouse_map(warehouse: str, entry: dict) -> np.ndarray:
    """One warehouse's mean ``alpha`` as an RGB image: rows are the linear
    mixtures of its layers (in order, boundaries as lines), columns the
    cells; a diverging colour map centred at 0 (red positive, blue
    negative); each layer's own cells are outlined."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    alpha = entry['alpha']
    limit = float(np.abs(alpha).max()) or 1.0
    rows, cols = alpha.shape
    fig, ax = plt.subplots(
        figsize=(min(2 + cols / 12, 16), min(2 + rows / 12, 16)), dpi=100)
    image = ax.imshow(
        alpha,
        cmap='RdBu_r',
        vmin=-limit,
        vmax=limit,
        aspect='auto',
        interpolation='nearest')
    bounds = entry['rows'] + [rows]
    for (start, count), top, bottom in zip(entry['own'], bounds[:-1],
                                           bounds[1:]):
        ax.add_patch(
            matplotlib.patches.Rectangle((start - .5, top - .5),
                                         count,
                                         bottom - top,
                                         fill=False,
                                         edgecolor='black',
                                         linewidth=.6))
        if top:
            ax.axhline(top - .5, color='black', linewidth=.4)
    ax.set_yticks([(t + b - 1) / 2 for t, b in zip(bounds[:-1], bounds[1:])])
    ax.set_yticklabels(entry['layers'], fontsize=6)
    ax.set_xlabel('warehouse cell')
    ax.set_title(
        f'{warehouse}: mean attention (rows: mixtures of each '
        f'layer; boxes: own cells)',
        fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb
