"""Official KernelWarehouse ConvNeXt checkpoints -> mmkw ``KWConvNeXt``.

The official KW ConvNeXt follows the ConvNeXt reference code, whose module
paths MMPretrain's ``ConvNeXt`` (and so :class:`~mmkw.models.KWConvNeXt`)
mostly keeps: ``downsample_layers.I.J`` and ``stages.S.B`` are unchanged,
the block convs are renamed (``dwconv`` -> ``depthwise_conv``, ``pwconv1``
-> ``pointwise_conv1``, ``pwconv2`` -> ``pointwise_conv2``), the final norm
applied after global pooling becomes the norm of the last output stage
(``norm`` -> ``norm3`` for four stages) and the classifier ``head`` becomes
``head.fc`` of ``LinearClsHead``. The layer scale ``gamma`` keeps its
official ``[1, C, 1, 1]`` shape in ``KWConvNeXt``.
"""
import re
from typing import Set

from .official import OfficialFamily, register_family

__all__ = ['CONVNEXT_FAMILY', 'detect_convnext', 'rename_convnext_key']

_BLOCK_MODULES = {
    'dwconv': 'depthwise_conv',
    'norm': 'norm',
    'pwconv1': 'pointwise_conv1',
    'pwconv2': 'pointwise_conv2',
}
_STAGE_KEY = re.compile(r'^stages\.(\d+)\.(\d+)\.(\w+)((?:\.\w+)*)$')
_DOWNSAMPLE_KEY = re.compile(r'^downsample_layers\.(\d+)\.(\d+)\.')
_NUM_STAGES = 4


def detect_convnext(keys: Set[str]) -> bool:
    """Whether official state-dict keys are those of a KW ConvNeXt.

    Args:
        keys (set[str]): Keys of an official state dict.

    Returns:
        bool: True for the ConvNeXt layout (``downsample_layers``,
        ``stages``, a final ``norm`` and a ``head``).
    """
    return ('head.weight' in keys and 'norm.weight' in keys
            and any(k.startswith('downsample_layers.0.') for k in keys)
            and any(k.startswith('stages.0.0.') for k in keys))


def rename_convnext_key(key: str) -> str:
    """Official ConvNeXt key -> mmkw ``ImageClassifier`` key.

    Args:
        key (str): A non-warehouse key of the official state dict.

    Returns:
        str: ``'head.fc.…'`` for the classifier, ``'backbone.…'`` otherwise.

    Raises:
        KeyError: If the key belongs to no module of the official ConvNeXt.

    Example:
        >>> rename_convnext_key('stages.2.4.pwconv1.attention.fc1.bias')
        'backbone.stages.2.4.pointwise_conv1.attention.fc1.bias'
        >>> rename_convnext_key('norm.weight')
        'backbone.norm3.weight'
    """
    if key in ('head.weight', 'head.bias'):
        return f'head.fc.{key[len("head."):]}'
    if key in ('norm.weight', 'norm.bias'):
        return f'backbone.norm{_NUM_STAGES - 1}.{key[len("norm."):]}'
    if _DOWNSAMPLE_KEY.match(key):
        return f'backbone.{key}'
    match = _STAGE_KEY.match(key)
    if match:
        stage, block, module, rest = match.groups()
        if module == 'gamma' and not rest:
            return f'backbone.stages.{stage}.{block}.gamma'
        if module in _BLOCK_MODULES and rest:
            return (f'backbone.stages.{stage}.{block}.'
                    f'{_BLOCK_MODULES[module]}{rest}')
    raise KeyError(
        f'{key!r} is not a key of the official KW ConvNeXt (its modules '
        f'are downsample_layers.I.J, stages.S.B.{{gamma, '
        f'{", ".join(_BLOCK_MODULES)}}}, norm and head)')


CONVNEXT_FAMILY = register_family(
    OfficialFamily(
        name='convnext',
        detect=detect_convnext,
        rename=rename_convnext_key,
        config_pattern='kw*-convnext*_in1k.py'))
