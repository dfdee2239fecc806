"""Mixed-precision training on the CPU.

MMEngine's ``AmpOptimWrapper`` refuses to be built without CUDA (or an NPU,
MLU, MUSA device), so ``tools/train.py --amp`` on a CPU-only machine would
end in an ``AssertionError``. :class:`CPUAutocastOptimWrapper` is what
``--amp`` picks there: the forward pass and loss of every training step run
under ``torch.autocast('cpu', dtype=torch.bfloat16)``. bfloat16 has the
exponent range of float32, so no loss scaling is needed; the parameters,
gradients and optimizer state stay float32.
"""
from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

__all__ = ['CPUAutocastOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """An :class:`~mmengine.optim.OptimWrapper` whose training steps run
    under CPU autocast (bfloat16 by default).

    Registered in MMEngine's root ``OPTIM_WRAPPERS``, so every scope
    (``mmpretrain``, ``mmdet``, ``mmkw``) builds it from
    ``optim_wrapper=dict(type='CPUAutocastOptimWrapper', optimizer=...)``.

    Args:
        dtype (str or torch.dtype): The autocast dtype, ``'bfloat16'`` or
            ``'float16'``. Defaults to ``'bfloat16'``.
        **kwargs: Arguments of :class:`~mmengine.optim.OptimWrapper`
            (``optimizer``, ``accumulative_counts``, ``clip_grad``).

    Example:
        >>> optim_wrapper = dict(
        ...     type='CPUAutocastOptimWrapper',
        ...     optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
    """

    valid_dtypes = ('bfloat16', 'float16')

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs):
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).replace('torch.', '')
        if dtype not in self.valid_dtypes:
            raise ValueError(f'dtype must be one of {self.valid_dtypes}, '
                             f'got {dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context of ``OptimWrapper`` plus CPU
        autocast to :attr:`cast_dtype`."""
        with super().optim_context(model), torch.autocast(
                'cpu', dtype=self.cast_dtype):
            yield
