"""mmkw's model index: every config by name, with its metadata.

``model-index.yml`` imports one metafile per family (``configs/metafiles/``,
MMPretrain's format). ``import mmkw`` registers the classification ones with
MMPretrain's ``ModelHub``, so ``mmpretrain.list_models('*kw*')``,
``mmpretrain.get_model(NAME, pretrained=PATH)`` and
``ImageClassificationInferencer(NAME)`` know mmkw's classifiers.
MMDetection's ``DetInferencer`` only looks names up in MMDetection's own
index (``mmengine.infer.BaseInferencer._load_model_from_metafile`` reads the
index of the scope's package); :func:`config_path` gives the config file of
any mmkw model, detectors included, to pass to it instead.
"""
import os.path as osp
from typing import Dict, List, Optional

from mmengine.fileio import load

__all__ = [
    'model_index_root', 'register_model_index', 'list_model_names',
    'config_path', 'released_weights'
]

_registered: List[str] = []


def model_index_root() -> str:
    """The folder holding ``model-index.yml``, the root its config paths
    are relative to: ``mmkw/.mim`` of an installed package, else the
    checkout."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for root in (osp.join(package, '.mim'), osp.dirname(package)):
        if osp.isfile(osp.join(root, 'model-index.yml')):
            return root
    raise FileNotFoundError(
        f'mmkw has no model-index.yml beside {package} (in .mim/ or the '
        f'checkout)')


def _metafiles(root: str) -> List[str]:
    index = load(osp.join(root, 'model-index.yml'))
    return [osp.join(root, path) for path in index['Import']]


def _models(root: Optional[str] = None) -> Dict[str, dict]:
    """Every entry of the index by name."""
    root = root or model_index_root()
    models = {}
    for metafile in _metafiles(root):
        for entry in load(metafile)['Models']:
            models[entry['Name']] = entry
    return models


def register_model_index() -> List[str]:
    """Register mmkw's classifiers with MMPretrain's ``ModelHub`` (once).

    Returns:
        list[str]: The names registered.
    """
    if _registered:
        return list(_registered)
    from mmpretrain.apis import ModelHub
    root = model_index_root()
    for metafile in _metafiles(root):
        entries = load(metafile)['Models']
        if not all(
                entry.get('Results', [{}])[0].get('Task') ==
                'Image Classification' for entry in entries):
            continue
        names = [entry['Name'] for entry in entries]
        if any(ModelHub.has(name.lower()) for name in names):
            continue  # registered by an earlier import of this index
        ModelHub.register_model_index(metafile, config_prefix=root)
        _registered.extend(names)
    return list(_registered)


def list_model_names(task: Optional[str] = None) -> List[str]:
    """The names of mmkw's models.

    Args:
        task (str, optional): ``'Image Classification'``, ``'Object
            Detection'`` or ``'Instance Segmentation'``; all if None.
    """
    return [
        name for name, entry in _models().items() if task is None or any(
            result.get('Task') == task for result in entry['Results'])
    ]


def config_path(name: str) -> str:
    """The config file of the mmkw model ``name`` (a classifier or a
    detector), e.g. for ``DetInferencer(model=config_path(NAME),
    weights=...)``.

    Raises:
        ValueError: If mmkw has no model of that name.
    """
    root = model_index_root()
    models = _models(root)
    if name not in models:
        close = [n for n in models if name.split('_')[0] in n][:5]
        raise ValueError(f'mmkw has no model {name!r}; '
                         f'{"similar: " + str(close) if close else ""} see '
                         f'mmkw.apis.list_model_names()')
    return osp.join(root, models[name]['Config'])


def released_weights(model: str) -> Optional[str]:
    """Where the authors released the ImageNet weights of ``model`` (e.g.
    ``'kw1x-resnet50'``, the part of a model name before ``_``): the
    ``Converted From`` address of its metafile entry, None if they released
    none. They are browser downloads, converted with
    ``tools/model_converters/kw_official_to_mmkw.py``."""
    for name, entry in sorted(_models().items()):
        if name.split('_')[0] == model and 'Converted From' in entry:
            return entry['Converted From']['Weights']
    return None
