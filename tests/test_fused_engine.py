"""The fused engine's Elman and leaky recurrences, its refusals, and checkpointing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit import ElmanCell, GRUCell, JordanCell, LeakyCell, LSTMCell, Recurrent
from rnnkit.engines import ENGINES, Unroll
from rnnkit.engines.fused import build

D = torch.float64
T, B, N_IN, H = 7, 4, 3, 5
LENGTHS = torch.tensor([T, 2, T - 1, 1])

CELLS = {
    "tanh": lambda dtype: ElmanCell(N_IN, H, dtype=dtype),
    "relu": lambda dtype: ElmanCell(N_IN, H, "relu", dtype=dtype),
    "sigmoid": lambda dtype: ElmanCell(N_IN, H, "sigmoid", bias=False, dtype=dtype),
    "leaky": lambda dtype: LeakyCell(N_IN, H, alpha=[0.1, 0.3, 0.5, 0.7, 0.9], dtype=dtype),
    "leaky_learned": lambda dtype: LeakyCell(N_IN, H, alpha=0.4, learn_alpha=True, dtype=dtype),
}


def loss_of(y, final):
    """A fixed random scalar of every output and the final state."""
    gen = torch.Generator().manual_seed(7)
    loss = (y * torch.randn(y.shape, dtype=y.dtype, generator=gen)).sum()
    return loss + sum(
        (s.tanh() * torch.randn(s.shape, dtype=s.dtype, generator=gen)).sum() for s in final
    )


def run_engine(cell, engine, x, state, lengths=None, **layer_options):
    """Outputs, final state and the gradients of x, the state and every parameter."""
    layer = Recurrent(cell, engine=engine, **layer_options)
    x = x.detach().clone().requires_grad_()
    state = tuple(s.detach().clone().requires_grad_() for s in state)
    torch.manual_seed(5)  # the same dropout masks for every engine
    y, final = layer(x, state, lengths=lengths)
    grads = torch.autograd.grad(loss_of(y, final), [x, *state, *cell.parameters()])
    return [y, *final, *grads]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("state_dropout", [0.0, 0.5])
def test_fused_matches_loop(name, reverse, with_lengths, state_dropout):
    torch.manual_seed(1)
    cell = CELLS[name](D)
    x = torch.randn(T, B, N_IN, dtype=D)
    state = (torch.randn(B, H, dtype=D),)
    lengths = LENGTHS if with_lengths else None
    options = {"reverse": reverse, "state_dropout": state_dropout}
    results = {e: run_engine(cell, e, x, state, lengths, **options) for e in ("loop", "fused")}
    for a, b in zip(results["loop"], results["fused"], strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_fused_matches_torch_rnn_float32(nonlinearity):
    torch.manual_seed(2)
    ours = ElmanCell(N_IN, H, nonlinearity)
    theirs = torch.nn.RNN(N_IN, H, nonlinearity=nonlinearity)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(theirs, f"{name}_l0").copy_(getattr(ours, name))
    x = torch.randn(T, B, N_IN, requires_grad=True)
    y, (h,) = Recurrent(ours, engine="fused")(x)
    y_ref, h_ref = theirs(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(h, h_ref[0], rtol=0, atol=1e-5)
    grads = torch.autograd.grad(loss_of(y, (h,)), [x, ours.weight_hh, ours.weight_ih])
    grads_ref = torch.autograd.grad(
        loss_of(y_ref, (h_ref[0],)), [x, theirs.weight_hh_l0, theirs.weight_ih_l0]
    )
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["tanh", "leaky_learned"])
def test_fused_float32_matches_loop(name):
    torch.manual_seed(3)
    cell = CELLS[name](torch.float32)
    x = torch.randn(50, B, N_IN)
    state = (torch.randn(B, H),)
    loop = run_engine(cell, "loop", x, state)
    fused = run_engine(cell, "fused", x, state)
    for a, b in zip(loop, fused, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_fused_refusals_name_the_reason():
    engine = ENGINES["fused"]
    x = torch.zeros(T, B, N_IN)
    jordan = JordanCell(N_IN, H, 2)
    assert "no fused kernel for JordanCell" in engine.unsupported(
        jordan, Unroll(x, jordan.init_state(B))
    )
    cell = ElmanCell(N_IN, H)
    teacher = Unroll(x, cell.init_state(B), teacher=torch.zeros(T, B, H))
    assert "teacher forcing" in engine.unsupported(cell, teacher)
    half = Unroll(x.bfloat16(), cell.init_state(B))
    assert "float32 or float64, not torch.bfloat16" in engine.unsupported(cell, half)
    with pytest.raises(ValueError, match="engine='fused' cannot run this configuration"):
        Recurrent(ElmanCell(N_IN, H, dtype=torch.bfloat16), engine="fused")(x.bfloat16())


def test_build_failure_is_reported_not_raised(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    def broken(**kwargs):
        raise RuntimeError("Error building extension 'rnnkit_fused': [1/2] c++ ...")

    monkeypatch.setattr(cpp_extension, "load", broken)
    monkeypatch.setenv("RNNKIT_CACHE_DIR", str(tmp_path))
    reason = build.load.__wrapped__()
    assert reason.startswith("its C++ kernels could not be built (RuntimeError: Error building")
    assert str(tmp_path) in reason


# --------------------------------------------------------------------- checkpointing


@pytest.mark.parametrize("engine", ["loop", "fused", "auto"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("checkpoint", [True, 3])
def test_checkpoint_gives_the_same_numbers(engine, reverse, checkpoint):
    torch.manual_seed(4)
    cell = ElmanCell(N_IN, H, dtype=D)
    x = torch.randn(11, B, N_IN, dtype=D)
    state = (torch.randn(B, H, dtype=D),)
    options = {"reverse": reverse, "dropconnect": 0.3, "state_dropout": 0.2}
    lengths = torch.tensor([11, 3, 7, 1])
    plain = run_engine(cell, engine, x, state, lengths, **options)
    kept = run_engine(cell, engine, x, state, lengths, checkpoint=checkpoint, **options)
    for a, b in zip(plain, kept, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


def test_checkpoint_options_are_checked():
    with pytest.raises(ValueError, match="checkpoint must be True, False or a positive"):
        Recurrent(ElmanCell(N_IN, H), checkpoint=-2)
    layer = Recurrent(JordanCell(N_IN, H, 2), checkpoint=True)
    with pytest.raises(ValueError, match="checkpoint cannot be combined with teacher forcing"):
        layer(torch.zeros(T, B, N_IN), teacher=torch.zeros(T, B, 2))


# The peak is the process's own VmHWM: ru_maxrss would start at the parent's size, as
# the high-water mark survives the fork and exec that start the child.
PEAK_SCRIPT = """
import json, re, sys, torch
from rnnkit import LSTMCell, Recurrent
def peak_kib():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read()).group(1))
steps, checkpoint = int(sys.argv[1]), sys.argv[2] == "1"
torch.manual_seed(0)
layer = Recurrent(LSTMCell(8, 256), engine="fused", checkpoint=checkpoint)
x = torch.randn(steps, 32, 8)
layer(x[:2])[0].sum().backward()  # builds and loads the kernels before measuring
before = peak_kib()
y, _ = layer(x)
y[-1].sum().backward()
print(json.dumps({"kib": peak_kib() - before}))
"""


def _peak_kib(steps: int, checkpoint: bool) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(steps), str(int(checkpoint))],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])["kib"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak from /proc")
def test_checkpoint_saves_memory_on_long_sequences():
    # An LSTM step keeps its four gates and cell state for the backward: about 6x the
    # size of its output. Checkpointed, only the outputs and a segment's worth remain.
    plain = _peak_kib(3000, False)
    kept = _peak_kib(3000, True)
    output_kib = 3000 * 32 * 256 * 4 // 1024
    assert plain > 4 * output_kib
    assert kept < plain / 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: ElmanCell(N_IN, H, dtype=D),
        lambda: LSTMCell(N_IN, H, dtype=D),
        lambda: GRUCell(N_IN, H, dtype=D),
        lambda: GRUCell(N_IN, H, reset="before", dtype=D),
    ],
    ids=["elman", "lstm", "gru", "gru_before"],
)
def test_one_row_leaves_the_parameters_alone(make):
    # T = B = 1: the input side is a single row, where a product into an expanded bias
    # would write into the bias itself.
    torch.manual_seed(6)
    cell = make()
    before = {n: p.detach().clone() for n, p in cell.named_parameters()}
    x = torch.randn(1, 1, N_IN, dtype=D)
    outs = [Recurrent(cell, engine="fused")(x)[0] for _ in range(2)]
    for name, p in cell.named_parameters():
        assert torch.equal(p, before[name]), name
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0], Recurrent(cell, engine="loop")(x)[0], rtol=0, atol=1e-12)
