"""Compile every CUDA kernel to PTX, without a GPU: `python -m kernels.cuda.ptx_check`.

The CUDA simulator checks no types, so a kernel that runs there can still fail to compile
(a float64 literal meeting a float32 array, a None argument that is not compiled out).
`numba.cuda.compile_ptx` runs the real front end and NVVM (numba-cuda[cu13] ships NVVM;
no driver is needed). Each kernel is compiled with the argument types its wrapper passes:
float32 for compute capabilities 8.0 and 9.0, float64 for 8.0, and both the affine and
the None (affine=False, RMSNorm) variants. Must run with the simulator off.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import time

from numba import config, types

F64 = types.float64
NONE = types.none


def _array(dtype, ndim: int):
    return types.Array(dtype, ndim, "C")


def kernel_signatures(dtype) -> list[tuple[str, object, tuple]]:
    """(name, kernel, argument types) for every launch the wrappers make, for `dtype`."""
    from kernels.cuda import batch_norm, group_norm, helpers, layer_norm

    v, m2, m3 = _array(dtype, 1), _array(dtype, 2), _array(dtype, 3)
    p2, p3 = _array(F64, 2), _array(F64, 3)
    i64, flag = types.int64, types.boolean
    return [
        ("layer_norm.forward_warp_rows", layer_norm.forward_warp_rows,
         (m2, v, v, F64, i64, i64, m2, v, v, NONE)),
        ("group_norm: forward_warp_rows", layer_norm.forward_warp_rows,
         (m2, v, v, F64, i64, i64, m2, v, v, v)),
        ("rms_norm: forward_warp_rows", layer_norm.forward_warp_rows,
         (m2, NONE, NONE, F64, i64, i64, m2, NONE, v, NONE)),
        ("layer_norm.forward_block_rows", layer_norm.forward_block_rows,
         (m2, v, v, F64, i64, i64, flag, m2, v, v, NONE)),
        ("group_norm: forward_block_rows", layer_norm.forward_block_rows,
         (m2, v, v, F64, i64, i64, flag, m2, v, v, v)),
        ("rms_norm: forward_block_rows", layer_norm.forward_block_rows,
         (m2, NONE, NONE, F64, i64, i64, flag, m2, NONE, v, NONE)),
        ("layer_norm.backward_warp_rows", layer_norm.backward_warp_rows,
         (m2, m2, v, v, v, m2, m2, m2)),
        ("rms_norm: backward_warp_rows", layer_norm.backward_warp_rows,
         (m2, m2, NONE, v, NONE, m2, m2, NONE)),
        ("layer_norm.backward_block_rows", layer_norm.backward_block_rows,
         (m2, m2, v, v, v, m2, m2, m2)),
        ("rms_norm: backward_block_rows", layer_norm.backward_block_rows,
         (m2, m2, NONE, v, NONE, m2, m2, NONE)),
        ("helpers.column_sums", helpers.column_sums, (m2, v, m2, v)),
        ("helpers.column_sums (float64 partials)", helpers.column_sums, (p2, v, p2, v)),
        ("group_norm.backward_sets", group_norm.backward_sets,
         (m2, m2, v, v, i64, i64, v, m2, p2, p2)),
        ("group_norm.backward_sets (no affine)", group_norm.backward_sets,
         (m2, m2, v, v, i64, i64, NONE, m2, p2, p2)),
        ("batch_norm.channel_moments", batch_norm.channel_moments, (m3, p3)),
        ("batch_norm.normalize", batch_norm.normalize, (m3, p3, v, v, F64, m3, v, v, v)),
        ("batch_norm.normalize (no affine)", batch_norm.normalize,
         (m3, p3, NONE, NONE, F64, m3, v, v, v)),
        ("batch_norm.normalize_eval", batch_norm.normalize_eval, (m3, v, v, v, v, F64, m3)),
        ("batch_norm.normalize_eval (no affine)", batch_norm.normalize_eval,
         (m3, v, v, NONE, NONE, F64, m3)),
        ("batch_norm.channel_gradient_sums", batch_norm.channel_gradient_sums, (m3, m3, v, p3)),
        ("batch_norm.input_gradient", batch_norm.input_gradient,
         (m3, m3, v, v, v, F64, flag, p3, m3, v, v)),
        ("batch_norm.input_gradient (no affine)", batch_norm.input_gradient,
         (m3, m3, v, v, NONE, F64, flag, p3, m3, v, v)),
    ]


TARGETS = (("float32", (8, 0)), ("float32", (9, 0)), ("float64", (8, 0)))


def compile_one(dtype_name: str, cc: tuple[int, int], index: int) -> str | None:
    """Compile the index-th kernel signature for one dtype and compute capability; return
    what went wrong, or None."""
    from numba import cuda

    name, kernel, signature = kernel_signatures(getattr(types, dtype_name))[index]
    where = f"{name} {dtype_name} sm_{cc[0]}{cc[1]}"
    try:
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
    except Exception as error:  # report every kernel, not just the first failure
        return f"{where}: {type(error).__name__}: {error}"
    return None if ".entry" in ptx else f"{where}: no kernel entry in the PTX"


def compile_all(targets=TARGETS) -> list[str]:
    """compile_one for every kernel and target, spread over one process per core (NVVM
    compiles serially); returns the failures."""
    jobs = [(dtype, cc, index) for dtype, cc in targets
            for index in range(len(kernel_signatures(getattr(types, dtype))))]
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        results = pool.map(compile_one, *zip(*jobs), chunksize=4)
        return [failure for failure in results if failure is not None]


def main() -> int:
    if config.ENABLE_CUDASIM:
        print("compile_ptx needs the real numba.cuda: unset NUMBA_ENABLE_CUDASIM", file=sys.stderr)
        return 2
    start = time.perf_counter()
    failures = compile_all()
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f"compiled {'with failures' if failures else 'all kernels'} in "
          f"{time.perf_counter() - start:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
