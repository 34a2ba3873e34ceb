"""Training under faults: kill -9 at random moments, a full or read-only disk, damaged files.

- **Kills**: ``rnnkit lm train`` and ``rnnkit classify train`` run as subprocesses and are
  killed with SIGKILL at seeded random moments (after a checkpoint, mid-step, mid-save,
  during start-up and resume), each time resumed with ``--resume``. After every kill the
  run's files must hold: the checkpoints ``last.json`` / ``best.json`` point at load, and
  ``metrics.csv`` has no torn line and strictly increasing steps. The run finally finishes,
  and its weights, best checkpoint and metrics history equal those of an uninterrupted run
  with the same settings (exact resume).
- **Full or read-only disk**: a checkpoint that cannot be written is one ``OSError`` (one
  line, exit 2 from the command line, no traceback), and the last good checkpoint stays
  loadable and byte-for-byte unchanged; the run resumes once the disk is writable again.
  The failure is simulated by patching Python's file calls (everywhere) and, where this
  process may mount filesystems (root in a container that allows it), on a real tmpfs
  that is filled up or remounted read-only.
- **Damaged checkpoints**: cut weights, cut configs, other format versions and files that
  are not safetensors are one-line ``ValueError``\\ s naming the file (exit 2 from the CLI).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as safetensors_bytes

from rnnkit.cli.main import main
from rnnkit.models import LanguageModel, LMConfig
from rnnkit.models.classifier import ClassifierConfig, SequenceClassifier
from rnnkit.train import load_checkpoint, save_checkpoint
from rnnkit.train.metrics import MetricsLog

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # 2 shared cores
TIMING_COLUMNS = ("tokens_per_s", "examples_per_s", "elapsed")  # differ run to run
START_SECONDS = 120  # a session that saves nothing for this long is stuck


def rnnkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnnkit", *map(str, args)]


# ----------------------------------------------------------------------- the jobs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = random.Random(0)
    words = ["the cat", "a dog", "sat on", "the mat", "and ran", "away."]
    lines = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(80)]
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sequences(tmp_path_factory) -> Path:
    """A wide CSV of 80 sequences of 8 steps, labelled by the sign of their mean."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 8)) + rng.choice([-0.5, 0.5], size=(80, 1))
    rows = [",".join(["label", *(f"t{i}" for i in range(8))])]
    rows += [",".join(["pos" if sum(r) > 0 else "neg", *map(repr, r)]) for r in x.tolist()]
    path = tmp_path_factory.mktemp("data") / "seqs.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@dataclass
class Job:
    """A training command, its resume command, and how to rebuild its model."""

    name: str
    start: list[str]
    resume: list[str]
    build: type  # the model class; its config class is build_config
    build_config: type

    def model(self, checkpoint):
        return self.build(self.build_config.from_dict(checkpoint.model_config))


def lm_job(corpus: Path, run: Path, config: Path, max_steps: int) -> Job:
    config.write_text(
        textwrap.dedent(
            f"""\
            [model]
            hidden_size = 16
            num_layers = 1
            embedding_size = 8
            dropout = 0.1  # draws from the RNG: resume must restore it exactly
            [train]
            batch_size = 4
            seq_len = 16
            lr = 0.01
            max_steps = {max_steps}
            checkpoint_every = 2
            eval_every = 5
            log_every = 1
            """
        )
    )
    quiet = ["--no-progress", "--sample-length", "0"]
    return Job(
        "lm",
        rnnkit("lm", "train", "--text", corpus, "--out", run, "--config", config, *quiet),
        rnnkit("lm", "train", "--out", run, "--resume", *quiet),
        LanguageModel,
        LMConfig,
    )


def classify_job(data: Path, run: Path, config: Path, max_steps: int) -> Job:
    config.write_text(
        textwrap.dedent(
            f"""\
            [model]
            cell = "gru"
            hidden_size = 8
            dropout = 0.2
            [train]
            batch_size = 8
            lr = 0.01
            max_steps = {max_steps}
            checkpoint_every = 2
            eval_every = 3
            log_every = 1
            """
        )
    )
    return Job(
        "classify",
        rnnkit("classify", "train", "--data", data, "--out", run, "--config", config),
        rnnkit("classify", "train", "--out", run, "--resume"),
        SequenceClassifier,
        ClassifierConfig,
    )


