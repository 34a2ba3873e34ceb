"""Typed run configuration: dataclass defaults < TOML file < command-line flags.

A TOML file holds one table per dataclass, e.g.::

    [model]
    cell = "lstm"
    hidden_size = 256

    [train]
    lr = 2e-3
    max_steps = 5000

Flags given on the command line override the file; the dataclasses validate the
result, so a bad value reads the same wherever it came from.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from rnnkit.cli.errors import UsageError


def read_toml(path: str | Path | None) -> dict:
    """The tables of a TOML config file ({} without one)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such config file: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"config file {path} is not valid TOML: {err}") from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise UsageError(f"config file {path} is not valid TOML: nested too deeply") from None


# The TOML table that configures each dataclass, for error messages.
TABLES = {
    "DataConfig": "data",
    "ClassifyDataConfig": "data",
    "ForecastDataConfig": "data",
    "Seq2SeqDataConfig": "data",
    "LMConfig": "model",
    "ClassifierConfig": "model",
    "ForecasterConfig": "model",
    "Seq2SeqConfig": "model",
    "TrainConfig": "train",
    "FitConfig": "train",
    "Seq2SeqTrainConfig": "train",
}


def merge(cls, *layers: dict, **fixed):
    """Build dataclass ``cls`` from dicts applied in order (later wins) plus ``fixed``.

    ``None`` values in a layer mean "not given" and do not override.
    """
    names = {f.name for f in fields(cls)}
    values: dict = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in names:
                raise UsageError(
                    f"unknown setting {key!r} in [{TABLES.get(cls.__name__, cls.__name__)}]; "
                    f"known: {', '.join(sorted(names))}"
                )
            if value is not None:
                values[key] = value
    values.update(fixed)
    try:
        return cls(**values)
    except TypeError as err:
        raise UsageError(str(err)) from None


def table(config: dict, name: str) -> dict:
    section = config.get(name, {})
    if not isinstance(section, dict):
        raise UsageError(f"[{name}] in the config file must be a table")
    return section
