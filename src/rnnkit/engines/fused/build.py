"""Builds the fused engine's C++ operators on first use and caches the library.

The sources in ``csrc/`` are compiled with the machine's C++ compiler (through
``torch.utils.cpp_extension``, which rebuilds when a source changes) into a cache
folder keyed by the PyTorch version, Python and the CPU, so the build (about 30 s on
two cores) happens once per machine. When no
compiler is available the engine reports why and ``auto`` picks another engine.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from functools import cache
from pathlib import Path

import torch

CSRC = Path(__file__).with_name("csrc")
# One file per cell family; each registers its operators as a fragment of the library.
SOURCES = tuple(sorted(p.name for p in CSRC.glob("*.cpp")))
# -ffast-math lets the compiler call the C library's vector exp/tanh; -march=native is
# safe because the cache key names the CPU the library was built for.
CFLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp-simd")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> Path:
    """Where the compiled library lives: ``$RNNKIT_CACHE_DIR`` or ``~/.cache/rnnkit``."""
    root = os.environ.get("RNNKIT_CACHE_DIR") or Path.home() / ".cache" / "rnnkit"
    digest = hashlib.sha256()
    digest.update(" ".join((*CFLAGS, torch.__version__, sys.version, _cpu_name())).encode())
    return Path(root) / f"fused-{digest.hexdigest()[:16]}"


@cache
def load() -> str | None:
    """Build (once) and load the operators; None on success, else why it failed."""
    from torch.utils import cpp_extension

    build = cache_dir()
    try:
        build.mkdir(parents=True, exist_ok=True)
        if not any(build.glob("rnnkit_fused*.so")):
            print("rnnkit: compiling the fused engine's kernels (once)...", file=sys.stderr)
        cpp_extension.load(
            name="rnnkit_fused",
            sources=[str(CSRC / name) for name in SOURCES],
            extra_cflags=list(CFLAGS),
            build_directory=str(build),
            is_python_module=False,
            verbose=False,
        )
    except Exception as error:  # a missing compiler, headers or a failed build
        first = (str(error).strip().splitlines() or [""])[0].split(": [")[0]
        return (
            f"its C++ kernels could not be built ({type(error).__name__}: {first}); "
            f"run `ninja` in {build} to see the compiler's messages"
        )
    return None
