"""Recurrent layers with PyTorch's names, parameters, initialization and state_dict keys:
RNNCell, GRUCell, LSTMCell, the multi-layer RNN, GRU and LSTM, and LayerNormLSTMCell (Ba et
al. 2016). Everything is built from differentiable Tensor ops, so autograd runs through time.

Variable-length batches work as in PyTorch: pack them with `nn.utils.rnn.pack_padded_sequence`
and give the PackedSequence to RNN/GRU/LSTM; at step t only the batch_sizes[t] sequences still
running are computed, and h_n holds each sequence's state after its own last step.
"""

from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor, cat, stack, zeros
from . import functional as F
from . import init
from .linear import empty_parameter
from .module import Module
from .normalization import LayerNorm
from .utils.rnn import PackedSequence

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 3, "LSTM": 4}


def _uniform_init(module: Module, hidden_size: int) -> None:
    """PyTorch's init for every recurrent weight and bias: U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for param in module.parameters():
        init.uniform_(param, -bound, bound)


def _gate(gates: Tensor, k: int, hidden: int) -> Tensor:
    return gates[..., k * hidden:(k + 1) * hidden]


def rnn_step(x: Tensor, h: Tensor, w_ih, w_hh, b_ih, b_hh, nonlinearity: str) -> Tensor:
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)."""
    pre = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    return pre.tanh() if nonlinearity == "tanh" else pre.relu()


def gru_step(x: Tensor, h: Tensor, w_ih, w_hh, b_ih, b_hh) -> Tensor:
    """PyTorch's GRU: r, z from both inputs; n = tanh(W_in x + b_in + r (W_hn h + b_hn));
    h' = (1 - z) n + z h."""
    hidden = h.shape[-1]
    gi, gh = F.linear(x, w_ih, b_ih), F.linear(h, w_hh, b_hh)
    r = (_gate(gi, 0, hidden) + _gate(gh, 0, hidden)).sigmoid()
    z = (_gate(gi, 1, hidden) + _gate(gh, 1, hidden)).sigmoid()
    n = (_gate(gi, 2, hidden) + r * _gate(gh, 2, hidden)).tanh()
    return (1 - z) * n + z * h


def lstm_cell_update(gates: Tensor, c: Tensor, cell_norm=None) -> tuple[Tensor, Tensor]:
    """From the summed gate pre-activations (i, f, g, o, PyTorch's order) and the cell state:
    c' = f c + i g and h' = o tanh(c'), or o tanh(cell_norm(c')) for a normalized cell."""
    hidden = c.shape[-1]
    i, f = _gate(gates, 0, hidden).sigmoid(), _gate(gates, 1, hidden).sigmoid()
    g, o = _gate(gates, 2, hidden).tanh(), _gate(gates, 3, hidden).sigmoid()
    c_new = f * c + i * g
    return o * (c_new if cell_norm is None else cell_norm(c_new)).tanh(), c_new


def lstm_step(x: Tensor, state: tuple, w_ih, w_hh, b_ih, b_hh) -> tuple[Tensor, Tensor]:
    h, c = state
    return lstm_cell_update(F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh), c)


def _check_input(name: str, input: Tensor, input_size: int, ndims: tuple) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim not in ndims:
        raise ValueError(f"{name}: expected input to be {' or '.join(f'{d}D' for d in ndims)}"
                         f", got {input.ndim}D tensor of shape {list(input.shape)}")
    if input.shape[-1] != input_size:
        raise ValueError(f"{name}: input.size(-1) must be equal to input_size. Expected "
                         f"{input_size}, got {input.shape[-1]}")


def _check_state(name: str, state: Tensor, expected: tuple, what: str) -> None:
    if not isinstance(state, Tensor) or tuple(state.shape) != expected:
        got = list(state.shape) if isinstance(state, Tensor) else type(state).__name__
        raise ValueError(f"{name}: expected {what} of size {list(expected)}, got {got}")


class _CellBase(Module):
    """weight_ih (G*hidden, input), weight_hh (G*hidden, hidden), bias_ih, bias_hh."""

    num_gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        for what, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{type(self).__name__}: {what} must be a positive int, got "
                                 f"{value!r}")
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bias
        rows = self.num_gates * self.hidden_size
        self.weight_ih = empty_parameter((rows, self.input_size), device, dtype)
        self.weight_hh = empty_parameter((rows, self.hidden_size), device, dtype)
        if bias:
            self.bias_ih = empty_parameter((rows,), device, dtype)
            self.bias_hh = empty_parameter((rows,), device, dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        _uniform_init(self, self.hidden_size)

    def _params(self) -> tuple:
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _prepare(self, input: Tensor, hx: Tensor | None) -> tuple[Tensor, Tensor | None, bool]:
        """Batch an unbatched (input_size,) input, check hx, and give zeros for hx=None."""
        name = type(self).__name__
        _check_input(name, input, self.input_size, (1, 2))
        unbatched = input.ndim == 1
        if unbatched:
            input = input.unsqueeze(0)
            hx = None if hx is None else hx.unsqueeze(0)
        if hx is not None:
            _check_state(name, hx, (input.shape[0], self.hidden_size), "hidden state")
        return input, hx, unbatched

    def _zeros(self, input: Tensor) -> Tensor:
        return zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_CellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu with nonlinearity='relu')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity!r}; use 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, hx, unbatched = self._prepare(input, hx)
        h = rnn_step(input, self._zeros(input) if hx is None else hx, *self._params(),
                     self.nonlinearity)
        return h.squeeze(0) if unbatched else h


