"""Official KernelWarehouse ResNet18/50 checkpoints -> mmkw ``KWResNet``.

The official ResNets keep torchvision's module names, which MMPretrain's
``ResNet`` (and so :class:`~mmkw.models.KWResNet`) shares: ``conv1``,
``bn1``, ``layer1`` ... ``layer4``. The backbone keys only gain the
``backbone.`` prefix; the classifier ``fc`` becomes ``head.fc`` of
``LinearClsHead``.
"""
from typing import Set

from .official import OfficialFamily, register_family

__all__ = ['RESNET_FAMILY', 'detect_resnet', 'rename_resnet_key']

_BACKBONE_MODULES = ('conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'layer4')


def detect_resnet(keys: Set[str]) -> bool:
    """Whether official state-dict keys are those of a KW ResNet.

    Args:
        keys (set[str]): Keys of an official state dict.

    Returns:
        bool: True for the torchvision-style ResNet layout.
    """
    return ('conv1.weight' in keys and 'bn1.weight' in keys
            and 'fc.weight' in keys
            and any(k.startswith('layer1.0.') for k in keys))


def rename_resnet_key(key: str) -> str:
    """Official ResNet key -> mmkw ``ImageClassifier`` key.

    Args:
        key (str): A non-warehouse key of the official state dict.

    Returns:
        str: ``'head.fc.…'`` for the classifier, ``'backbone.…'`` otherwise.

    Raises:
        KeyError: If the key belongs to no module of the official ResNet.
    """
    module = key.split('.', 1)[0]
    if module == 'fc':
        return f'head.{key}'
    if module in _BACKBONE_MODULES:
        return f'backbone.{key}'
    raise KeyError(f'{key!r} is not a key of the official KW ResNet (its '
                   f"modules are {_BACKBONE_MODULES + ('fc', )})")


RESNET_FAMILY = register_family(
    OfficialFamily(
        name='resnet',
        detect=detect_resnet,
        rename=rename_resnet_key,
        # One config per budget: the traditional-recipe ones (the
        # ``32xb128-adamw`` configs build the same models).
        config_pattern='kw*-resnet*_8xb32_in1k.py'))
