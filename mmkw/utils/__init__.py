"""Small torch-only utilities."""
from .memory import saved_tensor_bytes

__all__ = ['saved_tensor_bytes']
