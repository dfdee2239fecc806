"""The optional compiled mixing kernel (``mmkw/cnn/csrc/mixing.cpp``).

``setup.py`` builds it where torch and a C++ compiler are at hand; on an
x86-64 CPU with AVX-512 the fast path then runs its float32 mixing products
with it (:func:`~mmkw.cnn.blocked.kw_conv_blocked`). Without it (no
compiler, another CPU, or a torch it was not built against) everything runs
as before, through oneDNN or ``torch.mm``.
"""
import torch

try:
    from . import _native
except ImportError:  # not built, or built against another torch
    _native = None

__all__ = ['available', 'mix']

#: Asked once: the fast path asks for every mixing product.
_AVAILABLE = _native is not None and _native.available()


def available() -> bool:
    """Whether the kernel is built and this CPU runs it."""
    return _AVAILABLE


def mix(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = a @ b`` for float32 CPU matrices whose rows are contiguous
    (``b`` and ``out`` may be row-strided views, e.g. a block of cell rows
    or of the warehouse gradient); returns ``out``."""
    _native.mix(a, b, out)
    return out
