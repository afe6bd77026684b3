"""The optimizer kernels (kernels/cpu/sgd.py, adam.py) against torch.optim (foreach=False) and
the float64 reference over many steps, for every option; optim.SGD/Adam/AdamW on the kernels;
bad arguments refused before anything is updated.

tests/test_hardening_kernel_args.py swaps the first entry of each list argument for every bad
array and tries bad scalars; the list-level mistakes (lengths, None entries, read-only arrays)
are tried here.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch

import kernels.cpu as cpu
import tinygrad_norm as tn
from kernels import reference

SHAPES = [(), (1,), (7,), (3, 13)]  # 0-d, one element, primes
STEPS = 20
TOLERANCE = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-14)}

SGD_OPTIONS = [
    dict(momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=wd,
         maximize=maximize)
    for momentum, dampening, nesterov, wd, maximize in itertools.product(
        (0.0, 0.9), (0.0, 0.3), (False, True), (0.0, 0.01), (False, True))
    if not nesterov or (momentum and not dampening)
]
ADAM_OPTIONS = [
    dict(decoupled=decoupled, amsgrad=amsgrad, maximize=maximize, weight_decay=wd, betas=betas)
    for decoupled, amsgrad, maximize, wd, betas in itertools.product(
        (False, True), (False, True), (False, True), (0.0, 0.1), ((0.9, 0.999), (0.3, 0.9)))
]  # beta1 = 0.3: PyTorch's lerp takes its large-weight form


def _option_id(options: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items())


def _gradients(rng, dtype, shapes=SHAPES):
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def _torch_params(params):
    return [torch.tensor(p.copy(), requires_grad=True) for p in params]


def _assert_close(ours, theirs, dtype, what):
    for i, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a, b.detach().numpy(), **TOLERANCE[dtype],
                                   err_msg=f"{what}, parameter {i}")


def _sgd(module, params, grads, buffers, lr, o):
    return module.sgd_step(params, grads, buffers, lr, o["momentum"], o["dampening"],
                           o["weight_decay"], o["nesterov"], o["maximize"])


class _AdamState:
    def __init__(self, params, amsgrad: bool):
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.v_max = [np.zeros_like(p) for p in params] if amsgrad else None

    def step(self, module, params, grads, steps, lr, o):
        module.adam_step(params, grads, self.m, self.v, self.v_max, steps, lr, *o["betas"],
                         1e-8, o["weight_decay"], o["amsgrad"], o["maximize"], o["decoupled"])


def _torch_step(optimizer, params, grads):
    for t, g in zip(params, grads):
        t.grad = torch.tensor(g)
    optimizer.step()


def _torch_adam(params, lr, o):
    kind = torch.optim.AdamW if o["decoupled"] else torch.optim.Adam
    return kind(params, lr=lr, betas=o["betas"], weight_decay=o["weight_decay"],
                amsgrad=o["amsgrad"], maximize=o["maximize"], foreach=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=_option_id)
def test_sgd_kernel_matches_torch_over_steps(dtype, options):
    rng = np.random.default_rng(0)
    params = _gradients(rng, dtype)
    theirs = _torch_params(params)
    torch_opt = torch.optim.SGD(theirs, lr=0.1, foreach=False, **options)
    buffers = [None] * len(params)
    for _ in range(STEPS):
        grads = _gradients(rng, dtype)
        _torch_step(torch_opt, theirs, grads)
        buffers = _sgd(cpu, params, grads, buffers, 0.1, options)
        assert all(p.dtype == dtype for p in params)
    _assert_close(params, theirs, dtype, "params")
    if options["momentum"]:
        _assert_close(buffers, [torch_opt.state[t]["momentum_buffer"] for t in theirs], dtype,
                      "momentum_buffer")
    else:
        assert buffers == [None] * len(params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=_option_id)
def test_adam_kernel_matches_torch_over_steps(dtype, options):
    rng = np.random.default_rng(1)
    params = _gradients(rng, dtype)
    theirs = _torch_params(params)
    torch_opt = _torch_adam(theirs, 0.01, options)
    state = _AdamState(params, options["amsgrad"])
    for step in range(1, STEPS + 1):
        grads = _gradients(rng, dtype)
        _torch_step(torch_opt, theirs, grads)
        state.step(cpu, params, grads, [float(step)] * len(params), 0.01, options)
    _assert_close(params, theirs, dtype, "params")
    _assert_close(state.m, [torch_opt.state[t]["exp_avg"] for t in theirs], dtype, "exp_avg")
    _assert_close(state.v, [torch_opt.state[t]["exp_avg_sq"] for t in theirs], dtype,
                  "exp_avg_sq")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parallel_path_matches_torch(dtype):
    """Above kernels.cpu.stats.SERIAL_MAX_ELEMENTS the update is split across threads."""
    rng = np.random.default_rng(2)
    shapes = [(257, 263)]  # 67591 elements, a prime times a prime
    params = _gradients(rng, dtype, shapes)
    sgd_params, adam_params = [p.copy() for p in params], [p.copy() for p in params]
    torch_sgd, torch_adam = _torch_params(params), _torch_params(params)
    sgd = torch.optim.SGD(torch_sgd, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01,
                          foreach=False)
    options = dict(decoupled=True, amsgrad=True, maximize=False, weight_decay=0.1,
                   betas=(0.9, 0.999))
    adam = _torch_adam(torch_adam, 0.01, options)
    buffers, state = [None], _AdamState(params, True)
    for step in range(1, 4):
        grads = _gradients(rng, dtype, shapes)
        for t in (*torch_sgd, *torch_adam):
            t.grad = torch.tensor(grads[0])
        sgd.step()
        adam.step()
        buffers = _sgd(cpu, sgd_params, grads, buffers, 0.1, dict(
            momentum=0.9, dampening=0.0, nesterov=True, weight_decay=0.01, maximize=False))
        state.step(cpu, adam_params, grads, [float(step)], 0.01, options)
    _assert_close(sgd_params, torch_sgd, dtype, "SGD")
    _assert_close(adam_params, torch_adam, dtype, "AdamW")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_the_float64_reference_step_by_step(dtype):
    """Each step from the same inputs: the float32 kernel rounds once per operation, the
    reference once per step; float64 agree to rounding."""
    rng = np.random.default_rng(3)
    tolerance = dict(rtol=2e-6, atol=1e-7) if dtype == np.float32 else TOLERANCE[dtype]
    for options in SGD_OPTIONS[::3]:
        params, buffers = _gradients(rng, dtype), [None] * len(SHAPES)
        for _ in range(3):
            grads, twin = _gradients(rng, dtype), [p.copy() for p in params]
            twin_buffers = [None if b is None else b.copy() for b in buffers]
            expected = _sgd(reference, twin, grads, twin_buffers, 0.1, options)
            buffers = _sgd(cpu, params, grads, buffers, 0.1, options)
            assert [b is None for b in buffers] == [b is None for b in expected]
            for ours, spec in zip([*params, *buffers], [*twin, *expected]):
                if ours is not None:
                    np.testing.assert_allclose(ours, spec, **tolerance, err_msg=str(options))
    for options in ADAM_OPTIONS[::3]:
        params = _gradients(rng, dtype)
        state = _AdamState(params, options["amsgrad"])
        for step in (1.0, 2.0, 3.0):
            grads, twin = _gradients(rng, dtype), [p.copy() for p in params]
            twin_state = _AdamState(params, options["amsgrad"])
            for name in ("m", "v", "v_max"):
                if getattr(state, name) is not None:
                    setattr(twin_state, name, [a.copy() for a in getattr(state, name)])
            twin_state.step(reference, twin, grads, [step] * len(twin), 0.01, options)
            state.step(cpu, params, grads, [step] * len(params), 0.01, options)
            for ours, spec in zip([*params, *state.m, *state.v], [*twin, *twin_state.m,
                                                                  *twin_state.v]):
                np.testing.assert_allclose(ours, spec, **tolerance, err_msg=str(options))


def test_adam_steps_are_per_parameter():
    """A parameter that missed steps (grad None) has its own bias correction."""
    rng = np.random.default_rng(4)
    params = _gradients(rng, np.float64, [(5,), (5,)])
    twin, same_step = [p.copy() for p in params], [p.copy() for p in params]
    options = dict(decoupled=False, amsgrad=False, maximize=False, weight_decay=0.0,
                   betas=(0.9, 0.999))
    grads = _gradients(rng, np.float64, [(5,), (5,)])
    _AdamState(params, False).step(cpu, params, grads, [1.0, 7.0], 0.01, options)
    _AdamState(twin, False).step(reference, twin, grads, [1.0, 7.0], 0.01, options)
    _AdamState(same_step, False).step(cpu, same_step, grads, [1.0, 1.0], 0.01, options)
    np.testing.assert_allclose(params, twin, rtol=1e-12)
    np.testing.assert_array_equal(params[0], same_step[0])
    assert np.all(np.abs(params[1] - same_step[1]) > 1e-4)  # the step count mattered


# ------------------------------------------------------------------ optim on the kernels

def _model_pair(dtype):
    rng = np.random.default_rng(5)
    values = _gradients(rng, dtype)
    return ([tn.Tensor(v.copy(), requires_grad=True) for v in values],
            [torch.tensor(v.copy(), requires_grad=True) for v in values])


_SEEDS = itertools.count(17)


def _loss_step(ours, theirs, optimizer, torch_optimizer, skip: int | None = None):
    """Set the same gradients (none for parameter `skip`) and step both optimizers."""
    rng = np.random.default_rng(next(_SEEDS))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        grad = rng.standard_normal(a.shape).astype(a.dtype)
        a.grad = None if i == skip else tn.Tensor(grad)
        b.grad = None if i == skip else torch.tensor(grad)
    optimizer.step()
    torch_optimizer.step()


OPTIMIZERS = {
    "SGD": (lambda p: tn.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01,
                                      nesterov=True, foreach=False)),
    "Adam": (lambda p: tn.optim.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.1),
             lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.1,
                                        foreach=False)),
    "AdamW": (lambda p: tn.optim.AdamW(p, lr=0.01, maximize=True),
              lambda p: torch.optim.AdamW(p, lr=0.01, maximize=True, foreach=False)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_on_kernels_matches_torch_and_skips_missing_grads(name, dtype, monkeypatch):
    ours, theirs = _model_pair(dtype)
    ours_factory, torch_factory = OPTIMIZERS[name]
    optimizer, torch_optimizer = ours_factory(ours), torch_factory(theirs)
    calls = []
    kernel = getattr(cpu, "sgd_step" if name == "SGD" else "adam_step")
    monkeypatch.setattr(cpu, kernel.__name__, lambda *a: calls.append(a) or kernel(*a))
    for step in range(6):
        _loss_step(ours, theirs, optimizer, torch_optimizer, skip=2 if step < 3 else None)
    assert len(calls) == 6, "the cpu device must update each group in one kernel call"
    assert all(len(args[0]) == (3 if i < 3 else 4) for i, args in enumerate(calls))
    _assert_close([p.data for p in ours], theirs, dtype, name)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_replaced_and_strided_data_are_updated(name):
    """p.data = new array is seen at the next step; a strided p.data (which the kernels do
    not take) goes the NumPy way and still matches PyTorch."""
    ours, theirs = _model_pair(np.float64)
    ours_factory, torch_factory = OPTIMIZERS[name]
    optimizer, torch_optimizer = ours_factory(ours), torch_factory(theirs)
    _loss_step(ours, theirs, optimizer, torch_optimizer)
    fresh = np.linspace(-1.0, 1.0, 39).reshape(3, 13)
    replaced = fresh.copy()
    ours[3].data = replaced
    with torch.no_grad():
        theirs[3].copy_(torch.tensor(fresh))
    _loss_step(ours, theirs, optimizer, torch_optimizer)
    assert ours[3].data is replaced and not np.array_equal(replaced, fresh)
    strided = np.asfortranarray(ours[3].data)
    ours[3].data = strided
    _loss_step(ours, theirs, optimizer, torch_optimizer)
    assert ours[3].data is strided  # updated in place
    _assert_close([p.data for p in ours], theirs, np.float64, name)


def test_state_dict_round_trip_continues_on_the_kernels():
    ours, theirs = _model_pair(np.float32)
    optimizer, torch_optimizer = OPTIMIZERS["Adam"][0](ours), OPTIMIZERS["Adam"][1](theirs)
    for _ in range(3):
        _loss_step(ours, theirs, optimizer, torch_optimizer)
    resumed = [tn.Tensor(p.data.copy(), requires_grad=True) for p in ours]
    resumed_optimizer = OPTIMIZERS["Adam"][0](resumed)
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    for _ in range(3):
        _loss_step(resumed, theirs, resumed_optimizer, torch_optimizer)
    _assert_close([p.data for p in resumed], theirs, np.float32, "resumed Adam")


# ------------------------------------------------------------------ bad arguments

def _sgd_arguments():
    rng = np.random.default_rng(6)
    return dict(params=_gradients(rng, np.float32), grads=_gradients(rng, np.float32),
                momentum_buffers=_gradients(rng, np.float32), lr=0.1, momentum=0.9,
                dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)


def _adam_arguments():
    rng = np.random.default_rng(7)
    arrays = lambda: _gradients(rng, np.float32)  # noqa: E731
    return dict(params=arrays(), grads=arrays(), exp_avgs=arrays(),
                exp_avg_sqs=[np.abs(a, out=a) for a in arrays()], max_exp_avg_sqs=None,
                state_steps=[1.0] * 4, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, amsgrad=False, maximize=False, decoupled_weight_decay=False)


def _read_only(array):
    array = array.copy()
    array.flags.writeable = False
    return array


def _last_replaced(values, new):
    return [*values[:-1], new]


BAD_SGD = {
    "params": [("grads must have one entry per parameter (3), got 4",
                lambda a: a["params"][:-1]),
               ("params must be a list", lambda a: tuple(a["params"])[0]),
               ("params[3] must be writeable", lambda a: _last_replaced(
                   a["params"], _read_only(a["params"][-1])))],
    "grads": [("grads must have one entry per parameter (4), got 3", lambda a: a["grads"][:3]),
              ("grads[3] must be an array", lambda a: _last_replaced(a["grads"], None)),
              ("grads[3] must have the dtype of params[3]", lambda a: _last_replaced(
                  a["grads"], a["grads"][-1].astype(np.float64)))],
    "momentum_buffers": [
        ("momentum_buffers[3] must be writeable", lambda a: _last_replaced(
            a["momentum_buffers"], _read_only(a["momentum_buffers"][-1]))),
        ("momentum_buffers[3] must have shape (3, 13)", lambda a: _last_replaced(
            a["momentum_buffers"], np.zeros((13, 3), np.float32)))],
    "lr": [("lr must be finite", lambda a: float("nan"))],
    "nesterov": [("nesterov must be a bool", lambda a: 1)],
}
BAD_ADAM = {
    "exp_avgs": [("exp_avgs[3] must be an array of shape (3, 13), got None",
                  lambda a: _last_replaced(a["exp_avgs"], None))],
    "max_exp_avg_sqs": [("max_exp_avg_sqs must be None when amsgrad is False",
                         lambda a: a["exp_avgs"])],
    "state_steps": [("state_steps[3] must be in", lambda a: [1.0, 1.0, 1.0, 0.0]),
                    ("state_steps must be a list", lambda a: [1.0])],
    "eps": [("eps must be finite", lambda a: float("inf"))],
    "beta2": [("beta2 must be in [0.0, 1.0)", lambda a: 1.0)],
    "decoupled_weight_decay": [("decoupled_weight_decay must be a bool", lambda a: None)],
}
BAD = [("sgd_step", _sgd_arguments, arg, message, make)
       for arg, cases in BAD_SGD.items() for message, make in cases]
BAD += [("adam_step", _adam_arguments, arg, message, make)
        for arg, cases in BAD_ADAM.items() for message, make in cases]


@pytest.mark.parametrize("kernel,arguments,arg,message,make", BAD,
                         ids=[f"{b[0]}-{b[2]}-{b[3][:30]}" for b in BAD])
def test_bad_argument_is_refused_before_any_parameter_changes(kernel, arguments, arg, message,
                                                              make):
    valid = arguments()
    before = [p.copy() for p in valid["params"]]
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        getattr(cpu, kernel)(**(valid | {arg: make(valid)}))
    for p, b in zip(valid["params"], before):
        np.testing.assert_array_equal(p, b)


def test_amsgrad_without_max_buffers_is_refused():
    valid = _adam_arguments() | {"amsgrad": True}
    with pytest.raises(TypeError, match="max_exp_avg_sqs must be a list"):
        cpu.adam_step(**valid)
