"""Check a config's data and checkpoints exist before building a runner.

MMEngine finds a missing annotation file only while building the dataset,
inside an 800-line log, and a missing pretrained checkpoint only on the next
run. ``tools/train.py`` and ``tools/test.py`` call :func:`check_inputs`
first: one message lists everything missing and says where it goes.

Only local paths are checked: URLs, other file backends (``backend_args``)
and datasets without paths are left to their loaders.
"""
import glob
import os.path as osp
from typing import Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config

#: Split phases or checkpoint paths.
Names = Sequence[str]

__all__ = ['MissingInputsError', 'find_missing_inputs', 'check_inputs']

#: The dataloaders each phase reads.
PHASES = {
    'train': ('train_dataloader', 'train_cfg'),
    'val': ('val_dataloader', 'val_cfg'),
    'test': ('test_dataloader', 'test_cfg'),
}

_COCO_HINT = (
    'COCO goes where MMDetection expects it: {root}annotations/'
    'instances_{{train,val}}2017.json, {root}train2017/ and {root}val2017/ '
    '(https://mmdetection.readthedocs.io/en/latest/user_guides/'
    'dataset_prepare.html), or point the config at your copy with '
    '--cfg-options train_dataloader.dataset.data_root=... (and val/test).')
_IMAGENET_HINT = (
    'ImageNet goes where MMPretrain expects it: {root}/train/, {root}/val/ '
    'and {root}/meta/{{train,val}}.txt (https://mmpretrain.readthedocs.io/'
    'en/latest/user_guides/dataset_prepare.html), or point the config at '
    'your copy with --cfg-options train_dataloader.dataset.data_root=... '
    '(and val/test).')


class MissingInputsError(FileNotFoundError):
    """Data or checkpoints a config needs are missing (the message lists
    them all and how to get them)."""


def _is_local(path: str) -> bool:
    return '://' not in path


def _datasets(dataset: dict) -> Iterator[dict]:
    """The datasets inside wrappers (RepeatDataset, ConcatDataset, ...)."""
    if 'dataset' in dataset:
        yield from _datasets(dataset['dataset'])
    elif 'datasets' in dataset:
        for inner in dataset['datasets']:
            yield from _datasets(inner)
    else:
        yield dataset


def _missing_data(dataset: dict, loader: str) -> List[str]:
    backend = (dataset.get('backend_args') or {}).get('backend', 'local')
    root = dataset.get('data_root') or ''
    if backend != 'local' or not _is_local(root):
        return []
    paths = []
    if dataset.get('ann_file'):
        paths.append(('annotation file', dataset['ann_file'], osp.isfile))
    prefix = dataset.get('data_prefix') or dataset.get('split') or ''
    prefixes = prefix.values() if isinstance(prefix, dict) else [prefix]
    paths += [('image directory', p, osp.isdir) for p in prefixes if p]
    if not paths and root:
        paths.append(('data root', '', osp.isdir))
    missing = []
    for what, path, exists in paths:
        full = osp.join(root, path) if root and path else root or path
        if not exists(full):
            missing.append(f'{what} {full} ({loader}, {dataset["type"]})')
    return missing


def _data_hint(dataset: dict) -> Optional[str]:
    kind = str(dataset.get('type', ''))
    root = dataset.get('data_root') or ''
    if 'Coco' in kind:
        return _COCO_HINT.format(root=root)
    if kind.split('.')[-1] == 'ImageNet':
        return _IMAGENET_HINT.format(root=root.rstrip('/'))
    return None


def _pretrained(node) -> Iterator[str]:
    """Local checkpoints of every ``init_cfg=dict(type='Pretrained')``."""
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' and isinstance(
                node.get('checkpoint'), str):
            yield node['checkpoint']
        for value in node.values():
            yield from _pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _pretrained(value)


def _checkpoint_hint(path: str, config_dir: str) -> Optional[str]:
    """How to get an ImageNet checkpoint named ``<model>_in1k.pth`` (the
    name the detection configs use), None for other names."""
    stem = osp.splitext(osp.basename(path))[0]
    if not stem.endswith('_in1k'):
        return None
    from mmkw.apis import released_weights
    model = stem[:-len('_in1k')]
    url = released_weights(model)
    if url:
        hint = (f'For {path}: download the authors\' released {model} '
                f'checkpoint ({url}, a browser download) and convert it with '
                f'python tools/model_converters/kw_official_to_mmkw.py '
                f'DOWNLOADED.pth {path}')
    else:
        hint = (f'For {path}: the authors released no {model} checkpoint')
    configs = sorted(glob.glob(osp.join(config_dir, f'{model}_*in1k.py')))
    if configs:
        hint += (', or train it with ' if url else '; train it with ') + \
            ' or '.join(f'python tools/train.py {c}' for c in configs)
    return hint + '.'


def find_missing_inputs(
    cfg: Config, phases: Sequence[str], checkpoints: Sequence[str] = ()
) -> Tuple[List[str], List[str]]:
    """Everything a run of ``phases`` needs that is not there.

    Args:
        cfg (Config): The config, command-line options applied.
        phases (Sequence[str]): Any of ``'train'``, ``'val'``, ``'test'``;
            a phase whose loop (``train_cfg``, ...) the config lacks is
            skipped.
        checkpoints (Sequence[str]): Checkpoints the run loads besides the
            model's ``init_cfg`` ones (``load_from``); None entries are
            skipped. The ``init_cfg`` checkpoints count only when ``phases``
            include ``'train'`` (MMEngine initialises weights only there).

    Returns:
        tuple[list[str], list[str]]: One line per missing path, and one
        line per hint on how to get them.
    """
    for phase in phases:
        if phase not in PHASES:
            raise ValueError(f'phases must be among {sorted(PHASES)}, got '
                             f'{phase!r}')
    missing, hints = [], []
    for phase in phases:
        loader, loop = PHASES[phase]
        if not cfg.get(loader) or cfg.get(loop) is None:
            continue
        for dataset in _datasets(cfg[loader].get('dataset') or {}):
            lines = _missing_data(dataset, loader)
            missing += [line for line in lines if line not in missing]
            hint = _data_hint(dataset)
            if lines and hint and hint not in hints:
                hints.append(hint)
    config_dir = osp.dirname(cfg.filename or '') or 'configs'
    pretrained = _pretrained(cfg.get('model', {})) if 'train' in phases \
        else []
    for path in [*pretrained, *checkpoints]:
        if path and _is_local(path) and not osp.isfile(path):
            line = f'checkpoint {path}'
            if line not in missing:
                missing.append(line)
                hint = _checkpoint_hint(path, config_dir)
                if hint:
                    hints.append(hint)
    return missing, hints


def check_inputs(cfg: Config, phases: Names, checkpoints: Names = ()) -> None:
    """Raise :class:`MissingInputsError` listing all that
    :func:`find_missing_inputs` finds (arguments as there)."""
    missing, hints = find_missing_inputs(cfg, phases, checkpoints)
    if not missing:
        return
    raise MissingInputsError('\n'.join(
        [f'{cfg.filename or "The config"} needs files that do not exist:'] +
        [f'  - {line}' for line in missing] + hints))
