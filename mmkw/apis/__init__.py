"""mmkw's models by name (its model index)."""
from .model_index import (config_path, list_model_names, model_index_root,
                          register_model_index, released_weights)

__all__ = [
    'config_path', 'list_model_names', 'model_index_root',
    'register_model_index', 'released_weights'
]
