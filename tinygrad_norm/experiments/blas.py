"""One BLAS thread for the examples' small matrix products.

Our matrices are tiny (e.g. 60x100 @ 100x100). OpenBLAS splits them across threads anyway, and
on a busy 2-core machine its waiting threads make each product slow: measured 3.5 ms instead of
20 us per 60x100 @ 100x100 product, which made training 3 to 20 times slower. Still true with
OpenBLAS's jobs on Numba's threads (kernels/cpu/blas_pool.py): `tinygrad-norm ics b d e f`
took 46.7 and 47.5 s with one BLAS thread, 50.9 and 52.3 s with two (part b 15.7-15.9 against
18.8-19.1 s at twice the CPU time; alternating, one AMD EPYC machine). threadpoolctl
comes with scikit-learn, which the examples need for the digits data anyway.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread() -> threadpool_limits:
    """A context manager that limits BLAS to one thread inside it."""
    return threadpool_limits(limits=1, user_api="blas")
