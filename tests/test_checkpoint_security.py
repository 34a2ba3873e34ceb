"""Loading a checkpoint never runs code from it.

Weights are safetensors (a JSON header and raw bytes), configs and pointers JSON, and
the one pickle, ``trainer.pt`` (optimizer moments, RNG states), is read with
``torch.load(weights_only=True)``, which rebuilds tensors and plain values only. Here a
pickle whose unpickling would write a marker file is put wherever rnnkit reads a saved
file: every load is refused with a one-line ValueError naming the file, and the marker
never appears (the same payload loaded with ``weights_only=False`` does write it, so the
payload is live). A scan of ``src/`` keeps every ``torch.load`` at ``weights_only=True``
and every other unpickler out.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.data.vocab import Vocab
from rnnkit.models import LanguageModel, LMConfig
from rnnkit.reservoir import EchoStateNetwork
from rnnkit.train import load_checkpoint, save_checkpoint

SRC = Path(__file__).resolve().parent.parent / "src" / "rnnkit"


class Payload:
    """Unpickling this calls ``exec``: it writes ``marker`` (what an attacker's code could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def torch_payload(marker: Path) -> bytes:
    """A file in torch.save's zip format whose data.pkl holds the payload."""
    buffer = io.BytesIO()
    torch.save({"optimizer": Payload(marker), "step": 1}, buffer)
    return buffer.getvalue()


def raw_payload(marker: Path) -> bytes:
    """A bare pickle (torch.load's legacy format path) holding the payload."""
    return pickle.dumps({"state": Payload(marker)}, protocol=2)


PAYLOADS = {"torch-zip": torch_payload, "raw-pickle": raw_payload}


def test_the_payloads_are_live(tmp_path):
    """Unpickled without weights_only the payloads do run: the refusals below are not vacuous."""
    marker = tmp_path / "zip.marker"
    (tmp_path / "zip.pt").write_bytes(torch_payload(marker))
    torch.load(tmp_path / "zip.pt", weights_only=False)
    assert marker.read_text() == "pwned"
    marker = tmp_path / "raw.marker"
    pickle.loads(raw_payload(marker))  # unpickled on purpose: the payload runs
    assert marker.read_text() == "pwned"


@pytest.fixture
def run(tmp_path) -> Path:
    """A run directory with one "last" checkpoint of a tiny language model."""
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=5, hidden_size=4, num_layers=1, embedding_size=3))
    root = tmp_path / "run"
    save_checkpoint(
        root,
        "last",
        model=model,
        model_config=model.config.to_dict(),
        train_config={"lr": 0.1, "optimizer": "adam"},
        optimizer=torch.optim.Adam(model.parameters()),
        scheduler=None,
        step=1,
        extra={},
        meta={"task": "lm", "data": {}},
    )
    Vocab("char", ["<unk>", "a", "b", "c", "d"]).save(root / "vocab.json")
    return root


