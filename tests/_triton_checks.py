"""The triton engine against the loop engine under Triton's interpreter, on the CPU.

Run by ``test_triton_engine.py`` in a subprocess: ``@triton.jit`` reads TRITON_INTERPRET
when it decorates a kernel (at import), so the interpreter must be on before the kernels
are first imported, and the rest of the test session stays unaffected. Prints one JSON
object: ``{case: {"error": ..., "worst": tensor name, "seconds": ...}}``; ``error`` is
the largest difference over the outputs, the final state and the gradients of x, the
initial state and every parameter, each divided by ``max(1, max |reference|)`` (float32,
float64) or by ``max |reference|`` (bfloat16, float16, against float32 references).

    python tests/_triton_checks.py [case ...]

Importing this module has no such effect: ``main`` turns the interpreter on.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

from rnnkit import ElmanCell, GRUCell, LeakyCell, LSTMCell
from rnnkit.engines import Unroll
from rnnkit.engines.loop import LoopEngine
from rnnkit.engines.triton import TritonEngine  # imports no triton until it runs

T, B, IN, H = 5, 3, 3, 5  # H = 5: no power of two, so every tile has masked columns
LENGTHS = torch.tensor([5, 2, 0])  # a full, a short and an empty sequence

CELLS = {
    "lstm": lambda d: LSTMCell(IN, H, dtype=d),
    "lstm_peephole": lambda d: LSTMCell(IN, H, peephole=True, dtype=d),
    "lstm_layernorm": lambda d: LSTMCell(IN, H, layer_norm=True, dtype=d),
    "lstm_ln_peephole_nobias": lambda d: LSTMCell(
        IN, H, peephole=True, layer_norm=True, bias=False, dtype=d
    ),
    "gru": lambda d: GRUCell(IN, H, dtype=d),
    "gru_before": lambda d: GRUCell(IN, H, reset="before", dtype=d),
    "gru_nobias": lambda d: GRUCell(IN, H, bias=False, dtype=d),
    "tanh": lambda d: ElmanCell(IN, H, dtype=d),
    "relu": lambda d: ElmanCell(IN, H, "relu", dtype=d),
    "sigmoid_nobias": lambda d: ElmanCell(IN, H, "sigmoid", bias=False, dtype=d),
    "leaky": lambda d: LeakyCell(IN, H, alpha=[0.1, 0.3, 0.5, 0.7, 0.9], dtype=d),
    "leaky_learned": lambda d: LeakyCell(IN, H, alpha=0.4, learn_alpha=True, dtype=d),
}
# Plans: the default (one program holds W_hh), the units split over 3 programs with one
# launch per step and phase, and one launch with the grid-barrier code running (one
# program per batch group, so it never waits: the interpreter runs programs in turn).
PLANS = {
    "resident": {},
    "stepwise": {"block_h": 2, "block_b": 2, "persistent": False},
    "barrier": {"block_b": 2, "grid_sync": True},
}


def make_cell(name: str, dtype=torch.float32):
    """A seeded cell whose layer-norm gains and biases are moved off ones and zeros."""
    torch.manual_seed(0)
    cell = CELLS[name](torch.float32)
    with torch.no_grad():
        for pname, p in cell.named_parameters():
            if pname.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    return cell.to(dtype)


def inputs(cell, dtype=torch.float32):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, IN, generator=gen)
    state = tuple(0.5 * torch.randn(B, *s, generator=gen) for s in cell.state_shapes())
    mask = (torch.rand(B, H, generator=gen) > 0.3).float() / 0.7  # recurrent dropout
    return x.to(dtype), tuple(s.to(dtype) for s in state), mask.to(dtype)


def run(engine, cell, x, state, **options):
    """Outputs, final state and the gradients of x, the state and every parameter."""
    x = x.detach().clone().requires_grad_()
    state = tuple(s.detach().clone().requires_grad_() for s in state)
    y, final = engine.run(cell, Unroll(x, state, **options))
    gen = torch.Generator().manual_seed(7)
    loss = (y.double() * torch.randn(y.shape, generator=gen, dtype=torch.float64)).sum()
    for s in final:
        loss = loss + (s.double().tanh() * torch.randn(s.shape, generator=gen)).sum()
    names = ["y", *(f"state{i}" for i in range(len(final))), "dx"]
    names += [f"dstate{i}" for i in range(len(state))]
    names += [f"d{n}" for n, _ in cell.named_parameters()]
    grads = torch.autograd.grad(loss, [x, *state, *cell.parameters()])
    return dict(zip(names, [y, *final, *grads], strict=True))


def compare(name, plan="resident", dtype=torch.float32, lengths=True, reverse=False,
            mask=False) -> dict:  # fmt: skip
    """The triton engine (``plan``, ``dtype``) against the loop engine in float32 (float64
    for a float64 run)."""
    ref_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    ref_cell, cell = make_cell(name, ref_dtype), make_cell(name, dtype)
    x, state, drop = inputs(ref_cell, ref_dtype)
    options = {"lengths": LENGTHS if lengths else None, "reverse": reverse}
    options["state_mask"] = drop if mask else None
    ref = run(LoopEngine(), ref_cell, x, state, **options)
    start = time.perf_counter()
    if mask:
        options["state_mask"] = drop.to(dtype)
    ours = run(TritonEngine(**PLANS[plan]), cell, x.to(dtype), tuple(s.to(dtype) for s in state),
               **options)  # fmt: skip
    seconds = time.perf_counter() - start
    half = dtype in (torch.float16, torch.bfloat16)
    errors = {}
    for key, r in ref.items():
        diff = (ours[key].double() - r.double()).abs().max().item()
        scale = r.double().abs().max().item()
        errors[key] = diff / (scale if half else max(1.0, scale))
    worst = max(errors, key=errors.get)
    return {"error": errors[worst], "worst": worst, "seconds": round(seconds, 3)}


def gradcheck(name, plan="resident") -> dict:
    """float64 gradcheck (fast mode) through x, the state and every parameter, padded and
    reversed. All leaves travel as one flat vector: fast mode then checks one random
    direction through all of them at the cost of a few passes."""
    from rnnkit.layers.regularizers import substituted

    cell = make_cell(name, torch.float64)
    x, state, _ = inputs(cell, torch.float64)
    names = [n for n, _ in cell.named_parameters()]
    leaves = [x, *state, *(p.detach() for p in cell.parameters())]
    shapes = [t.shape for t in leaves]
    engine = TritonEngine(**PLANS[plan])
    n_state = len(state)

    def fn(flat):
        parts = [
            p.view(s) for p, s in zip(flat.split([s.numel() for s in shapes]), shapes, strict=True)
        ]
        x, state, params = parts[0], parts[1 : 1 + n_state], parts[1 + n_state :]
        with substituted(cell, dict(zip(names, params, strict=True))):
            y, final = engine.run(cell, Unroll(x, tuple(state), lengths=LENGTHS, reverse=True))
        return (y, *final)

    flat = torch.cat([t.reshape(-1) for t in leaves]).requires_grad_()
    start = time.perf_counter()
    ok = torch.autograd.gradcheck(fn, (flat,), fast_mode=True)
    seconds = round(time.perf_counter() - start, 3)
    return {"error": 0.0 if ok else 1.0, "worst": "gradcheck", "seconds": seconds}


def cases() -> dict:
    """Case name -> (function, arguments)."""
    f32, f64 = torch.float32, torch.float64
    names = list(CELLS)
    out = {}
    # Every cell on the default plan, padded; half of them reversed, with recurrent dropout.
    for n in names[::2]:
        out[f"{n}/resident"] = (compare, n)
    for n in names[1::2]:
        out[f"{n}/resident/reverse/mask"] = (compare, n, "resident", f32, True, True, True)
    # Each family's steps with the units split over programs, one launch per phase.
    for n in ("lstm", "lstm_ln_peephole_nobias", "gru", "gru_before", "leaky_learned"):
        out[f"{n}/stepwise/mask"] = (compare, n, "stepwise", f32, True, False, True)
    out["relu/stepwise/reverse/full"] = (compare, "relu", "stepwise", f32, False, True)
    # One launch for all steps through the grid-barrier code.
    for n in ("lstm_layernorm", "gru_before", "tanh"):
        out[f"{n}/barrier/reverse"] = (compare, n, "barrier", f32, True, True)
    ln = "lstm_ln_peephole_nobias"
    out[f"{ln}/stepwise/reverse/mask/float64"] = (compare, ln, "stepwise", f64, True, True, True)
    out["gru_before/resident/float64"] = (compare, "gru_before", "resident", f64)
    for n in (ln, "gru_before", "leaky_learned"):
        out[f"{n}/gradcheck"] = (gradcheck, n)
    out[f"{ln}/bfloat16"] = (compare, ln, "resident", torch.bfloat16)
    out["gru/stepwise/bfloat16"] = (compare, "gru", "stepwise", torch.bfloat16)
    out["lstm/float16"] = (compare, "lstm", "resident", torch.float16)
    out["leaky_learned/float16"] = (compare, "leaky_learned", "resident", torch.float16)
    return out


CASES = cases()


TOLERANCES = {"float64": 1e-10, "bfloat16": 3e-2, "float16": 1e-2, "gradcheck": 0.0}


def tolerance(case: str) -> float:
    """The largest ``error`` a case may report (float32: 1e-5)."""
    return next((tol for key, tol in TOLERANCES.items() if key in case), 1e-5)


def main(names) -> None:
    os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are imported, on first use
    import triton.runtime.interpreter as interpreter

    # The interpreter checks every int32 operation for overflow (half its time here);
    # these sizes are far from overflowing.
    options = interpreter.InterpreterOptions(sanitize_overflow=False)
    interpreter.interpreter_builder.options = options
    torch.set_num_threads(1)
    results = {}
    for name in names or CASES:
        fn, *args = CASES[name]
        results[name] = fn(*args)
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
