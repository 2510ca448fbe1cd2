"""``dac``: distributed average consensus, MPI-style, from Python.

Every member of a job holds its own data; collective calls (means, sums,
dot products, least squares, Bayesian updates, conjugate gradients) give
every member the same global answer by peer-to-peer averaging, with no
coordinator, and stay exact when members vanish mid-run.

- :func:`simulate` runs one reduction among simulated nodes in-process;
  :mod:`dac.topology` describes the graphs.
- :func:`init` joins a networked job (start the script with
  ``dacrun -n 4 python script.py``) and returns a :class:`Comm`, whose
  :meth:`~Comm.allreduce` is the basic collective.
- :mod:`dac.linalg` and :mod:`dac.bayes` are the distributed maths.
- :mod:`dac.errors`: every exception derives from :class:`DacError`.

>>> import numpy as np, dac
>>> dac.simulate(np.array([1.0, 2.0, 6.0]), topology="complete").estimates.round(12).tolist()
[3.0, 3.0, 3.0]
"""

from . import bayes, linalg, topology
from ._comm import Comm, Reduction, init
from ._sim import SimulationResult, simulate
from .errors import (
    ArgumentError,
    ConvergenceError,
    DacError,
    InputTypeError,
    NetworkError,
    NonFiniteError,
    PartitionLostError,
    ReplicaMismatchError,
    ShapeError,
)

__version__ = "0.1.0"

__all__ = [
    "simulate",
    "SimulationResult",
    "init",
    "Comm",
    "Reduction",
    "topology",
    "linalg",
    "bayes",
    "DacError",
    "ArgumentError",
    "InputTypeError",
    "ShapeError",
    "NonFiniteError",
    "ConvergenceError",
    "NetworkError",
    "ReplicaMismatchError",
    "PartitionLostError",
]