def plant(run: Path, name: str, data: bytes) -> Path:
    """Replace checkpoint file ``name`` with ``data``, the pointer's sizes kept consistent."""
    pointer = json.loads((run / "last.json").read_text())
    target = run / pointer["path"] / name
    target.write_bytes(data)
    pointer["files"][name] = len(data)
    (run / "last.json").write_text(json.dumps(pointer))
    return target


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("name", ["trainer.pt", "model.safetensors", "config.json"])
def test_a_pickle_in_a_checkpoint_is_refused_and_never_runs(run, tmp_path, name, payload):
    marker = tmp_path / "marker"
    target = plant(run, name, PAYLOADS[payload](marker))
    with pytest.raises(ValueError) as caught:
        load_checkpoint(run, "last")  # trainer state too, as a resume reads it
    message = str(caught.value)
    assert f"checkpoint {target.parent} is damaged ({name}" in message and "\n" not in message
    if name != "trainer.pt":  # sampling and predicting skip trainer.pt but read the rest
        with pytest.raises(ValueError, match=f"is damaged \\({name}"):
            load_checkpoint(run, "last", trainer_state=False)
    assert not marker.exists()


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_the_cli_refuses_a_planted_pickle_in_one_line(run, tmp_path, capsys, payload):
    marker = tmp_path / "marker"
    sampled = tmp_path / "sampled"
    shutil.copytree(run, sampled)
    plant(sampled, "model.safetensors", PAYLOADS[payload](marker))
    assert main(["sample", str(sampled), "--checkpoint", "last", "--length", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: checkpoint ") and "(model.safetensors: " in err
    assert err.count("\n") == 1 and "Traceback" not in err
    # --resume is what reads trainer.pt (give the tiny run the data settings it needs).
    text = tmp_path / "text.txt"
    text.write_text("abcd" * 200)
    meta_fix(run, text)
    plant(run, "trainer.pt", PAYLOADS[payload](marker))
    assert main(["lm", "train", "--out", str(run), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is damaged (trainer.pt: " in err.splitlines()[-1]
    assert err.splitlines()[-1].startswith("rnnkit: error: ") and "Traceback" not in err
    assert not marker.exists()


def meta_fix(run: Path, text: Path) -> None:
    """Give the fake run the data settings `lm train --resume` needs."""
    pointer = json.loads((run / "last.json").read_text())
    config_file = run / pointer["path"] / "config.json"
    config = json.loads(config_file.read_text())
    config["meta"]["data"] = {"text": str(text), "tokens": "char", "val_fraction": 0.1}
    config["train"] = {"batch_size": 2, "seq_len": 4, "max_steps": 3, "optimizer": "adam"}
    config_file.write_text(json.dumps(config))
    pointer["files"]["config.json"] = config_file.stat().st_size
    (run / "last.json").write_text(json.dumps(pointer))


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_esn_and_vocabulary_files_holding_a_pickle_are_refused(tmp_path, payload):
    marker = tmp_path / "marker"
    data = PAYLOADS[payload](marker)
    esn_file, vocab_file = tmp_path / "esn.safetensors", tmp_path / "vocab.json"
    esn_file.write_bytes(data)
    vocab_file.write_bytes(data)
    with pytest.raises(ValueError, match=r"is damaged or not a safetensors file"):
        EchoStateNetwork.load(esn_file)
    with pytest.raises(ValueError, match=r"is not a vocabulary file \(not valid JSON"):
        Vocab.load(vocab_file)
    assert not marker.exists()


def test_a_pointer_cannot_lead_outside_the_run(run, tmp_path):
    """last.json naming another folder (a planted or copied run) is refused, not followed."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run, elsewhere)
    pointer = json.loads((run / "last.json").read_text())
    outside = json.loads((elsewhere / "last.json").read_text())["path"]
    for path in (f"../elsewhere/{outside}", str((elsewhere / outside).resolve()), "."):
        (run / "last.json").write_text(json.dumps(pointer | {"path": path}))
        with pytest.raises(ValueError, match=r"last.json is damaged \(it points outside "):
            load_checkpoint(run, "last")
    bad_name = pointer | {"files": {"../../trainer.pt": 3}}
    (run / "last.json").write_text(json.dumps(bad_name))
    with pytest.raises(ValueError, match="it points outside"):
        load_checkpoint(run, "last")


def test_saved_files_are_safetensors_json_and_a_weights_only_pickle(run):
    pointer = json.loads((run / "last.json").read_text())
    where = run / pointer["path"]
    weights = (where / "model.safetensors").read_bytes()
    header_size = int.from_bytes(weights[:8], "little")
    header = json.loads(weights[8 : 8 + header_size])  # safetensors: a JSON header, raw data
    assert set(header) - {"__metadata__"} == set(load_checkpoint(run).state_dict)
    assert json.loads((where / "config.json").read_text())["format_version"] == 1
    state = torch.load(where / "trainer.pt", weights_only=True)  # no unsafe globals needed
    assert set(state) == {"optimizer", "scheduler", "step", "rng", "extra"}


# -------------------------------------------------------------- what src/ may call


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def dotted(node: ast.AST) -> str:
    """``torch.load`` for the expression ``torch.load``; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


UNPICKLERS = (
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "cPickle.load",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "torch.jit.load",
    "torch.package.PackageImporter",
)


def test_every_torch_load_in_src_is_weights_only():
    sources = sorted(SRC.rglob("*.py"))
    assert len(sources) > 50  # the scan sees the package
    loads, offenders = [], []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for call in calls(ast.parse(text, filename=str(path))):
            name = dotted(call.func)
            where = f"{path.relative_to(SRC)}:{call.lineno}"
            if name == "torch.load" or name.endswith(".torch.load"):
                loads.append(where)
                if keyword(call, "weights_only") is not True:
                    offenders.append(f"{where}: torch.load without weights_only=True")
            if name in UNPICKLERS:
                offenders.append(f"{where}: {name}")
            pickles = keyword(call, "allow_pickle") not in (None, False)
            if name in ("np.load", "numpy.load") and pickles:
                offenders.append(f"{where}: {name} with allow_pickle")
        # `from torch import load` or `from pickle import loads` would slip past the names.
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle", "dill"):
                picked = {a.name for a in node.names} & {"load", "loads", "Unpickler"}
                if picked:
                    offenders.append(f"{path.relative_to(SRC)}: from {node.module} import load")
    assert offenders == []
    assert [where.split(":")[0] for where in loads] == ["train/checkpoint.py"]  # trainer.pt
    assert "weights_only=True" in (SRC / "train" / "checkpoint.py").read_text()
