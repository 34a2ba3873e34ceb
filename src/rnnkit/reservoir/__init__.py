"""Reservoir computing: echo state networks with fixed random reservoirs and trained readouts.

- ``reservoir.py`` — :class:`Reservoir`, a leaky-integrator reservoir with fixed
  sparse weights (spectral radius set exactly); its time loop runs compiled
  (``kernels.py``, numba) or in torch.
- ``ridge.py`` — :class:`Ridge` (closed form from streamed statistics) and
  :class:`RLS` (recursive least squares / FORCE).
- ``esn.py`` — :class:`EchoStateNetwork`: reservoirs (deep, with feedback) plus a
  ridge readout; fit / predict / generate / save / load.
- ``metrics.py`` — :func:`nrmse`.
- ``datasets.py`` — Mackey-Glass, NARMA-10 and Lorenz series generated in code.
- ``search.py`` — grid or random hyperparameter search over processes.
"""

from rnnkit.reservoir.datasets import lorenz, mackey_glass, narma10, scale_to_unit
from rnnkit.reservoir.esn import EchoStateNetwork
from rnnkit.reservoir.metrics import nrmse
from rnnkit.reservoir.reservoir import Reservoir
from rnnkit.reservoir.ridge import RLS, Ridge
from rnnkit.reservoir.search import SearchResult, Trial, esn_task, search

__all__ = [
    "RLS",
    "EchoStateNetwork",
    "Reservoir",
    "Ridge",
    "SearchResult",
    "Trial",
    "esn_task",
    "lorenz",
    "mackey_glass",
    "narma10",
    "nrmse",
    "scale_to_unit",
    "search",
]
