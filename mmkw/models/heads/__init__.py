"""KernelWarehouse classification heads."""
from .kw_linear_head import KWLinearClsHead

__all__ = ['KWLinearClsHead']
