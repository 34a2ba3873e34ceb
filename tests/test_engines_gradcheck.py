"""Every engine, float64 gradcheck through a whole padded sequence in both directions."""

from __future__ import annotations

import pytest
import torch

from _numerics import gradcheck_module
from rnnkit import ElmanCell, GRUCell, LeakyCell, LSTMCell, Recurrent
from rnnkit.engines import ENGINES, Unroll

D = torch.float64
T, B, N_IN, H = 5, 3, 2, 3

CELLS = {
    "elman_tanh": lambda: ElmanCell(N_IN, H, dtype=D),
    "elman_relu": lambda: ElmanCell(N_IN, H, "relu", dtype=D),
    "lstm": lambda: LSTMCell(N_IN, H, dtype=D),
    "lstm_proj": lambda: LSTMCell(N_IN, H, proj_size=2, dtype=D),
    "lstm_peephole_ln": lambda: LSTMCell(N_IN, H, peephole=True, layer_norm=True, dtype=D),
    "gru": lambda: GRUCell(N_IN, H, dtype=D),
    "gru_before": lambda: GRUCell(N_IN, H, reset="before", dtype=D),
    "leaky": lambda: LeakyCell(N_IN, H, alpha=0.3, learn_alpha=True, dtype=D),
}


def cases():
    for engine in ENGINES:
        for name, make in CELLS.items():
            probe = Unroll(torch.zeros(T, B, N_IN, dtype=D), make().init_state(B))
            if ENGINES[engine].unsupported(make(), probe) is None:
                yield pytest.param(engine, name, id=f"{engine}-{name}")


@pytest.mark.parametrize(("engine", "name"), list(cases()))
@pytest.mark.parametrize("reverse", [False, True])
def test_engine_gradcheck(engine, name, reverse):
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name](), reverse=reverse, engine=engine)
    x = torch.randn(T, B, N_IN, dtype=D)
    state = tuple(torch.randn_like(s) for s in layer.init_state(B, dtype=D))
    lengths = torch.tensor([T, 2, 4])

    def run(module, x, *state):
        return module(x, state, lengths=lengths)

    assert gradcheck_module(layer, run, x, *state)


@pytest.mark.fused
def test_every_engine_has_cases():
    covered = {engine for engine, _ in (p.values for p in cases())}
    # triton runs CUDA tensors only; its float64 gradchecks run under Triton's interpreter
    # in tests/test_triton_engine.py.
    assert covered == set(ENGINES) - {"triton"}
