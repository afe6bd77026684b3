"""One BLAS thread for the examples' small matrix products.

Our matrices are tiny (e.g. 60x100 @ 100x100). OpenBLAS splits them across threads anyway, and
on a busy 2-core machine its waiting threads make each product slow: measured 3.5 ms instead of
20 us per 60x100 @ 100x100 product, which made training 3 to 20 times slower. threadpoolctl
comes with scikit-learn, which the examples need for the digits data anyway.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread() -> threadpool_limits:
    """A context manager that limits BLAS to one thread inside it."""
    return threadpool_limits(limits=1, user_api="blas")
