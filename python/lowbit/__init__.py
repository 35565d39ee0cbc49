"""lowbit: run and compress large language models in little memory (Python binding).

A thin ctypes layer over liblowbit.so: every computation happens in the C library. Importing
never fails; the library is located on first use (LOWBIT_LIBRARY, the repository's build
folders, the install prefix, then the system's library path), and a missing library raises
ImportError naming every path searched. is_available() tells without raising."""
from ._lib import LowbitError, is_available
from .hub import pull
from .imatrix import Imatrix, imatrix
from .delta import (INT8_BLOCK, compress_delta_int8, compress_delta_sparse, decompress_delta_int8,
                    decompress_delta_sparse)
from .memory import MemoryMonitor, MemoryPressure, MemorySnapshot, PsiAvg, format_size, parse_size
from .model import Completion, Model, Tokenizer
from .quant import dequantize, quantize

__version__ = "0.1.0"

__all__ = [
    "LowbitError", "is_available", "library_path", "version", "cpu_kernels",
    "compress_delta_sparse", "decompress_delta_sparse", "compress_delta_int8", "decompress_delta_int8", "INT8_BLOCK",
    "quantize", "dequantize", "imatrix", "Imatrix",
    "MemoryMonitor", "MemoryPressure", "MemorySnapshot", "PsiAvg", "parse_size", "format_size",
    "Model", "Tokenizer", "Completion", "pull",
]


def library_path():
    """The path of the loaded liblowbit.so (loads it; ImportError when missing)."""
    from . import _lib
    return _lib.lib()._lowbit_path


def version():
    """The C library's version string."""
    from . import _lib
    return _lib.lib().lb_version().decode()


def cpu_kernels():
    """The CPU kernel level in use, e.g. "avx512 (vnni bf16 avx-vnni)"; LOWBIT_CPU=scalar|avx2
    (set before the library loads) forces a lower one."""
    import ctypes
    from . import _lib
    buf = ctypes.create_string_buffer(96)
    _lib.lib().lb_cpu_kernels(buf, len(buf))
    return buf.value.decode()
