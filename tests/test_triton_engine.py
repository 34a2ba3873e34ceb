"""The triton engine: against the loop engine under the interpreter, its refusals, the
program layouts it picks by size, import safety, and (with a GPU) the real kernels.

The interpreter checks run in one subprocess (``_triton_checks.py``): ``@triton.jit``
decides at import whether a kernel is interpreted, so TRITON_INTERPRET must be set
before the kernels load, and this process stays as it was.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _triton_checks import CASES, tolerance
from rnnkit import ElmanCell, GRUCell, JordanCell, LeakyCell, LSTMCell
from rnnkit.engines import Unroll
from rnnkit.engines.loop import LoopEngine
from rnnkit.engines.triton import TritonEngine
from rnnkit.engines.triton.plan import SLOTS, SMEM_BUDGET, choose_plan, min_block_h, shared_bytes

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
needs_cuda = pytest.mark.skipif(
    not (HAS_TRITON and torch.cuda.is_available()), reason="needs triton and a CUDA GPU"
)
CHECKS = Path(__file__).with_name("_triton_checks.py")


# ------------------------------------------------------------------ interpreter


@pytest.fixture(scope="module")
def interpreted():
    """Every case of ``_triton_checks.py``, run once in a subprocess under the interpreter."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed")
    env = {**os.environ, "RNNKIT_CACHE_DIR": os.environ.get("RNNKIT_CACHE_DIR", "/tmp/rnnkit")}
    env.pop("TRITON_INTERPRET", None)  # the script sets it itself, before the kernels load
    done = subprocess.run(
        [sys.executable, str(CHECKS)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_triton
@pytest.mark.parametrize("case", list(CASES))
def test_matches_loop_under_interpreter(interpreted, case):
    # Values and gradients (x, initial state, every parameter) of float32 runs within
    # 1e-5 of the loop engine's (relative to max(1, |value|)), float64 within 1e-10,
    # half precision within 3e-2 / 1e-2 of the float32 loop (relative to the largest
    # value); gradchecks pass.
    result = interpreted[case]
    assert result["error"] <= tolerance(case), f"{case}: {result}"


# ---------------------------------------------------------------------- refusals


def test_refusals_name_the_reason(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    engine = TritonEngine()
    x = torch.zeros(4, 2, 3)
    jordan = JordanCell(3, 5, 2)
    assert "no triton kernel for JordanCell" in engine.unsupported(
        jordan, Unroll(x, jordan.init_state(2))
    )
    proj = LSTMCell(3, 5, proj_size=2)
    assert "no projection" in engine.unsupported(proj, Unroll(x, proj.init_state(2)))
    cell = ElmanCell(3, 5)
    teacher = Unroll(x, cell.init_state(2), teacher=torch.zeros(4, 2, 5))
    assert "teacher forcing" in engine.unsupported(cell, teacher)
    ints = Unroll(x.int(), cell.init_state(2))
    assert "not torch.int32" in engine.unsupported(cell, ints)
    if "rnnkit.engines.triton.common" not in sys.modules:  # kernels not loaded here yet
        reason = engine.unsupported(cell, Unroll(x, cell.init_state(2)))
        assert reason.startswith("the triton kernels run on CUDA tensors, not cpu")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        if HAS_TRITON:
            assert engine.unsupported(cell, Unroll(x, cell.init_state(2))) is None


def test_importing_rnnkit_imports_no_triton_and_works_without_it():
    script = """
import sys
import rnnkit, rnnkit.engines.triton
print("triton" in sys.modules)
sys.modules["triton"] = None  # as if it were not installed
from rnnkit.engines.triton import engine
import torch
e = engine.TritonEngine()
cell = rnnkit.ElmanCell(3, 4)
x = torch.zeros(2, 1, 3, device="cuda" if torch.cuda.is_available() else "cpu")
import os; os.environ["TRITON_INTERPRET"] = "1"
print(e.unsupported(cell.to(x.device), rnnkit.engines.Unroll(x, cell.init_state(1))))
"""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    imported, reason = done.stdout.strip().splitlines()
    assert imported == "False"
    assert reason.startswith("triton is not available (ModuleNotFoundError")


# ------------------------------------------------------------------------- plans


def test_plan_paths_by_size():
    lstm = {"slots": 4, "cuda": True, "min_block_h": 4}
    # H <= 64: one program holds all of W_hh; batch groups run independently.
    plan = choose_plan(hidden=64, recurrent=64, batch=128, **lstm)
    assert (plan.path, plan.n_h, plan.block_h, plan.n_groups) == ("resident", 1, 64, 4)
    # Larger: units split over at most one program per SM, one launch, grid barrier.
    plan = choose_plan(hidden=512, recurrent=512, batch=8, sm_count=132, **lstm)
    assert (plan.path, plan.n_h, plan.block_h, plan.n_groups) == ("persistent", 128, 4, 1)
    # Under the interpreter a split always goes one launch per step and phase.
    plan = choose_plan(4, 512, 512, 8, cuda=False, block_h=128)
    assert (plan.path, plan.n_h) == ("stepwise", 4)
    # float32 at H = 2048 needs more programs than SMs: no co-residency, stepwise.
    plan = choose_plan(hidden=2048, recurrent=2048, batch=8, itemsize=4, **lstm)
    assert plan.path == "stepwise" and plan.n_h > 132
    assert choose_plan(hidden=2048, recurrent=2048, batch=8, itemsize=8, **lstm) is None


def test_plan_env_forces_stepwise(monkeypatch):
    monkeypatch.setenv("RNNKIT_TRITON_PERSISTENT", "0")
    plan = choose_plan(4, 512, 512, 8, cuda=True, min_block_h=4)
    assert plan.path == "stepwise"


@pytest.mark.parametrize("itemsize", [2, 4])
@pytest.mark.parametrize("family", list(SLOTS))
def test_plans_fit_shared_memory_and_the_grid(family, itemsize):
    slots = SLOTS[family]
    for hidden in (16, 100, 256, 512, 1000, 1024):
        for batch in (1, 8, 32, 128):
            plan = choose_plan(slots, hidden, hidden, batch, cuda=True, itemsize=itemsize,
                               min_block_h=min_block_h(slots), sm_count=132)  # fmt: skip
            assert plan is not None
            used = shared_bytes(slots, hidden, hidden, plan.block_h, plan.block_b, itemsize,
                                plan.block_b_bwd)  # fmt: skip
            assert used <= SMEM_BUDGET
            assert plan.n_h * plan.block_h >= hidden > (plan.n_h - 1) * plan.block_h
            if plan.grid_sync:  # every program of a barrier resident at once
                assert plan.n_h * plan.n_groups <= 132


# ---------------------------------------------------------------------------- GPU

GPU_CELLS = {
    "lstm": lambda n, h: LSTMCell(n, h),
    "lstm_peephole": lambda n, h: LSTMCell(n, h, peephole=True),
    "lstm_layernorm": lambda n, h: LSTMCell(n, h, layer_norm=True, peephole=True),
    "gru": lambda n, h: GRUCell(n, h),
    "gru_before": lambda n, h: GRUCell(n, h, reset="before"),
    "leaky": lambda n, h: LeakyCell(n, h, alpha=0.3, learn_alpha=True),
    "relu": lambda n, h: ElmanCell(n, h, "relu"),
}


def _gpu_grads(engine, cell, x, state, lengths, reverse, mask):
    x = x.detach().clone().requires_grad_()
    state = tuple(s.detach().clone().requires_grad_() for s in state)
    y, final = engine.run(cell, Unroll(x, state, lengths, reverse, state_mask=mask))
    gen = torch.Generator(device=x.device).manual_seed(7)
    loss = (y.float() * torch.randn(y.shape, device=x.device, generator=gen)).sum()
    loss = loss + sum((s.float() ** 2).sum() for s in final)
    grads = torch.autograd.grad(loss, [x, *state, *cell.parameters()])
    return [y, *final, *grads]


@needs_cuda
@pytest.mark.parametrize("hidden", [32, 300], ids=["resident", "split"])
@pytest.mark.parametrize("persistent", [True, False], ids=["one-launch", "stepwise"])
@pytest.mark.parametrize("kind", list(GPU_CELLS))
def test_gpu_matches_loop(kind, hidden, persistent, monkeypatch):
    # Every path on a real GPU, float32 without TF32: padded, reversed, with dropout.
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    cell = GPU_CELLS[kind](16, hidden).cuda()
    T, B = 40, 12
    x = torch.randn(T, B, 16, device="cuda")
    state = tuple(0.5 * torch.randn(B, *s, device="cuda") for s in cell.state_shapes())
    lengths = torch.randint(0, T + 1, (B,))
    mask = (torch.rand(B, hidden, device="cuda") > 0.2).float() / 0.8
    engine = TritonEngine() if persistent else TritonEngine(persistent=False)
    ref = _gpu_grads(LoopEngine(), cell, x, state, lengths, True, mask)
    ours = _gpu_grads(engine, cell, x, state, lengths, True, mask)
    for a, b in zip(ref, ours, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * max(1.0, a.abs().max().item()))


@needs_cuda
@pytest.mark.parametrize("kind", ["lstm", "lstm_layernorm", "gru"])
def test_gpu_bfloat16_long_sequence(kind):
    # 500 steps of the persistent kernel (a grid barrier per phase) in bfloat16 against
    # the float32 loop: within 3% of the largest value of each result.
    torch.manual_seed(1)
    ref_cell = GPU_CELLS[kind](64, 512).cuda()
    cell = GPU_CELLS[kind](64, 512).cuda().bfloat16()
    cell.load_state_dict(ref_cell.state_dict())
    x = torch.randn(500, 8, 64, device="cuda")
    state = tuple(torch.zeros(8, *s, device="cuda") for s in cell.state_shapes())
    ref = _gpu_grads(LoopEngine(), ref_cell, x, state, None, False, None)
    ours = _gpu_grads(TritonEngine(), cell, x.bfloat16(), tuple(s.bfloat16() for s in state),
                      None, False, None)  # fmt: skip
    for a, b in zip(ref, ours, strict=True):
        assert (b.float() - a).abs().max() <= 3e-2 * a.abs().max()


# -------------------------------------------------------------- GPU compilation


@pytest.mark.slow
@needs_triton
@pytest.mark.parametrize("hidden", [64, 512], ids=["resident", "split"])
def test_kernels_compile_for_h100(hidden):
    # Without a GPU: every kernel compiles for sm_90 (bfloat16, every option on) and its
    # held W_hh tile plus one chunk's operand fit in shared memory.
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1: the kernels load interpreted in this process")
    from _triton_compile import compile_all

    for name, metadata in compile_all(hidden).items():
        assert metadata.shared <= SMEM_BUDGET, name
