"""Crash-safe checkpoints in a run directory.

Layout::

    RUN_DIR/last.json                      pointer: {"path": "checkpoints/last-300-1a2b3c4d", ...}
    RUN_DIR/best.json
    RUN_DIR/checkpoints/last-300-1a2b3c4d/
        model.safetensors                  the model's state dict
        config.json                        model + training config, format version, step
        trainer.pt                         optimizer, scheduler, step, RNG states, extra

A save writes a *new* directory (each file atomically), then moves the pointer
atomically, and only then deletes the tag's older directories. Killed at any instant,
the run directory holds a pointer to a complete checkpoint: the new one or the old one.
Files are serialised in memory and written by Python's own file calls, so a full disk
or a read-only folder is one ``OSError`` saying which checkpoint was kept.

Loading reads no pickles but ``trainer.pt`` through ``torch.load(weights_only=True)``
(tensors and plain values only); weights are safetensors, configs JSON.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from rnnkit.atomic import TEMP_MARK, atomic_write_bytes, atomic_write_text, fsync_dir
from rnnkit.train.rng import capture_rng

FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAINER_FILE = "trainer.pt"
FILES = (MODEL_FILE, TRAINER_FILE, CONFIG_FILE)


@dataclass
class Checkpoint:
    """One loaded checkpoint (tensors on the CPU)."""

    path: Path  # the checkpoint's directory
    step: int
    model_class: str  # type(model).__name__ at save time
    model_config: dict
    train_config: dict
    meta: dict  # whatever the trainer's caller attached (data paths, vocabulary, ...)
    state_dict: dict[str, Tensor]
    trainer_state: dict | None  # optimizer, scheduler, step, rng, extra; None if not loaded

    def load_into(self, model: nn.Module) -> None:
        """Copy the weights into ``model`` after checking it has the same parameters."""
        check_compatible(model, self.state_dict, source=f"checkpoint {self.path}")
        model.load_state_dict(self.state_dict)


def save_checkpoint(
    run_dir: str | os.PathLike,
    tag: str,
    *,
    model: nn.Module,
    model_config: dict,
    train_config: dict,
    optimizer: torch.optim.Optimizer,
    scheduler,
    step: int,
    extra: dict,
    meta: dict | None = None,
) -> Path:
    """Write a checkpoint under ``run_dir`` and point ``run_dir/<tag>.json`` at it.

    ``extra`` (any tensors, numbers, strings, lists, tuples and dicts) comes back as
    ``trainer_state["extra"]``. Returns the new checkpoint directory.
    """
    if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z0-9_]+", tag):
        raise ValueError(f"checkpoint tag must be letters, digits or _, got {tag!r}")
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS
    name = f"{tag}-{step}-{secrets.token_hex(4)}"
    target = root / name
    try:
        root.mkdir(parents=True, exist_ok=True)
        target.mkdir()
    except OSError as error:
        raise _not_saved(error, run_dir, tag, step) from error
    try:
        # Serialised here, written by atomic_write_bytes: safetensors' and torch's own
        # writers report a full disk as their own error types, without the file.
        tensors = _plain_tensors(model.state_dict())
        atomic_write_bytes(target / MODEL_FILE, safetensors_bytes(tensors))
        trainer = {
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "step": step,
            "rng": capture_rng(),
            "extra": extra,
        }
        buffer = io.BytesIO()
        torch.save(trainer, buffer)
        atomic_write_bytes(target / TRAINER_FILE, buffer.getvalue())
        config = {
            "format_version": FORMAT_VERSION,
            "model_class": type(model).__name__,
            "step": step,
            "model": model_config,
            "train": train_config,
            "meta": meta or {},
        }
        atomic_write_text(target / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        fsync_dir(root)
        pointer = {
            "format_version": FORMAT_VERSION,
            "path": f"{CHECKPOINTS}/{name}",
            "step": step,
            "files": {f: (target / f).stat().st_size for f in FILES},
        }
        atomic_write_text(run_dir / f"{tag}.json", json.dumps(pointer, indent=2) + "\n")
    except OSError as error:
        shutil.rmtree(target, ignore_errors=True)  # never pointed at: safe to drop
        raise _not_saved(error, run_dir, tag, step) from error
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    _remove_older(root, tag, keep=name)
    for stale in run_dir.glob(f".{tag}.json{TEMP_MARK}*"):  # left by a killed save
        stale.unlink(missing_ok=True)
    return target


def load_checkpoint(
    run_dir: str | os.PathLike, tag: str = "last", *, trainer_state: bool = True
) -> Checkpoint:
    """Read the checkpoint ``run_dir/<tag>.json`` points at.

    ``trainer_state=False`` skips ``trainer.pt`` (optimizer moments and all), which
    sampling does not need.
    """
    run_dir = Path(run_dir)
    pointer = run_dir / f"{tag}.json"
    if not pointer.is_file():
        raise ValueError(
            f"{run_dir} has no {tag} checkpoint ({pointer.name}); train first, or point at "
            f"another run directory"
        )
    info = _read_json(pointer, pointer)
    try:
        path = run_dir / info["path"]
        sizes = {str(k): int(v) for k, v in info["files"].items()}
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        _damaged(pointer, "the pointer lacks path or files")
    if not _inside(path, run_dir / CHECKPOINTS) or any(Path(n).name != n for n in sizes):
        _damaged(pointer, f"it points outside {run_dir / CHECKPOINTS}")
    _check_version(info.get("format_version"), pointer)
    for name, size in sizes.items():
        file = path / name
        if not file.is_file():
            _damaged(path, f"{name} is missing")
        if file.stat().st_size != size:
            _damaged(path, f"{name} has {file.stat().st_size} bytes, expected {size}")
    config = _read_json(path / CONFIG_FILE, path)
    _check_version(config.get("format_version"), path)
    try:
        state_dict = load_file(str(path / MODEL_FILE), device="cpu")
    except Exception as error:  # safetensors raises its own error types
        _damaged(path, f"{MODEL_FILE}: {_first_line(error)}")
    trainer = None
    if trainer_state:
        try:
            trainer = torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=True)
        except Exception as error:
            _damaged(path, f"{TRAINER_FILE}: {_first_line(error)}")
    try:
        return Checkpoint(
            path=path,
            step=int(config["step"]),
            model_class=str(config["model_class"]),
            model_config=dict(config["model"]),
            train_config=dict(config["train"]),
            meta=dict(config.get("meta") or {}),
            state_dict=state_dict,
            trainer_state=trainer,
        )
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        _damaged(path, f"{CONFIG_FILE} lacks {_first_line(error)}")


def check_compatible(
    model: nn.Module, state_dict: dict[str, Tensor], *, source: str = "checkpoint"
) -> None:
    """Raise a ValueError naming every missing, unexpected and mis-shaped tensor."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatch = [
        f"{k} {tuple(state_dict[k].shape)} in the checkpoint vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    parts = [
        f"{label}: {_few(names)}"
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatch),
        )
        if names
    ]
    if parts:
        raise ValueError(
            f"{source} holds a different model ({'; '.join(parts)}); "
            f"build the model from the checkpoint's config.json"
        )


