"""Tests that need the fused engine's C++ kernels skip where they cannot be built."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    needs = [i for i in items if "fused" in i.nodeid or i.get_closest_marker("fused")]
    if not needs:
        return
    from rnnkit.engines.fused import build

    reason = build.load()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"fused engine unavailable: {reason}")
    for item in needs:
        item.add_marker(skip)
