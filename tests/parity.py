"""The comparison helpers of every test: one tolerance table, one parity check.

`assert_close(actual, expected, dtype, what, against)` is the one comparison: `against`
"reference" means the float64 spec (kernels.reference: only our rounding is measured),
"torch" means PyTorch in the same dtype (both libraries' rounding). `atol_scale` widens the
absolute tolerance where the comparison is ill-conditioned for a stated reason.

`check_op(shapes, torch_fn, our_fn)` draws random inputs of the given shapes, runs both
functions, and compares the forward output and the gradient of every input (through a random
upstream gradient, so that a wrong sign or a transposed gradient cannot cancel out).
"""

from __future__ import annotations

import numpy as np
import torch

import tinygrad_norm as tn

TOLERANCES = {
    "reference": {np.float32: dict(atol=5e-5, rtol=2e-5), np.float64: dict(atol=1e-11, rtol=1e-10)},
    "torch": {np.float32: dict(atol=1e-5, rtol=1e-4), np.float64: dict(atol=1e-10, rtol=1e-8)},
}


def assert_close(actual, expected, dtype, what: str = "", against: str = "reference",
                 atol_scale: float = 1.0) -> None:
    """actual has `dtype` and matches expected within the table's tolerance."""
    tol = TOLERANCES[against][np.dtype(dtype).type]
    actual = np.asarray(actual)
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * atol_scale,
                               err_msg=what)


def check_op(shapes, torch_fn, our_fn, dtype=np.float64, low=-2.0, high=2.0, seed=0,
             grad=True, atol=None, rtol=None):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(low, high, size=s).astype(dtype) for s in shapes]
    tol = dict(TOLERANCES["torch"][dtype])
    tol.update({k: v for k, v in dict(atol=atol, rtol=rtol).items() if v is not None})

    ours = [tn.Tensor(a.copy(), requires_grad=grad) for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=grad) for a in arrays]
    out_ours, out_theirs = our_fn(*ours), torch_fn(*theirs)
    assert out_ours.shape == tuple(out_theirs.shape)
    assert out_ours.dtype == np.dtype(str(out_theirs.dtype).replace("torch.", ""))
    np.testing.assert_allclose(out_ours.detach().numpy(), out_theirs.detach().numpy(), **tol)
    if not grad:
        return
    upstream = rng.standard_normal(out_ours.shape).astype(dtype)
    out_ours.backward(upstream)
    out_theirs.backward(torch.from_numpy(upstream))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.grad is not None, f"input {i} got no gradient"
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), err_msg=f"input {i}", **tol)