def _plain_tensors(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous tensors; shared storage (tied weights) copied apart for safetensors."""
    seen, out = set(), {}
    for key, value in state_dict.items():
        value = value.detach().contiguous()
        ptr = (value.device, value.untyped_storage().data_ptr())
        if ptr in seen:
            value = value.clone()
        seen.add(ptr)
        out[key] = value
    return out


def _remove_older(root: Path, tag: str, keep: str) -> None:
    """Delete every directory of ``tag`` but ``keep`` (older saves, or a killed save's)."""
    for entry in root.iterdir():
        if entry.name != keep and entry.is_dir() and entry.name.rsplit("-", 2)[0] == tag:
            shutil.rmtree(entry, ignore_errors=True)


def _not_saved(error: OSError, run_dir: Path, tag: str, step: int) -> OSError:
    """A one-line OSError (same errno and file) that says which checkpoint is kept."""
    try:
        kept = json.loads((run_dir / f"{tag}.json").read_text(encoding="utf-8"))["step"]
        kept = f"{tag}.json still points at step {kept}"
    except (OSError, ValueError, KeyError, TypeError):
        kept = f"no {tag} checkpoint is saved"
    reason = error.strerror or _first_line(error)
    message = f"cannot save the {tag} checkpoint of step {step} ({reason}; {kept})"
    return OSError(error.errno, message, error.filename)


def _read_json(file: Path, where: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _damaged(where, f"{file.name} is missing")
    except (OSError, ValueError) as error:  # ValueError: not UTF-8, not JSON, huge integers
        _damaged(where, f"{file.name}: {_first_line(error)}")
    except RecursionError:
        _damaged(where, f"{file.name} is nested too deeply")
    if not isinstance(data, dict):
        _damaged(where, f"{file.name} is not a JSON object")
    return data


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is a direct entry of ``root`` (a pointer never leads elsewhere)."""
    try:
        return path.resolve().parent == root.resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        return False


def _check_version(version, where: Path) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        _damaged(where, f"format version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {where} has format version {version}, newer than this rnnkit reads "
            f"({FORMAT_VERSION}); upgrade rnnkit to load it"
        )


def _damaged(where: Path, reason: str) -> NoReturn:
    raise ValueError(
        f"checkpoint {where} is damaged ({reason}); load another tag (e.g. best) or train again"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


__all__ = [
    "Checkpoint",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_compatible",
    "load_checkpoint",
    "save_checkpoint",
]
