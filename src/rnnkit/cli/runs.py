"""Run directories of the training jobs: opening a trained run, resuming, not overwriting.

Every job (``lm``, ``classify``, ``forecast``) stores ``meta["task"]`` and its data
settings in each checkpoint, so these checks are the same for all of them.
"""

from __future__ import annotations

from pathlib import Path

from rnnkit.cli.errors import UsageError
from rnnkit.train.checkpoint import Checkpoint, load_checkpoint

RUN_FILES = ("last.json", "best.json", "checkpoints")
# Flags a resumed run may still change.
STOP_SETTINGS = ("max_steps", "epochs", "time_budget")


# The training jobs whose runs `export`, `serve` and `diagnose` read: task -> command.
TRAINED_TASKS = {"lm": "lm train", "classify": "classify train", "forecast": "forecast train"}


def _read(run_dir: Path, tag: str, missing: str) -> tuple[Checkpoint, str]:
    """Checkpoint ``tag`` of ``run_dir`` (``best`` falls back to ``last``) and the tag read;
    ``missing`` ends the error when there is no checkpoint."""
    if not run_dir.is_dir():
        raise UsageError(f"no such run directory: {run_dir}")
    if tag == "best" and not (run_dir / "best.json").exists():
        tag = "last"
    if not (run_dir / f"{tag}.json").exists():
        raise UsageError(f"{run_dir} holds no checkpoint; {missing}")
    return load_checkpoint(run_dir, tag, trainer_state=False), tag


def open_run(run_dir: str | Path, tag: str, task: str, command: str) -> Checkpoint:
    """Checkpoint ``tag`` (``best`` falls back to ``last``) of a run of ``rnnkit command``."""
    run_dir = Path(run_dir)
    checkpoint, _ = _read(run_dir, tag, f"train it with `rnnkit {command}`")
    if checkpoint.meta.get("task") != task:
        raise UsageError(f"{run_dir} does not hold a run of `rnnkit {command}`")
    return checkpoint


def open_trained_run(run_dir: str | Path, tag: str, reader: str) -> tuple[Checkpoint, str]:
    """Checkpoint ``tag`` of a run of any job in :data:`TRAINED_TASKS`, and the tag read.

    ``reader`` names the command reading it, for the error about another task's run.
    """
    run_dir = Path(run_dir)
    checkpoint, tag = _read(
        run_dir, tag, "it is not a run: give the directory of `rnnkit lm|classify|forecast train`"
    )
    task = checkpoint.meta.get("task")
    if task not in TRAINED_TASKS:
        raise UsageError(
            f"{run_dir} holds a run of task {task!r}; {reader} reads lm, classify and forecast runs"
        )
    return checkpoint, tag


def resumed_run(args, settings, task: str, command: str) -> tuple[Checkpoint, dict]:
    """The last checkpoint of ``args.out`` and its training settings for ``--resume``.

    Flags naming any of ``settings`` are refused (a resumed run keeps them); new
    stopping rules replace the saved ones in the returned training settings.
    """
    fixed = [f"--{n.replace('_', '-')}" for n in settings if getattr(args, n) is not None]
    if args.config or fixed:
        raise UsageError(
            f"a resumed run keeps its settings; drop {', '.join(fixed) or '--config'} "
            f"(only --max-steps, --epochs and --time-budget may change)"
        )
    if not Path(args.out, "last.json").is_file():
        raise UsageError(f"{args.out} holds no run to resume; train without --resume first")
    checkpoint = open_run(args.out, "last", task, command)
    if "data" not in checkpoint.meta:
        raise UsageError(f"{args.out} does not hold a run of `rnnkit {command}`")
    saved = dict(checkpoint.train_config)
    stops = {name: getattr(args, name) for name in STOP_SETTINGS}
    if any(v is not None for v in stops.values()):
        saved.update(stops)  # new stopping rules replace the old ones
    return checkpoint, saved


def refuse_existing(run_dir: Path) -> None:
    """A new run must not write over an earlier one."""
    pointers = [name for name in ("last.json", "best.json") if (run_dir / name).exists()]
    if not pointers and (run_dir / "checkpoints").exists():
        # A run killed during its first save: nothing to resume, but files of its own.
        raise UsageError(
            f"{run_dir} holds checkpoints/ but no last.json (a run stopped during its first "
            f"save); delete {run_dir / 'checkpoints'} or choose another --out"
        )
    if any((run_dir / name).exists() for name in RUN_FILES):
        raise UsageError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
