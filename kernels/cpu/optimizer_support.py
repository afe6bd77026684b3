"""What the optimizer kernels (sgd.py, adam.py) share: exact compilation and the thread split.

The updates are compiled with fastmath off ("arcp" would turn m/denom into m·(1/denom),
"contract" would fuse products as LLVM sees fit) and do each operation in the parameter's
dtype, with the Python-float hyper-parameters rounded to that dtype first, as PyTorch's
for-loop implementation does. Where PyTorch's CPU kernels fuse a multiply-add (add with
alpha, lerp, addcmul: measured, they round once), the update calls `fma` explicitly, so that
float32 SGD matches torch.optim.SGD bit for bit; Adam differs by PyTorch's sqrt, which on
AVX-512 is not correctly rounded (1 ulp on 0.7 % of float32 values, measured).
"""

from __future__ import annotations

import functools

import numba
from numba.extending import intrinsic

from kernels.cpu.stats import SERIAL_MAX_ELEMENTS

exact_jit = functools.partial(numba.njit, cache=True, fastmath=False, error_model="numpy")
exact_parallel_jit = functools.partial(exact_jit, parallel=True)


@intrinsic
def fma(typingctx, a, b, c):
    """a·b + c rounded once (LLVM's llvm.fma); a, b and c of one float type."""
    if not (a == b == c and isinstance(a, numba.types.Float)):
        return None
    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


def num_chunks(size: int) -> int:
    """1 (the serial kernel) for a small array, else one contiguous chunk per thread."""
    return 1 if size <= SERIAL_MAX_ELEMENTS else numba.get_num_threads()
