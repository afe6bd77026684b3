"""Recurrent layers against PyTorch (float32 and float64): RNN/GRU/LSTM cells and stacks with
PyTorch's parameter names and state_dict keys, batch_first, initial states, packed
variable-length batches; gradcheck; LayerNormLSTMCell against a PyTorch composition of Ba et
al.'s equations; clear errors for bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import tinygrad_norm as tn
from tinygrad_norm import nn
from tinygrad_norm.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

TOL = {np.float32: dict(atol=2e-5, rtol=1e-4), np.float64: dict(atol=1e-11, rtol=1e-9)}
TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}
MODES = {"rnn_tanh": ("RNN", {}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
         "gru": ("GRU", {}), "lstm": ("LSTM", {})}


def pair(kind: str, kwargs: dict, dtype, *args):
    theirs = getattr(torch.nn, kind)(*args, **kwargs).to(TORCH_DTYPES[dtype])
    ours = getattr(nn, kind)(*args, **kwargs).to(dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def leaves(rng, dtype, *shapes):
    arrays = [rng.uniform(-1, 1, s).astype(dtype) for s in shapes]
    return ([tn.Tensor(a.copy(), requires_grad=True) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])


def flat(outputs) -> list:
    """The tensors of an output structure (output, h_n) or (output, (h_n, c_n)) in order."""
    if isinstance(outputs, (tuple, list)):
        return [t for o in outputs for t in flat(o)]
    return [outputs]


def compare(ours_out, theirs_out, our_inputs, their_inputs, ours, theirs, dtype, rng):
    """Forward outputs, then the gradients of the inputs and parameters through one random
    upstream gradient per output."""
    ours_out, theirs_out = flat(ours_out), flat(theirs_out)
    loss_ours, loss_theirs = 0, 0
    for a, b in zip(ours_out, theirs_out, strict=True):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), **TOL[dtype])
        g = rng.standard_normal(a.shape).astype(dtype)
        loss_ours = loss_ours + (a * tn.Tensor(g)).sum()
        loss_theirs = loss_theirs + (b * torch.from_numpy(g)).sum()
    loss_ours.backward()
    loss_theirs.backward()
    for i, (a, b) in enumerate(zip(our_inputs, their_inputs)):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), err_msg=f"input {i}",
                                   **TOL[dtype])
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), theirs_params[name].grad.numpy(),
                                   err_msg=name, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_stacked_layers_match_pytorch_with_initial_states(mode, batch_first, dtype):
    kind, kwargs = MODES[mode]
    ours, theirs = pair(kind, dict(kwargs, batch_first=batch_first), dtype, 3, 4, 2)
    rng = np.random.default_rng(0)
    x_shape = (2, 5, 3) if batch_first else (5, 2, 3)
    count = 3 if kind == "LSTM" else 2
    our_in, their_in = leaves(rng, dtype, x_shape, *[(2, 2, 4)] * (count - 1))
    state = lambda t: (t[1], t[2]) if kind == "LSTM" else t[1]  # noqa: E731
    compare(ours(our_in[0], state(our_in)), theirs(their_in[0], state(their_in)), our_in,
            their_in, ours, theirs, dtype, rng)


@pytest.mark.parametrize("mode", ["gru", "lstm", "rnn_tanh"])
def test_packed_variable_length_batch_matches_pytorch(mode):
    kind, kwargs = MODES[mode]
    ours, theirs = pair(kind, dict(kwargs, batch_first=True), np.float64, 3, 4, 2)
    rng = np.random.default_rng(1)
    lengths = [3, 6, 1, 4]
    our_in, their_in = leaves(rng, np.float64, (4, 6, 3))
    our_packed = pack_padded_sequence(our_in[0], lengths, batch_first=True,
                                      enforce_sorted=False)
    their_packed = torch.nn.utils.rnn.pack_padded_sequence(their_in[0], lengths,
                                                           batch_first=True,
                                                           enforce_sorted=False)
    np.testing.assert_array_equal(our_packed.batch_sizes, their_packed.batch_sizes.numpy())
    np.testing.assert_array_equal(our_packed.sorted_indices, their_packed.sorted_indices)
    our_out, our_state = ours(our_packed)
    their_out, their_state = theirs(their_packed)
    our_padded, our_lengths = pad_packed_sequence(our_out, batch_first=True)
    their_padded, _ = torch.nn.utils.rnn.pad_packed_sequence(their_out, batch_first=True)
    assert our_lengths.tolist() == lengths
    compare((our_padded, our_state), (their_padded, their_state), our_in, their_in, ours,
            theirs, np.float64, rng)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["RNNCell", "GRUCell", "LSTMCell"])
def test_cells_match_pytorch_batched_and_unbatched(kind, dtype):
    ours, theirs = pair(kind, {}, dtype, 3, 5)
    rng = np.random.default_rng(2)
    count = 3 if kind == "LSTMCell" else 2
    for batch in ((4,), ()):
        our_in, their_in = leaves(rng, dtype, (*batch, 3), *[(*batch, 5)] * (count - 1))
        ours.zero_grad()
        theirs.zero_grad()
        state = (lambda t: (t[1], t[2])) if kind == "LSTMCell" else (lambda t: t[1])
        compare(ours(our_in[0], state(our_in)), theirs(their_in[0], state(their_in)),
                our_in, their_in, ours, theirs, dtype, rng)


def test_initialization_is_pytorchs_uniform_within_one_over_sqrt_hidden():
    hidden = 64
    layer = nn.LSTM(10, hidden, num_layers=2)
    bound = 1 / math.sqrt(hidden)
    values = np.concatenate([p.data.ravel() for p in layer.parameters()])
    assert np.abs(values).max() <= bound
    assert abs(values.std() - bound / math.sqrt(3)) < 0.02 * bound  # U(-b, b) has std b/sqrt(3)
    assert [tuple(p.shape) for p in layer.parameters()] == [
        tuple(p.shape) for p in torch.nn.LSTM(10, hidden, num_layers=2).parameters()]


def torch_layer_norm_lstm(x, h, c, params: dict):
    """Ba et al. (2016) eq. 20-22 written with PyTorch ops."""
    hidden = h.shape[-1]

    def ln(v, name):
        return TF.layer_norm(v, (v.shape[-1],), params[f"{name}.weight"], params[f"{name}.bias"],
                             1e-5)

    gates = ln(x @ params["weight_ih"].T, "layernorm_ih") + ln(h @ params["weight_hh"].T,
                                                               "layernorm_hh")
    i, f, g, o = gates.split(hidden, dim=-1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * ln(c, "layernorm_c").tanh(), c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_lstm_cell_matches_ba_et_al_written_in_pytorch(dtype):
    cell = nn.LayerNormLSTMCell(3, 5).to(dtype)
    rng = np.random.default_rng(3)
    for p in cell.parameters():  # non-trivial gains and shifts
        p.data[...] = rng.uniform(0.5, 1.5, p.shape).astype(dtype)
    params = {name: torch.tensor(p.data, requires_grad=True)
              for name, p in cell.named_parameters()}
    assert set(params) == {"weight_ih", "weight_hh", "layernorm_ih.weight", "layernorm_ih.bias",
                           "layernorm_hh.weight", "layernorm_hh.bias", "layernorm_c.weight",
                           "layernorm_c.bias"}
    our_in, their_in = leaves(rng, dtype, (4, 3), (4, 5), (4, 5))
    theirs = torch_layer_norm_lstm(*their_in, params)
    ours = cell(our_in[0], (our_in[1], our_in[2]))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), **TOL[dtype])
    g = [rng.standard_normal(a.shape).astype(dtype) for a in ours]
    (ours[0] * tn.Tensor(g[0]) + ours[1] * tn.Tensor(g[1])).sum().backward()
    loss = (theirs[0] * torch.from_numpy(g[0]) + theirs[1] * torch.from_numpy(g[1])).sum()
    loss.backward()
    for a, b in zip(our_in, their_in):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), **TOL[dtype])
    for name, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), params[name].grad.numpy(), err_msg=name,
                                   **TOL[dtype])


GRADCHECK = {
    "rnn_cell": (lambda: nn.RNNCell(2, 3), 2),
    "gru_cell": (lambda: nn.GRUCell(2, 3), 2),
    "lstm_cell": (lambda: nn.LSTMCell(2, 3), 3),
    "layer_norm_lstm_cell": (lambda: nn.LayerNormLSTMCell(2, 3), 3),
}


@pytest.mark.parametrize("name", GRADCHECK)
def test_cells_pass_gradcheck(name):
    make, count = GRADCHECK[name]
    cell = make().double()
    rng = np.random.default_rng(4)
    inputs = [tn.Tensor(rng.uniform(-1, 1, s), requires_grad=True)
              for s in [(3, 2), (3, 3), (3, 3)][:count]]

    def run(x, h, *rest):
        params = rest[count - 2:]
        assert len(params) == len(list(cell.parameters()))
        out = cell(x, (h, rest[0])) if count == 3 else cell(x, h)
        return out[0] * out[1] if count == 3 else out

    assert tn.gradcheck(run, (*inputs, *cell.parameters()))


def test_packed_two_layer_lstm_passes_gradcheck():
    lstm = nn.LSTM(2, 3, num_layers=2, batch_first=True).double()
    x = tn.Tensor(np.random.default_rng(5).uniform(-1, 1, (3, 4, 2)), requires_grad=True)

    def run(x, *params):
        out, (h, c) = lstm(pack_padded_sequence(x, [2, 4, 1], batch_first=True,
                                                enforce_sorted=False))
        return pad_packed_sequence(out, batch_first=True)[0].sum() + (h * c).sum()

    assert tn.gradcheck(run, (x, *lstm.parameters()))


@pytest.mark.parametrize("call, error, message", [
    (lambda: nn.LSTM(3, 4)(tn.randn(5, 2, 2)), ValueError, "input_size. Expected 3, got 2"),
    (lambda: nn.GRU(3, 4)(tn.randn(5, 2, 3), tn.randn(1, 3, 4)), ValueError,
     r"hidden state h_0 of size \[1, 2, 4\], got \[1, 3, 4\]"),
    (lambda: nn.LSTM(3, 4)(tn.randn(5, 2, 3), tn.randn(1, 2, 4)), ValueError, "tuple"),
    (lambda: nn.LSTMCell(3, 4)(tn.randn(2, 3), (tn.randn(2, 4), tn.randn(3, 4))), ValueError,
     "cell state"),
    (lambda: nn.RNN(3, 4, bidirectional=True), ValueError, "bidirectional"),
    (lambda: nn.RNN(3, 4, nonlinearity="gelu"), ValueError, "nonlinearity"),
    (lambda: nn.GRU(3, 0), ValueError, "hidden_size must be a positive int"),
    (lambda: nn.RNN(3, 4)(tn.randn(3)), ValueError, "2D or 3D"),
    (lambda: pack_padded_sequence(tn.randn(4, 2, 3), [2, 3]), ValueError, "sorted"),
    (lambda: pack_padded_sequence(tn.randn(4, 2, 3), [5, 3]), ValueError, "1..4"),
    (lambda: pack_padded_sequence(tn.randn(4, 2, 3), [4]), ValueError, "1 lengths for a batch"),
])
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_dropout_between_layers_only_in_training():
    tn.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    plain = nn.LSTM(3, 4, num_layers=2)
    plain.load_state_dict(lstm.state_dict())
    x = tn.randn(5, 2, 3)
    out_train = lstm(x)[0].detach().numpy()
    lstm.eval()
    np.testing.assert_array_equal(lstm(x)[0].detach().numpy(), plain(x)[0].detach().numpy())
    assert np.abs(out_train - plain(x)[0].detach().numpy()).max() > 1e-3
