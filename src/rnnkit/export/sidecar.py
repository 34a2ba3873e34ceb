"""The JSON sidecar beside exported files: what to feed them and how to read what they give.

It names each form's file, inputs, outputs (shapes with the symbolic axes ``"B"`` and
``"T"``) and state pairs, and what a program outside Python needs besides: the
vocabulary file (a path relative to the sidecar) or the scaler of a forecaster, the
classes of a classifier, and the model's settings.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from rnnkit.atomic import atomic_write_text

SIDECAR_VERSION = 1
# A list of scalars as json.dumps indents it (raw newlines never occur inside JSON strings).
_FLAT_LIST = re.compile(r"\[\n\s*([^\[\]{}]{0,400}?)\n\s*\]")


def relative(target: str | Path, start: str | Path) -> str:
    """``target`` as a path relative to the directory ``start`` (POSIX separators)."""
    rel = os.path.relpath(Path(target).resolve(), Path(start).resolve())
    return Path(rel).as_posix()


def sidecar_dict(fmt: str, forms: dict, info: dict, directory: Path) -> dict:
    """The sidecar's content; ``forms`` maps a form's name to ``(ExportForm, path, extra)``."""
    from rnnkit import __version__

    out = {"rnnkit_export": SIDECAR_VERSION, "format": fmt, "rnnkit": __version__, **info}
    out["forms"] = {
        name: {"file": relative(path, directory), **extra, **form.describe()}
        for name, (form, path, extra) in forms.items()
    }
    return out


def write_sidecar(path: str | Path, content: dict) -> None:
    """Write the sidecar JSON atomically, short lists of numbers and names on one line."""
    text = json.dumps(content, indent=2, ensure_ascii=False)
    text = _FLAT_LIST.sub(lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", text)
    atomic_write_text(path, text + "\n")


__all__ = ["relative", "sidecar_dict", "write_sidecar"]