# ------------------------------------------------------------- the run's files


def pointer_step(run: Path, tag: str = "last") -> int:
    """The step ``tag``.json points at (-1 before the first save)."""
    try:
        return int(json.loads((run / f"{tag}.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return -1


def metrics_rows(run: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of metrics.csv, checked whole: no torn line, steps increasing.

    One repeat is tolerated, and checked for: ``FitTrainer`` logs the last step's row,
    then its final evaluation as a second row of the same step (when the last step is
    not an evaluation step and ``log_every`` divides it).
    """
    text = (run / "metrics.csv").read_text(encoding="utf-8")
    assert text.endswith("\n"), f"torn last line: {text[-80:]!r}"
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    assert header[0] == "step"
    for row in rows:
        assert len(row) == len(header), f"torn row {row}"
    steps = [int(row[0]) for row in rows]
    if len(steps) > 1 and steps[-1] == steps[-2]:
        final = dict(zip(header, rows[-1], strict=True))
        assert final["val_loss"] and final["loss"] == "nan", final  # the final evaluation
        steps.pop()
    back = [(a, b) for a, b in itertools.pairwise(steps) if a >= b]
    assert not back, f"steps not increasing at {back[:5]} in {run / 'metrics.csv'}"
    return header, rows


def check_run(job: Job, run: Path) -> int:
    """What must hold after any kill; returns the step last.json points at."""
    last = load_checkpoint(run, "last")  # with the trainer state a resume reads
    last.load_into(job.model(last))
    if (run / "best.json").exists():
        best = load_checkpoint(run, "best")
        best.load_into(job.model(best))
    metrics_rows(run)
    config = json.loads((run / "train_config.json").read_text())
    assert config["checkpoint_every"] == 2 and config["log_every"] == 1
    return last.step


def comparable(run: Path) -> list[dict]:
    """metrics.csv rows without the columns that measure time."""
    header, rows = metrics_rows(run)
    keep = [i for i, name in enumerate(header) if name not in TIMING_COLUMNS]
    return [{header[i]: row[i] for i in keep} for row in rows]


def assert_same_run(run: Path, reference: Path) -> None:
    """Same final and best weights, same history as the uninterrupted reference."""
    for tag in ("last", "best"):
        ours, theirs = load_checkpoint(run, tag), load_checkpoint(reference, tag)
        assert ours.step == theirs.step, tag
        assert ours.state_dict.keys() == theirs.state_dict.keys()
        for key, value in theirs.state_dict.items():
            assert torch.equal(ours.state_dict[key], value), f"{tag}: {key} differs"
    assert comparable(run) == comparable(reference)


# ----------------------------------------------------------------------- kills


def wait_for(proc: subprocess.Popen, condition, seconds: float) -> bool:
    """Poll until ``condition()`` (True) or the process ends or time runs out (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def progressed(run: Path, step: int):
    """A test for ``wait_for``: last.json points past ``step``."""
    return lambda: pointer_step(run) > step


def kill_and_resume(job: Job, run: Path, kills: int, seed: int, log: Path) -> dict:
    """Kill ``job`` ``kills`` times at random moments, checking the run after each kill.

    Even kills come a random 0-0.4 s after the session's first new checkpoint (mid-step
    or mid-save); odd ones a random 30-100 % of the previous session's start-up time
    (launch to first new checkpoint) after launch, or at that first checkpoint if it
    comes sooner: while it imports, loads the checkpoint, rewrites metrics.csv, saves.
    """
    rng = random.Random(seed)
    last_step, startup, steps = -1, None, []
    command = job.start
    for k in range(kills):
        with open(log, "ab") as err:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
        launched = time.monotonic()
        saved = progressed(run, last_step)
        try:
            if k % 2 == 1 and startup is not None:  # start-up, or at the latest its first save
                wait_for(proc, saved, rng.uniform(0.3, 1) * startup)
            else:
                ok = wait_for(proc, saved, START_SECONDS)
                assert ok, f"kill {k}: no checkpoint; see {log}: {log.read_text()[-2000:]}"
                startup = time.monotonic() - launched
                wait_for(proc, lambda: False, rng.uniform(0.0, 0.4))
            assert proc.poll() is None, f"kill {k}: the run ended first; raise max_steps"
        finally:
            proc.kill()  # SIGKILL
            proc.wait()
        step = check_run(job, run)
        assert step >= last_step, "a checkpoint went back in time"
        last_step = step
        steps.append(step)
        command = job.resume
    with open(log, "ab") as err:
        done = subprocess.run(job.resume, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
    assert done.returncode == 0, log.read_text()[-2000:]
    return {"kills": kills, "steps at kills": steps}


def survive_kills(job_of, data: Path, tmp_path: Path, kills: int, seed: int) -> dict:
    """Run the reference alongside (the second core), kill the other run, compare."""
    max_steps = 40 + 40 * kills  # more than the kills can reach, even on an idle machine
    reference = job_of(data, tmp_path / "reference", tmp_path / "ref.toml", max_steps)
    job = job_of(data, tmp_path / "killed", tmp_path / "run.toml", max_steps)
    ref_log = tmp_path / "reference.log"
    with open(ref_log, "wb") as err:
        ref = subprocess.Popen(reference.start, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
    tick = time.monotonic()
    try:
        stats = kill_and_resume(job, tmp_path / "killed", kills, seed, tmp_path / "killed.log")
    finally:
        assert ref.wait(timeout=600) == 0, ref_log.read_text()[-2000:]
    stats["seconds"] = round(time.monotonic() - tick, 1)
    run = tmp_path / "killed"
    assert load_checkpoint(run, "last").step == max_steps
    assert_same_run(run, tmp_path / "reference")
    stats["leftover files"] = sorted(
        str(p.relative_to(run)) for p in run.rglob("*") if ".tmp-" in p.name
    )
    print(f"\n{job.name}: {stats}")
    return stats


def test_lm_train_survives_kills_and_resumes_exactly(corpus, tmp_path):
    stats = survive_kills(lm_job, corpus, tmp_path, kills=3, seed=1)
    assert stats["kills"] == 3


def test_classify_train_survives_kills_and_resumes_exactly(sequences, tmp_path):
    stats = survive_kills(classify_job, sequences, tmp_path, kills=3, seed=2)
    assert stats["kills"] == 3


@pytest.mark.slow
def test_lm_train_survives_twenty_kills(corpus, tmp_path):
    stats = survive_kills(lm_job, corpus, tmp_path, kills=20, seed=3)
    assert stats["kills"] == 20


@pytest.mark.slow
def test_classify_train_survives_twenty_kills(sequences, tmp_path):
    stats = survive_kills(classify_job, sequences, tmp_path, kills=20, seed=4)
    assert stats["kills"] == 20


# ------------------------------------------------------------ full or read-only disk


def tiny_lm(seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    return LanguageModel(LMConfig(vocab_size=6, hidden_size=4, num_layers=1, embedding_size=3))


def save(run: Path, model, step: int, tag: str = "last") -> Path:
    return save_checkpoint(
        run,
        tag,
        model=model,
        model_config=model.config.to_dict(),
        train_config={"lr": 0.1},
        optimizer=torch.optim.Adam(model.parameters()),
        scheduler=None,
        step=step,
        extra={"history": []},
        meta={"task": "lm"},
    )


def digest(run: Path) -> dict[str, str]:
    """sha256 of every file under ``run``."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


class BrokenDisk:
    """Python's file calls under ``root`` fail the way a full or read-only disk fails.

    ``full``: files open, but every write (and fsync) raises ENOSPC. ``readonly``:
    creating, opening for writing, renaming and removing raise EROFS. Reading works.
    """

    def __init__(self, root: Path, mode: str) -> None:
        self.root, self.mode = str(Path(root).resolve()), mode

    def under(self, path) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(self.root)
        except TypeError:
            return False  # a file descriptor

    def error(self, code: int, path) -> OSError:
        return OSError(code, os.strerror(code), os.fspath(path))

    def install(self, monkeypatch) -> None:
        import builtins

        real_open, real_mkdir, real_replace = io.open, os.mkdir, os.replace
        real_fsync, real_unlink, real_rmdir = os.fsync, os.unlink, os.rmdir
        disk = self

        class FullFile(io.FileIO):
            def write(self, data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def broken_open(file, mode="r", *args, **kwargs):
            writing = any(c in mode for c in "wax+")
            if not (writing and disk.under(file)):
                return real_open(file, mode, *args, **kwargs)
            if disk.mode == "readonly":
                raise disk.error(errno.EROFS, file)
            raw = FullFile(file, mode.replace("b", "").replace("t", ""))
            buffered = io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
            if "b" in mode:
                return buffered
            encoding, newline = kwargs.get("encoding") or "utf-8", kwargs.get("newline")
            return io.TextIOWrapper(buffered, encoding=encoding, newline=newline)

        def guard(real, code):
            def call(path, *args, **kwargs):
                if disk.under(path):
                    if real is real_mkdir and os.path.lexists(path):
                        raise disk.error(errno.EEXIST, path)  # what Linux says first
                    raise disk.error(code, path)
                return real(path, *args, **kwargs)

            return call

        def fsync(fd):
            if disk.mode == "full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        monkeypatch.setattr(builtins, "open", broken_open)
        monkeypatch.setattr(io, "open", broken_open)
        monkeypatch.setattr(os, "fsync", fsync)
        if self.mode == "readonly":
            for name, real in (("mkdir", real_mkdir), ("replace", real_replace)):
                monkeypatch.setattr(os, name, guard(real, errno.EROFS))
            for name, real in (("unlink", real_unlink), ("remove", real_unlink)):
                monkeypatch.setattr(os, name, guard(real, errno.EROFS))
            monkeypatch.setattr(os, "rmdir", guard(real_rmdir, errno.EROFS))


@pytest.mark.parametrize("mode", ["full", "readonly"])
def test_a_checkpoint_the_disk_refuses_is_one_oserror_and_keeps_the_last(mode, tmp_path):
    run = tmp_path / "run"
    model = tiny_lm()
    save(run, model, 3)
    save(run, model, 3, tag="best")
    before = digest(run)
    with torch.no_grad():
        model.head.bias.add_(1.0)
    with pytest.MonkeyPatch.context() as patch:
        BrokenDisk(run, mode).install(patch)
        with pytest.raises(OSError) as caught:
            save(run, model, 4)
    code = {"full": errno.ENOSPC, "readonly": errno.EROFS}[mode]
    message = str(caught.value)
    assert caught.value.errno == code and "\n" not in message
    reason = os.strerror(code)
    assert (
        f"cannot save the last checkpoint of step 4 ({reason}; last.json still points at step 3)"
        in message
    )
    assert digest(run) == before  # nothing written, nothing removed, no temporary file
    checkpoint = load_checkpoint(run, "last")
    assert checkpoint.step == 3
    assert not torch.equal(checkpoint.state_dict["head.bias"], model.head.bias.detach())


@pytest.mark.parametrize("mode", ["full", "readonly"])
def test_an_esn_saved_to_a_broken_disk_is_one_oserror_naming_the_file(mode, tmp_path):
    from rnnkit.reservoir import EchoStateNetwork

    t = np.linspace(0, 10, 100)[:, None]
    esn = EchoStateNetwork(units=10, seed=0).fit(np.sin(t[:-1]), np.sin(t[1:]))
    path = tmp_path / "esn.safetensors"
    esn.save(path)
    before = path.read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        BrokenDisk(tmp_path, mode).install(patch)
        with pytest.raises(OSError) as caught:
            esn.save(path)
    assert caught.value.filename == str(path)  # the file, not its hidden temporary name
    assert caught.value.errno == {"full": errno.ENOSPC, "readonly": errno.EROFS}[mode]
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]
    assert np.array_equal(EchoStateNetwork.load(path).predict(t), esn.predict(t))


def test_the_first_checkpoint_on_a_read_only_disk_says_none_is_saved(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        BrokenDisk(run, "readonly").install(patch)
        with pytest.raises(OSError, match=r"step 1 \(Read-only file system; no last checkpoint"):
            save(run, tiny_lm(), 1)
    assert list(run.iterdir()) == []


# A training run in a subprocess whose disk breaks right after its `after`-th checkpoint
# save: the hook prints the digest of the run at that moment, then breaks the disk by
# patching Python's file calls (patch-full, patch-readonly: files opened from then on), or
# for real: fill the tmpfs, or mount it read-only over itself (remount); the metrics file,
# already open, stays writable there, as a file opened before a remount would.
HOOK = """
import hashlib, json, os, subprocess, sys
from pathlib import Path
import pytest
sys.path.insert(0, {tests!r})
from test_faults import BrokenDisk, digest
import rnnkit.train.fit, rnnkit.train.trainer
from rnnkit.cli.main import main

run, how, after, argv = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
calls = []

def break_disk():
    if how.startswith("patch-"):
        BrokenDisk(run, how[6:]).install(pytest.MonkeyPatch())
    elif how == "fill":
        with open(run.parent / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"0" * 65536)
                    f.flush()
            except OSError:
                pass
    elif how == "remount":  # a read-only bind mount over the folder (open files stay writable)
        disk = str(run.parent)
        subprocess.run(["mount", "--bind", disk, disk], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", disk], check=True)

for module in (rnnkit.train.fit, rnnkit.train.trainer):
    real = module.save_checkpoint
    def hooked(*args, real=real, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == after:
            print(json.dumps(digest(run)), flush=True)
            break_disk()
        return out
    module.save_checkpoint = hooked
sys.exit(main(argv))
"""


def mountable() -> bool:
    """Whether this process may mount a tmpfs (root in a container that allows it)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(f"/tmp/rnnkit-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)])
        if ok.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=True)
        return True
    except OSError:
        return False
    finally:
        probe.rmdir()


@pytest.fixture
def disk(tmp_path):
    """A 4 MiB tmpfs at tmp_path/disk, unmounted afterwards."""
    if not mountable():
        pytest.skip("cannot mount a tmpfs here (needs root and a container that allows it)")
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    yield where
    for _ in range(3):  # a read-only bind mount left on top by a failed test, then the tmpfs
        if subprocess.run(["umount", "-l", str(where)], capture_output=True).returncode:
            break


def break_and_resume(corpus: Path, run: Path, how: str, target: str, resume: bool) -> str:
    """Train until the disk breaks, check the failure and the checkpoint; heal, resume."""
    if target == "checkpoint":  # saves at steps 2 and 4, the disk breaks, the save at 6 fails
        max_steps, every, after, log_every = 12, 2, 2, 1000
    else:  # the disk breaks after the save at step 24; one of the next 24 rows fails
        max_steps, every, after, log_every = 48, 24, 1, 1
    config = run.parent.parent / f"{how}-{target}.toml"
    config.write_text(
        "[model]\nhidden_size = 8\nnum_layers = 1\nembedding_size = 4\n"
        f"[train]\nbatch_size = 4\nseq_len = 16\nmax_steps = {max_steps}\n"
        f"checkpoint_every = {every}\neval_every = 1000\nlog_every = {log_every}\n"
    )
    argv = ["lm", "train", "--text", corpus, "--out", run, "--config", config]
    argv += ["--no-progress", "--sample-length", "0"]
    hook = HOOK.format(tests=str(Path(__file__).parent))
    broken = subprocess.run(
        [sys.executable, "-c", hook, run, how, str(after), *map(str, argv)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    errors = [line for line in broken.stderr.splitlines() if line.startswith("rnnkit: error:")]
    assert broken.returncode == 2, broken.stderr[-3000:]
    assert len(errors) == 1 and broken.stderr.rstrip().endswith(errors[0]), broken.stderr
    assert "Traceback" not in broken.stderr
    at_break = json.loads(broken.stdout.splitlines()[-1])
    now = digest(run)
    # The checkpoints the pointers name, and the pointers, are unchanged to the byte.
    for tag in ("last", "best"):
        if f"{tag}.json" in at_break:
            pointed = json.loads((run / f"{tag}.json").read_text())["path"]
            kept = [name for name in at_break if name.startswith(pointed) or name == f"{tag}.json"]
            assert kept and all(now[name] == at_break[name] for name in kept), tag
    assert load_checkpoint(run, "last").step == every * after
    # Heal the disk and finish the run.
    if how == "fill":
        (run.parent / "filler").unlink()
    elif how == "remount":
        subprocess.run(["umount", str(run.parent)], check=True)  # the read-only bind mount
    if not resume:
        return errors[0]
    again = rnnkit("lm", "train", "--out", run, "--resume", "--no-progress", "--sample-length", "0")
    done = subprocess.run(again, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(run, "last").step == max_steps
    _, rows = metrics_rows(run)
    if target == "metrics":  # one row per step, none lost, none twice
        assert [int(r[0]) for r in rows] == list(range(1, max_steps + 1))
    return errors[0]


@pytest.mark.parametrize(
    ("how", "target", "resume", "says"),
    [
        (
            "patch-full",
            "checkpoint",
            False,
            "cannot save the last checkpoint of step 6 (No space left on device; last.json "
            "still points at step 4): ",
        ),
        pytest.param(
            "patch-full", "checkpoint", True, "step 6 (No space left", marks=pytest.mark.slow
        ),
        pytest.param(
            "patch-readonly",
            "checkpoint",
            True,
            "cannot save the last checkpoint of step 6 (Read-only file system; last.json still "
            "points at step 4)",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_cli_stops_in_one_line_when_writes_fail(corpus, tmp_path, how, target, resume, says):
    run = tmp_path / "disk" / "run"
    run.parent.mkdir()
    error = break_and_resume(corpus, run, how, target, resume)
    assert says in error


@pytest.mark.parametrize(
    ("how", "target", "resume", "says"),
    [
        (
            "fill",
            "checkpoint",
            False,
            "cannot save the last checkpoint of step 6 (No space left on device; last.json "
            "still points at step 4): ",
        ),
        pytest.param("fill", "checkpoint", True, "step 6 (No space left", marks=pytest.mark.slow),
        pytest.param("fill", "metrics", True, "No space left on device: ", marks=pytest.mark.slow),
        pytest.param(
            "remount", "checkpoint", True, "step 6 (Read-only file system", marks=pytest.mark.slow
        ),
    ],
)
def test_cli_on_a_real_full_or_read_only_tmpfs(corpus, disk, how, target, resume, says):
    error = break_and_resume(corpus, disk / "run", how, target, resume)
    assert says in error


def test_a_row_torn_by_a_full_disk_is_dropped_on_resume(tmp_path):
    """A full disk can stop a row after any byte, even inside its step ("4" of "42")."""
    log = MetricsLog(tmp_path)
    for step in range(1, 31):
        log.write({"step": step, "loss": 1.0 / step})
    log.close()
    with open(tmp_path / "metrics.csv", "a", encoding="utf-8") as f:
        f.write("4")  # what was written of row 42 (steps 31-41 not shown: any rows)
    MetricsLog(tmp_path, resume_step=24).close()  # a resume from the checkpoint at 24
    header, rows = metrics_rows(tmp_path)
    assert [int(r[0]) for r in rows] == list(range(1, 25))
    assert float(rows[-1][header.index("loss")]) == 1.0 / 24
    (tmp_path / "metrics.csv").write_bytes(b"step,loss\n1,\xff\n")
    with pytest.raises(ValueError, match=r"metrics.csv is not a readable metrics log \("):
        MetricsLog(tmp_path, resume_step=1)


# ----------------------------------------------------------------- damaged checkpoints


@pytest.fixture(scope="module")
def lm_run(corpus, tmp_path_factory) -> Path:
    """A real `rnnkit lm train` run (2 steps) to damage copies of."""
    run = tmp_path_factory.mktemp("runs") / "lm"
    args = ["lm", "train", "--text", str(corpus), "--out", str(run), "--max-steps", "2"]
    args += ["--hidden-size", "8", "--num-layers", "1", "--embedding-size", "4"]
    args += ["--batch-size", "4", "--seq-len", "8", "--no-progress", "--sample-length", "0"]
    assert main(args) == 0
    return run


def damaged(lm_run: Path, tmp_path: Path, name: str, data: bytes, repoint: bool) -> Path:
    """A copy of ``lm_run`` whose last checkpoint's ``name`` holds ``data``.

    ``repoint``: the pointer's recorded sizes are updated to match, as if the damage
    happened before the save finished, so the file's content itself is what is refused.
    """
    run = tmp_path / "copy"
    shutil.copytree(lm_run, run)
    pointer = json.loads((run / "last.json").read_text())
    (run / pointer["path"] / name).write_bytes(data)
    if repoint:
        pointer["files"][name] = len(data)
        (run / "last.json").write_text(json.dumps(pointer))
    return run


def refused(run: Path, capsys, *expected: str) -> str:
    """load_checkpoint and `rnnkit sample` both refuse ``run`` in one line."""
    with pytest.raises(ValueError) as caught:
        load_checkpoint(run, "last")
    message = str(caught.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message
    assert main(["sample", str(run), "--checkpoint", "last", "--length", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return message


def cuts(size: int) -> list[int]:
    """Where to cut a file: nothing left, inside the safetensors length prefix, the middle,
    near the end (not its last byte: a JSON file without its final newline is whole)."""
    return sorted({0, 1, 7, 8, 9, size // 3, size // 2, size - 9, size - 2})


@pytest.mark.parametrize("repoint", [False, True])
def test_cut_weights_are_refused_naming_the_file(lm_run, tmp_path, capsys, repoint):
    where = lm_run / json.loads((lm_run / "last.json").read_text())["path"]
    data = (where / "model.safetensors").read_bytes()
    for cut in cuts(len(data)):
        run = damaged(lm_run, tmp_path, "model.safetensors", data[:cut], repoint)
        expected = "model.safetensors: " if repoint else f"model.safetensors has {cut} bytes"
        message = refused(run, capsys, str(run / where.relative_to(lm_run)), expected)
        assert "is damaged" in message
        shutil.rmtree(run)


@pytest.mark.parametrize("name", ["config.json", "trainer.pt"])
def test_cut_config_and_trainer_state_are_refused(lm_run, tmp_path, capsys, name):
    where = lm_run / json.loads((lm_run / "last.json").read_text())["path"]
    data = (where / name).read_bytes()
    for cut in cuts(len(data)):
        run = damaged(lm_run, tmp_path, name, data[:cut], repoint=True)
        if name == "trainer.pt":  # sampling skips the trainer state; resuming reads it
            with pytest.raises(ValueError, match=r"is damaged \(trainer.pt: "):
                load_checkpoint(run, "last")
            assert main(["lm", "train", "--out", str(run), "--resume", "--no-progress"]) == 2
            err = capsys.readouterr().err
            assert "trainer.pt" in err and err.count("\n") == 1 and "Traceback" not in err
        else:
            refused(run, capsys, f"{run}/checkpoints/", "config.json")
        shutil.rmtree(run)


@pytest.mark.parametrize(
    ("where", "version", "says"),
    [
        ("config.json", 2, "format version 2, newer than this rnnkit reads (1); upgrade"),
        ("config.json", 0, "is damaged (format version 0)"),
        ("config.json", "1", "is damaged (format version '1')"),
        ("last.json", 7, "format version 7, newer than this rnnkit reads"),
        ("last.json", None, "is damaged (format version None)"),
    ],
)
def test_other_format_versions_are_refused(lm_run, tmp_path, capsys, where, version, says):
    run = tmp_path / "copy"
    shutil.copytree(lm_run, run)
    pointer = json.loads((run / "last.json").read_text())
    file = run / "last.json" if where == "last.json" else run / pointer["path"] / where
    content = json.loads(file.read_text())
    content["format_version"] = version
    file.write_text(json.dumps(content))
    if where == "config.json":
        pointer["files"][where] = file.stat().st_size
        (run / "last.json").write_text(json.dumps(pointer))
    refused(run, capsys, says, str(file.parent if where == "config.json" else file))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: torch_bytes({"w": torch.zeros(3)}), id="torch.save"),
        pytest.param(lambda: b"\x89PNG\r\n\x1a\n" + bytes(64), id="png"),
        pytest.param(lambda: b'{"not": "safetensors"}', id="json"),
        pytest.param(lambda: b"", id="empty"),
        pytest.param(lambda: safetensors_bytes({"other.weight": torch.zeros(2)}), id="other-model"),
    ],
)
def test_weights_that_are_not_this_models_safetensors_are_refused(
    lm_run, tmp_path, capsys, content
):
    data = content()
    run = damaged(lm_run, tmp_path, "model.safetensors", data, repoint=True)
    if b"other.weight" in data:  # valid safetensors of another model
        assert main(["sample", str(run), "--checkpoint", "last", "--length", "3"]) == 2
        err = capsys.readouterr().err
        assert "holds a different model (missing: " in err and err.count("\n") == 1
    else:
        refused(run, capsys, "model.safetensors: ", str(run / "checkpoints"))


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