class GRUCell(_CellBase):
    """One GRU step (PyTorch's equations, gates r, z, n)."""

    num_gates = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, hx, unbatched = self._prepare(input, hx)
        h = gru_step(input, self._zeros(input) if hx is None else hx, *self._params())
        return h.squeeze(0) if unbatched else h


class LSTMCell(_CellBase):
    """One LSTM step; hx = (h, c) or None; returns (h', c'). Gates i, f, g, o."""

    num_gates = 4

    def _state(self, input: Tensor, hx) -> tuple[Tensor, Tensor, bool]:
        name = type(self).__name__
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise ValueError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        h, c = (None, None) if hx is None else hx
        input, h, unbatched = self._prepare(input, h)
        if c is not None:
            c = c.unsqueeze(0) if unbatched else c
            _check_state(name, c, (input.shape[0], self.hidden_size), "cell state")
        zero = self._zeros(input)
        return input, (zero if h is None else h, zero if c is None else c), unbatched

    def _gates(self, input: Tensor, h: Tensor) -> Tensor:
        return F.linear(input, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh,
                                                                         self.bias_hh)

    def _update(self, gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return lstm_cell_update(gates, c)

    def forward(self, input: Tensor, hx=None) -> tuple[Tensor, Tensor]:
        input, (h, c), unbatched = self._state(input, hx)
        h, c = self._update(self._gates(input, h), c)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)


