"""`rnnkit esn fit`, `rnnkit esn predict` and `rnnkit esn demo` end to end."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli.errors import fail
from rnnkit.cli.esn import add_esn_parser, load_esn_run
from rnnkit.reservoir.datasets import mackey_glass

PNG = b"\x89PNG\r\n\x1a\n"


def rnnkit(*argv: str) -> int:
    """Run ``rnnkit esn ...`` the way ``rnnkit.cli.main.main`` does: errors exit 2."""
    parser = argparse.ArgumentParser(prog="rnnkit")
    add_esn_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    try:
        return args.run(args)
    except ValueError as err:
        return fail(str(err).splitlines()[0])


def fit(data: Path, out: Path, flags: str) -> int:
    return rnnkit("esn", "fit", "--csv", data, "--out", out, *flags.split())


def write_csv(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory) -> Path:
    """1,500 steps of Mackey-Glass with a time column and a text column (ignored)."""
    x = mackey_glass(1500)[:, 0]
    rows = [(i, f"day{i}", repr(v)) for i, v in enumerate(x.tolist())]
    return write_csv(tmp_path_factory.mktemp("data") / "mg.csv", ["t", "label", "x"], rows)


@pytest.fixture(scope="module")
def fitted(series_csv, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "esn"
    assert fit(series_csv, run, "--target x --units 100") == 0
    return run


def test_fit_learns_and_writes_the_run(fitted, series_csv):
    assert sorted(p.name for p in fitted.iterdir()) == [
        "model.safetensors",
        "prediction.png",
        "run.json",
    ]
    record = json.loads((fitted / "run.json").read_text())
    assert record["test_nrmse"] < 0.05
    assert (record["target"], record["inputs"], record["horizon"]) == ("x", ["x"], 1)
    assert (record["train_rows"], record["test_rows"]) == (1199, 300)
    lo, hi = record["scaling"]["x"]
    assert 0.4 < lo < 0.5 and 1.2 < hi < 1.35
    assert record["esn"]["units"] == 100
    assert (fitted / "prediction.png").read_bytes()[:8] == PNG


def test_fit_reports_the_test_nrmse(series_csv, tmp_path, capsys):
    code = fit(series_csv, tmp_path / "run", "--target x --units 50 --washout 20 --horizon 3")
    assert code == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert f"test NRMSE {record['test_nrmse']:.4g} on 300 rows" in out
    assert record["test_nrmse"] < 0.1  # three steps ahead, a smaller network


def test_predict_writes_what_the_model_predicts(fitted, series_csv, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert rnnkit("esn", "predict", fitted, "--csv", series_csv, "--out", out) == 0
    assert str(out) in capsys.readouterr().out
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["row", "target_row", "x_predicted"]
    written = np.array([float(r["x_predicted"]) for r in rows])

    model, record = load_esn_run(fitted)
    lo, hi = record["scaling"]["x"]
    x = mackey_glass(1500)
    expected = (model.predict(2 * (x - lo) / (hi - lo) - 1)[:, 0] + 1) * (hi - lo) / 2 + lo
    np.testing.assert_array_equal(written, expected)
    assert [int(r["target_row"]) for r in rows[:3]] == [1, 2, 3]
    # Past the washout the predictions follow the series one step ahead.
    assert np.abs(written[200:-1] - x[201:, 0]).max() < 0.05


def test_predict_defaults_to_the_run_directory(fitted, series_csv):
    assert rnnkit("esn", "predict", fitted, "--csv", series_csv) == 0
    assert (fitted / "predictions.csv").is_file()


def test_fit_with_other_input_columns(tmp_path):
    t = np.arange(1200)
    rows = [(np.sin(0.1 * i), np.cos(0.1 * i)) for i in t]
    data = write_csv(tmp_path / "sc.csv", ["s", "c"], rows)
    code = fit(data, tmp_path / "run", "--target s --inputs c --units 50 --horizon 2")
    assert code == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["inputs"] == ["c"] and record["test_nrmse"] < 0.05


def test_demo_runs_and_draws(tmp_path, capsys):
    code = rnnkit("esn", "demo", "--units", 200, "--steps", 2000, "--out", tmp_path)
    assert code == 0
    out = capsys.readouterr().out
    one_step = float(out.split("one-step NRMSE on the last 400 steps: ")[1].split()[0])
    closed = float(out.split("100-step closed-loop NRMSE: ")[1].split()[0])
    assert one_step < 0.02 and closed < 0.5
    assert (tmp_path / "mackey_glass.png").read_bytes()[:8] == PNG


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.csv").write_text("")
    (d / "latin1.csv").write_bytes("x,é\n1,2\n".encode("latin-1"))
    return {
        "nan": write_csv(d / "nan.csv", ["x"], [[1.0], ["nan"], [2.0]]),
        "text": write_csv(d / "text.csv", ["x", "y"], [[1, 2], [3, "n/a"]]),
        "empty_cell": write_csv(d / "cell.csv", ["x", "y"], [[1, 2], ["", 3]]),
        "short": write_csv(d / "short.csv", ["x"], [[i] for i in range(50)]),
        "constant": write_csv(d / "const.csv", ["x", "k"], [[np.sin(i), 1] for i in range(400)]),
        "other": write_csv(d / "other.csv", ["a", "b"], [[1, 2]]),
        "empty": d / "empty.csv",
        "latin1": d / "latin1.csv",
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--csv", "{missing}", "--target", "x"], "no such CSV file: "),
        (
            ["fit", "--csv", "{mg}", "--target", "y"],
            "has no column 'y'; its columns are: t, label, x",
        ),
        (["fit", "--csv", "{text}", "--target", "y"], "line 3, column 'y': 'n/a' is not a number"),
        (["fit", "--csv", "{empty_cell}", "--target", "x"], "line 3, column 'x': an empty cell"),
        (["fit", "--csv", "{nan}", "--target", "x"], "line 3, column 'x': 'nan' is not a finite"),
        (["fit", "--csv", "{short}", "--target", "x"], "has 50 data rows; with --washout 100"),
        (["fit", "--csv", "{empty}", "--target", "x"], "is empty"),
        (["fit", "--csv", "{latin1}", "--target", "x"], "is not UTF-8"),
        (["fit", "--csv", "{constant}", "--target", "x", "--inputs", "x", "k"], "'k' is constant"),
        (["fit", "--csv", "{mg}", "--target", "x", "--sr", "-1"], "sr must be > 0, got -1.0"),
        (["fit", "--csv", "{mg}", "--target", "x", "--lr", "1.5"], "lr must be in (0, 1]"),
        (["fit", "--csv", "{mg}", "--target", "x", "--units", "0"], "units must be an integer"),
        (["fit", "--csv", "{mg}", "--target", "x", "--ridge", "-1"], "ridge must be ≥ 0"),
        (["fit", "--csv", "{mg}", "--target", "x", "--horizon", "0"], "--horizon must be at"),
        (["fit", "--csv", "{mg}", "--target", "x", "--out", "{mg}"], "is a file; give a directory"),
        (["predict", "{tmp}", "--csv", "{mg}"], "does not hold a run of `rnnkit esn fit`"),
        (["predict", "{tmp}/nowhere", "--csv", "{mg}"], "no such run directory"),
        (["predict", "{run}", "--csv", "{other}"], "has no column 'x'; its columns are: a, b"),
        (["demo", "--steps", "10"], "--steps must be at least 1000"),
        (["demo", "--units", "0"], "units must be an integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv, message, series_csv, fitted, bad_files, tmp_path, capsys
):
    names = {
        **bad_files,
        "mg": series_csv,
        "run": fitted,
        "tmp": tmp_path,
        "missing": tmp_path / "missing.csv",
    }
    argv = [a.format(**names) for a in argv]
    if argv[0] in ("fit", "demo") and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert rnnkit("esn", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "out" / "run.json").exists()
