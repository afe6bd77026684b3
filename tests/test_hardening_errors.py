"""Arguments PyTorch refuses are refused here too, with a message saying what was wrong; state
dicts load as PyTorch loads them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tinygrad_norm as tn
from tinygrad_norm.nn import functional as F


@pytest.mark.parametrize("call", [
    lambda m: m.layer_norm(m.ones(2, 5), (5.5,)),
    lambda m: m.rms_norm(m.ones(2, 5), [5.0]),
], ids=["layer_norm", "rms_norm"])
def test_float_sizes_in_normalized_shape_are_type_errors_like_torch(call):
    with pytest.raises(TypeError):
        call(_Torch)
    with pytest.raises(TypeError, match="must be an int"):
        call(_Ours)


class _Torch:
    ones = staticmethod(torch.ones)
    layer_norm = staticmethod(torch.nn.functional.layer_norm)
    rms_norm = staticmethod(torch.nn.functional.rms_norm)


class _Ours:
    ones = staticmethod(tn.ones)
    layer_norm = staticmethod(F.layer_norm)
    rms_norm = staticmethod(F.rms_norm)


def test_float_tensor_sizes_are_type_errors_like_torch():
    with pytest.raises(TypeError):
        torch.zeros(2.5)
    with pytest.raises(TypeError, match="tuple of ints"):
        tn.zeros(2.5)


def test_state_dict_without_num_batches_tracked_loads_like_torch():
    ours, theirs = tn.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    ours.num_batches_tracked.data[...] = 7
    theirs.num_batches_tracked.fill_(7)
    state = {k: v for k, v in theirs.state_dict().items() if k != "num_batches_tracked"}
    theirs.load_state_dict(state)
    ours.load_state_dict({k: v.numpy() for k, v in state.items()})
    assert int(ours.num_batches_tracked.numpy()) == int(theirs.num_batches_tracked) == 7


def test_a_none_value_in_a_state_dict_says_so():
    layer = tn.nn.Linear(2, 3)
    with pytest.raises(RuntimeError, match="'weight'.*got NoneType") as error:
        layer.load_state_dict({"weight": None, "bias": np.zeros(3)})
    assert "size mismatch" not in str(error.value)