class LayerNormLSTMCell(LSTMCell):
    """The layer-normalized LSTM of Ba et al. (2016, "Layer Normalization", eq. 20-22):
    gates = LN(W_ih x) + LN(W_hh h), each LN over the 4*hidden gate pre-activations with its
    own gain and shift (the two shifts are the gates' bias, so there is no bias_ih/bias_hh);
    c' = f c + i g; h' = o tanh(LN(c')). The statistics are per sample and per step: nothing
    is tracked across time or batches. Submodules layernorm_ih, layernorm_hh, layernorm_c run
    our LayerNorm kernels; bias=False drops their shifts."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, eps: float = 1e-5,
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias=False, device=device, dtype=dtype)
        self.bias = bias
        kwargs = dict(eps=eps, bias=bias, device=device, dtype=dtype)
        self.layernorm_ih = LayerNorm(4 * self.hidden_size, **kwargs)
        self.layernorm_hh = LayerNorm(4 * self.hidden_size, **kwargs)
        self.layernorm_c = LayerNorm(self.hidden_size, **kwargs)

    def _gates(self, input: Tensor, h: Tensor) -> Tensor:
        return (self.layernorm_ih(F.linear(input, self.weight_ih))
                + self.layernorm_hh(F.linear(h, self.weight_hh)))

    def _update(self, gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return lstm_cell_update(gates, c, self.layernorm_c)


class RNNBase(Module):
    """Stacked recurrent layers over (L, N, input_size) (or (N, L, ...) with batch_first, or
    unbatched (L, input_size), or a PackedSequence). Parameters weight_ih_l{k}, weight_hh_l{k},
    bias_ih_l{k}, bias_hh_l{k}, as in PyTorch; dropout between layers in training."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        name = type(self).__name__
        if bidirectional:
            raise ValueError(f"{name}: bidirectional=True is not implemented here; run a "
                             f"second {name} on the reversed sequences")
        for what, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name}: {what} must be a positive int, got {value!r}")
        if not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError(f"{name}: dropout should be a number in range [0, 1], got "
                             f"{dropout!r}")
        self.mode, self.input_size, self.hidden_size = mode, int(input_size), int(hidden_size)
        self.num_layers, self.bias, self.batch_first = int(num_layers), bias, batch_first
        self.dropout, self.bidirectional = float(dropout), False
        rows = GATES[mode] * self.hidden_size
        for layer in range(self.num_layers):
            features = self.input_size if layer == 0 else self.hidden_size
            setattr(self, f"weight_ih_l{layer}", empty_parameter((rows, features), device, dtype))
            setattr(self, f"weight_hh_l{layer}",
                    empty_parameter((rows, self.hidden_size), device, dtype))
            if bias:
                setattr(self, f"bias_ih_l{layer}", empty_parameter((rows,), device, dtype))
                setattr(self, f"bias_hh_l{layer}", empty_parameter((rows,), device, dtype))
        self.reset_parameters()
        if device is not None:
            self.to(device)

    def reset_parameters(self) -> None:
        _uniform_init(self, self.hidden_size)

    def _layer_params(self, layer: int) -> tuple:
        return tuple(getattr(self, f"{kind}_l{layer}", None)
                     for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _step(self, x: Tensor, state: tuple, params: tuple) -> tuple:
        """One time step of one layer; the state is a tuple (h,) or (h, c)."""
        if self.mode == "LSTM":
            return lstm_step(x, state, *params)
        if self.mode == "GRU":
            return (gru_step(x, state[0], *params),)
        return (rnn_step(x, state[0], *params, "tanh" if self.mode == "RNN_TANH" else "relu"),)

    def _steps(self, input) -> tuple[list[Tensor], list[int], PackedSequence | None, bool]:
        """The per-step inputs (step t holds batch_sizes[t] rows) of a padded or packed input."""
        name = type(self).__name__
        if isinstance(input, PackedSequence):
            _check_input(name, input.data, self.input_size, (2,))
            sizes = [int(b) for b in input.batch_sizes]
            bounds = np.cumsum([0, *sizes])
            return ([input.data[bounds[t]:bounds[t + 1]] for t in range(len(sizes))], sizes,
                    input, False)
        _check_input(name, input, self.input_size, (2, 3))
        unbatched = input.ndim == 2
        if unbatched:
            input = input.unsqueeze(1)
        elif self.batch_first:
            input = input.transpose(0, 1)
        return [input[t] for t in range(input.shape[0])], [input.shape[1]] * input.shape[0], \
            None, unbatched

    def _initial_state(self, hx, batch: int, like: Tensor, packed, unbatched: bool) -> list:
        """A list over layers of state tuples, each (batch, hidden), in the order of the rows."""
        name = type(self).__name__
        count = 2 if self.mode == "LSTM" else 1
        if hx is None:
            zero = zeros(self.num_layers, batch, self.hidden_size, dtype=like.dtype,
                         device=like.device)
            hx = (zero,) * count
        else:
            if self.mode == "LSTM" and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
                raise ValueError(f"{name}: hx must be a tuple (h_0, c_0)")
            hx = tuple(hx) if self.mode == "LSTM" else (hx,)
            if unbatched:
                hx = tuple(h.unsqueeze(1) for h in hx)
            for h, what in zip(hx, ("hidden state h_0", "cell state c_0")):
                _check_state(name, h, (self.num_layers, batch, self.hidden_size), what)
            if packed is not None and packed.sorted_indices is not None:
                hx = tuple(h[:, packed.sorted_indices] for h in hx)
        return [tuple(h[layer] for h in hx) for layer in range(self.num_layers)]

    def forward(self, input, hx=None):
        steps, sizes, packed, unbatched = self._steps(input)
        batch = sizes[0] if sizes else 0
        states = self._initial_state(hx, batch, steps[0] if steps else input, packed,
                                     unbatched)
        for layer in range(self.num_layers):
            params, state, outputs = self._layer_params(layer), states[layer], []
            for x, rows in zip(steps, sizes):
                # rows past `rows` belong to sequences that have ended: their state stays
                new = self._step(x, tuple(s[:rows] for s in state), params)
                state = new if rows == batch else tuple(cat([n, s[rows:]]) for n, s in
                                                        zip(new, state))
                outputs.append(new[0])
            states[layer] = state
            steps = outputs
            if self.dropout and self.training and layer < self.num_layers - 1:
                steps = [F.dropout(x, self.dropout, True) for x in steps]
        final = tuple(stack([s[k] for s in states]) for k in range(len(states[0])))
        if packed is not None:
            if packed.unsorted_indices is not None:
                final = tuple(h[:, packed.unsorted_indices] for h in final)
            output = PackedSequence(cat(steps), packed.batch_sizes, packed.sorted_indices,
                                    packed.unsorted_indices)
        else:
            output = stack(steps)
            if unbatched:
                output, final = output.squeeze(1), tuple(h.squeeze(1) for h in final)
            elif self.batch_first:
                output = output.transpose(0, 1)
        return output, (final if self.mode == "LSTM" else final[0])

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        return text


class RNN(RNNBase):
    """Elman RNN, h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity!r}; use 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        super().__init__(f"RNN_{nonlinearity.upper()}", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device, dtype)


class GRU(RNNBase):
    """Multi-layer GRU; returns (output, h_n)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype)


class LSTM(RNNBase):
    """Multi-layer LSTM; hx = (h_0, c_0); returns (output, (h_n, c_n))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype)
