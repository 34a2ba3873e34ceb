"""Shared test set-up.

Tests that need the fused engine's C++ kernels skip where they cannot be built;
``one_thread`` runs a module's small models on one thread.
"""

from __future__ import annotations

import re

import pytest
import torch

# "fused" as its own word in a test id ("test_fused_lstm", "[fused]"), not in "refused".
FUSED = re.compile(r"(?<![a-z])fused")


def pytest_collection_modifyitems(config, items):
    needs = [i for i in items if FUSED.search(i.nodeid) or i.get_closest_marker("fused")]
    if not needs:
        return
    from rnnkit.engines.fused import build

    reason = build.load()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"fused engine unavailable: {reason}")
    for item in needs:
        item.add_marker(skip)


@pytest.fixture
def one_thread():
    """Small models run faster on one thread than on two; the caller's count is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
