"""Converters from the official KernelWarehouse checkpoints to mmkw.

Each architecture family registers an :class:`OfficialFamily` (how to
recognise its keys and rename them); the generic machinery in
:mod:`mmkw.converters.official` maps the warehouses, checks the result
against the model and finds the matching mmkw config.
"""
from . import convnext  # noqa: F401  (registers the family)
from . import mobilenet_v2  # noqa: F401  (registers the family)
from . import resnet  # noqa: F401  (registers the family)
from .official import (OFFICIAL_WAREHOUSE_PREFIX, ConversionReport,
                       OfficialFamily, convert_official_state_dict,
                       detect_family, find_matching_config,
                       load_official_checkpoint, model_warehouse_keys,
                       register_family, registered_families)

__all__ = [
    'OFFICIAL_WAREHOUSE_PREFIX', 'ConversionReport', 'OfficialFamily',
    'convert_official_state_dict', 'detect_family', 'find_matching_config',
    'load_official_checkpoint', 'model_warehouse_keys', 'register_family',
    'registered_families'
]
