"""The optional compiled mixing kernel (``mmkw/cnn/csrc/mixing.cpp``).

``setup.py`` builds it where torch and a C++ compiler are at hand; on an
x86-64 CPU with AVX-512 the fast path then runs its float32 mixing products
with it (:func:`~mmkw.cnn.blocked.kw_conv_blocked`), and its bf16 ones
(autocast) where the CPU also has AVX512_BF16. Without it (no compiler,
another CPU, or a torch it was not built against) everything runs as
before, through oneDNN or ``torch.mm``.
"""
import torch

try:
    from . import _native
except ImportError:  # not built, or built against another torch
    _native = None

__all__ = ['available', 'mix']

#: Asked once: the fast path asks for every mixing product.
_AVAILABLE = {
    torch.float32: _native is not None and _native.available(),
    torch.bfloat16: _native is not None and _native.available_bf16(),
}


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the kernel is built and this CPU runs it for operands of
    ``dtype`` (float32: AVX-512; bfloat16: AVX512_BF16 too)."""
    return _AVAILABLE.get(dtype, False)


def mix(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = a @ b`` for CPU matrices whose rows are contiguous (``b`` and
    ``out`` may be row-strided views, e.g. a block of cell rows or of the
    warehouse gradient); returns ``out``.

    ``a`` and ``b`` are both float32 (``out`` float32) or both bfloat16
    (``out`` bfloat16, or float32 to keep the float32 sums: the products
    are accumulated in float32 either way).
    """
    _native.mix(a, b, out)
    return out
