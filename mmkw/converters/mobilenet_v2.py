"""Official KernelWarehouse MobileNetV2 checkpoints -> mmkw ``KWMobileNetV2``.

The official MobileNetV2 follows torchvision's layout: ``features.0`` is the
stem, ``features.1`` ... ``features.17`` the inverted residual blocks of the
seven settings, ``features.18`` the last 1x1 conv, ``classifier`` the
classifier (``classifier.weight``/``.bias`` for the plain ``nn.Linear``;
``classifier.1.conv.*`` for the KW linear of the b = 1/2 models, whose
``classifier.0`` is a dropout). MMPretrain's ``MobileNetV2`` names the same
modules ``conv1``, ``layer1`` ... ``layer7`` (blocks numbered inside each
layer), ``conv2``, and wraps every conv and its norm in a ``ConvModule``
(``.conv``/``.bn``).

Inside a block the official ``conv`` sequence is ``[ConvBNReLU(dw),
conv, bn]`` for expand ratio 1 and ``[ConvBNReLU(pw), ConvBNReLU(dw), conv,
bn]`` otherwise; a ``ConvBNReLU`` is ``[conv, bn, relu6]``. mmkw's is one
``ConvModule`` per conv, so the official ``conv.{i}.0`` / ``conv.{i}.1``
become ``conv.{i}.conv`` / ``conv.{i}.bn`` and the trailing ``conv.{n}`` /
``conv.{n + 1}`` become ``conv.{n}.conv`` / ``conv.{n}.bn``.
"""
import re
from itertools import accumulate
from typing import Set, Tuple

from mmpretrain.models.backbones.mobilenet_v2 import MobileNetV2

from .official import OfficialFamily, register_family

__all__ = [
    'MOBILENET_V2_FAMILY', 'detect_mobilenet_v2', 'rename_mobilenet_v2_key'
]

# Blocks per setting (the num_blocks column of MobileNetV2.arch_settings),
# and the index in ``features`` of each setting's first block.
_NUM_BLOCKS = tuple(row[2] for row in MobileNetV2.arch_settings)
_FIRST_BLOCK = tuple(accumulate((1, ) + _NUM_BLOCKS[:-1]))
_LAST_FEATURE = 1 + sum(_NUM_BLOCKS)  # the last 1x1 conv, features.18

_FEATURE = re.compile(r'features\.(\d+)\.(.+)')
_BLOCK_CONV = re.compile(r'conv\.(\d+)\.(.+)')


def detect_mobilenet_v2(keys: Set[str]) -> bool:
    """Whether official state-dict keys are those of a KW MobileNetV2.

    Args:
        keys (set[str]): Keys of an official state dict.

    Returns:
        bool: True for the torchvision-style MobileNetV2 layout.
    """
    return (any(k.startswith('features.0.') for k in keys)
            and any(k.startswith('features.1.conv.') for k in keys)
            and any(k.startswith(f'features.{_LAST_FEATURE}.') for k in keys)
            and any(k.startswith('classifier.') for k in keys))


def _conv_bn(index: str, rest: str, key: str) -> str:
    """``{index}.0.*`` (conv) / ``{index}.1.*`` (norm) of a ConvBNReLU ->
    ConvModule keys."""
    part, _, tail = rest.partition('.')
    if part == '0' and tail:
        return f'{index}.conv.{tail}'
    if part == '1' and tail:
        return f'{index}.bn.{tail}'
    raise KeyError(f'{key!r}: expected a conv (.0) or norm (.1) of a '
                   f'ConvBNReLU')


def _block_location(feature: int, key: str) -> Tuple[int, int]:
    """``features`` index of an inverted residual -> (layer, block)."""
    for i, (first, count) in enumerate(zip(_FIRST_BLOCK, _NUM_BLOCKS)):
        if first <= feature < first + count:
            return i + 1, feature - first
    raise KeyError(f'{key!r}: features.{feature} is no block of the '
                   f'official MobileNetV2')


def rename_mobilenet_v2_key(key: str) -> str:
    """Official MobileNetV2 key -> mmkw ``ImageClassifier`` key.

    Args:
        key (str): A non-warehouse key of the official state dict.

    Returns:
        str: ``'backbone.…'`` for ``features``, ``'head.fc.…'`` for the
        classifier.

    Raises:
        KeyError: If the key belongs to no module of the official
            MobileNetV2.
    """
    if key.startswith('classifier.'):
        rest = key[len('classifier.'):]
        if rest in ('weight', 'bias'):  # plain nn.Linear
            return f'head.fc.{rest}'
        if rest.startswith('1.conv.'):  # KW linear (b = 1/2 models)
            return f'head.fc.{rest[len("1.conv."):]}'
        raise KeyError(f'{key!r} is not a key of the official MobileNetV2 '
                       f'classifier')
    match = _FEATURE.fullmatch(key)
    if match is None:
        raise KeyError(f'{key!r} is not a key of the official MobileNetV2 '
                       f"(its modules are 'features' and 'classifier')")
    feature, rest = int(match.group(1)), match.group(2)
    if feature == 0:
        return 'backbone.' + _conv_bn('conv1', rest, key)
    if feature == _LAST_FEATURE:
        return 'backbone.' + _conv_bn('conv2', rest, key)
    layer, block = _block_location(feature, key)
    prefix = f'backbone.layer{layer}.{block}.conv'
    match = _BLOCK_CONV.fullmatch(rest)
    if match is None:
        raise KeyError(f'{key!r}: expected features.{feature}.conv.*')
    index, tail = int(match.group(1)), match.group(2)
    # Expand ratio 1 (only the first setting) has no expansion conv.
    num_convs = 2 if MobileNetV2.arch_settings[layer - 1][0] == 1 else 3
    last = num_convs - 1
    if index < last:  # a ConvBNReLU
        return f'{prefix}.' + _conv_bn(str(index), tail, key)
    if index == last:  # the projection conv
        return f'{prefix}.{last}.conv.{tail}'
    if index == last + 1:  # its norm
        return f'{prefix}.{last}.bn.{tail}'
    raise KeyError(f'{key!r}: block features.{feature} has no conv.{index}')


MOBILENET_V2_FAMILY = register_family(
    OfficialFamily(
        name='mobilenet_v2',
        detect=detect_mobilenet_v2,
        rename=rename_mobilenet_v2_key,
        config_pattern='kw*-mobilenet-v2*_in1k.py'))
