"""Dataclass settings that travel as JSON (checkpoints, run directories)."""

from __future__ import annotations

from dataclasses import asdict, fields


class JSONSettings:
    """Mixin for a settings dataclass: ``to_dict`` and a ``from_dict`` that names
    unknown keys instead of failing with a TypeError."""

    settings_kind = "settings"  # how error messages name these settings

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.settings_kind} setting(s): {', '.join(unknown)}")
        return cls(**data)
