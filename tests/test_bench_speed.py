"""`benchmarks/speed.py` / `rnnkit bench speed`: a tiny run end to end, errors, memory."""

from __future__ import annotations

import json
import runpy
import sys

import pytest
import torch

from rnnkit.bench import speed
from rnnkit.cli.main import main as rnnkit_main
from rnnkit.engines.fused import build

TINY = ["--T", "3", "--B", "2", "--H", "8", "--I", "4", "--repeats", "1", "--min-time", "0"]
TINY += ["--peak-size", "32", "--cells", "rnn_tanh", "lstm"]
GATES = {"rnn_tanh": 1, "lstm": 4}


@pytest.fixture
def no_fused(monkeypatch):
    """The fused kernels reported unbuildable: no compile (tens of seconds) in fast tests."""
    monkeypatch.setattr(build, "load", lambda: "not built in this test")


def test_tiny_run_writes_medians_flops_and_table(tmp_path, capsys, no_fused):
    out = tmp_path / "speed.json"
    assert speed.main([*TINY, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out

    assert [r["cell"] for r in report["results"]] == ["rnn_tanh", "lstm"]
    assert report["peak"]["gflops"] > 0 and report["machine"]["torch"] == torch.__version__
    assert report["fused_build"]["error"] == "not built in this test"
    for r in report["results"]:
        T, B, I, H = r["T"], r["B"], r["I"], r["H"]  # noqa: E741
        assert (T, B, I, H) == (3, 2, 4, 8)
        G = GATES[r["cell"]] * H
        assert r["forward_flops"] == 2 * T * B * G * (I + H)
        assert r["flops"] == 3 * 2 * T * B * G * (I + H)
        assert set(r["impls"]) == set(speed.DEFAULT_IMPLS)
        for name, row in r["impls"].items():
            config = f"| {r['cell']} T=3 B=2 I=4 H=8 | {row['label']} |"
            assert config in printed
            if name == "fused":  # unsupported here: n/a, no numbers
                assert not row["supported"] and "median_s" not in row
                assert f"{config} n/a |" in printed
                continue
            assert row["supported"], (name, row["reason"])
            assert len(row["seconds"]) == 1
            assert isinstance(row["median_s"], float) and row["median_s"] > 0
            assert row["gflops"] == pytest.approx(r["flops"] / row["median_s"] / 1e9)
            assert row["saved_bytes"] > 0
        assert r["impls"]["torch.nn"]["ratio"] == pytest.approx(1.0)
        assert r["peak"]["gflops"] > 0 and len(r["peak"]["seconds"]) == 1
        assert f"| {r['cell']} T=3 B=2 I=4 H=8 | peak matmul (32², torch.mm) |" in printed
    assert "wrote" in printed and "targets" not in printed  # not the target config


@pytest.mark.parametrize(
    "bad",
    [
        ["--cells", "lstm", "nope"],
        ["--engines", "turbo"],
        ["--T", "0"],
        ["--H", "8", "-3"],
        ["--repeats", "0"],
        ["--dtype", "float16"],
        ["--grid", "huge"],
    ],
)
def test_cli_bad_input_is_one_line_exit_2(bad, capsys):
    assert rnnkit_main(["bench", "speed", *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
def test_cuda_without_a_device_is_one_line_exit_2(capsys):
    assert rnnkit_main(["bench", "speed", "--device", "cuda"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_script_runs_the_same_main(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["benchmarks/speed.py", "--engines", "warp"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path("benchmarks/speed.py", run_name="__main__")
    assert exit_.value.code == 2
    assert "'warp' is not known" in capsys.readouterr().err


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm"])
def test_saved_memory_grows_with_the_sequence(cell, no_fused):
    names = ("torch.nn", "cell-loop", "loop")
    sizes = {}
    for T in (3, 12):
        x, impls = speed.build_impls(speed.Config(cell, T, 2, 4, 8), names, "cpu", torch.float32)
        sizes[T] = {impl.name: speed.saved_bytes(impl.forward, x) for impl in impls}
    for name in names:
        assert sizes[12][name] > sizes[3][name] > 0, (name, sizes)


def test_targets_name_the_goals():
    def result(cell, **ms):
        impls = {name: {"median_s": t / 1e3, "pct_peak": 60.0} for name, t in ms.items()}
        return {"cell": cell, "T": 100, "B": 32, "I": 64, "H": 256, "impls": impls}

    goals = speed.targets(
        [
            result("rnn_tanh", **{"torch.nn": 10, "auto": 7}),
            result("leaky", **{"torch.nn": 10, "cell-loop": 40, "fused": 12}),
        ]
    )
    by_name = {g["target"]: g for g in goals}
    assert by_name["rnn_tanh auto / torch.nn"]["met"] is True
    assert by_name["leaky fused / nn.RNN"]["value"] == pytest.approx(1.2)
    assert by_name["leaky fused / RNNCell loop"]["met"] is False  # 0.3 > 0.25


@pytest.mark.slow
def test_fused_rows_when_the_kernels_build(tmp_path):
    """With the real build (may compile for a minute): fused either runs or says why."""
    out = tmp_path / "speed.json"
    assert speed.main([*TINY, "--cells", "rnn_tanh", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["results"][0]["impls"]["fused"]
    assert (row["median_s"] > 0) if row["supported"] else row["reason"]
