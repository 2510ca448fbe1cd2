"""Type stubs of the native module (``python/src`` in the repository).

Private: the public API is in ``dac``; these functions take float64,
C-contiguous arrays of the right number of dimensions, which the public
wrappers make. An argument a public wrapper finds invalid on one member
must still take part in the collective, through ``Comm.abort_call`` (see
``dac._comm.local_checks``), so that every member raises; the native
functions do the same themselves for an array they cannot copy.
"""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]

class Comm:
    @property
    def rank(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def peer_id(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def allreduce(
        self, x: _F64, shape: List[int], sum: bool
    ) -> Tuple[_F64, int, float, List[int]]: ...
    def abort_call(self, kind: str) -> None:
        """Takes part in the next collective only to fail it on every other
        member with the exception for an invalid argument of ``kind``
        (``"value"``: ``ArgumentError``, ``"type"``: ``InputTypeError``,
        ``"shape"``: ``ShapeError``) naming this rank in ``ranks``; this
        member then raises its own, detailed error. An unknown ``kind`` is
        an ``ArgumentError``; ``NetworkError`` if the comm is closed or
        this member is out of the job."""
    def departed(self) -> List[int]: ...
    def left(self) -> List[int]: ...
    def close(self) -> None: ...

def init(options: Dict[str, Any]) -> Comm: ...
def simulate(
    inputs: _F64,
    topology: str,
    schedule: str,
    tol: float,
    max_rounds: int,
    drop_rate: float,
    delay: int,
    crash: List[Tuple[int, int]],
    seed: int,
) -> Tuple[_F64, int, bool, List[int], _F64, _F64, Optional[float]]: ...
def spectral_gap(name: str, nodes: int, seed: int) -> float: ...
def diameter(name: str, nodes: int, seed: int) -> int: ...
def neighbors(name: str, nodes: int, node: int, seed: int) -> List[int]: ...
def dot(comm: Comm, x: _F64, y: _F64) -> float: ...
def norm(comm: Comm, x: _F64) -> float: ...
def matvec(comm: Comm, a_cols: _F64, x: _F64) -> _F64: ...
def lstsq(
    comm: Comm, a_rows: _F64, b: _F64, ridge: float, intercept: Optional[int]
) -> Tuple[_F64, float, float, int, str, Optional[int], int]: ...
def cg(comm: Comm, a_rows: _F64, b: _F64, tol: float, max_iter: int) -> Tuple[_F64, int, float, int]: ...
def gaussian_linear(
    comm: Comm, x_rows: _F64, y: _F64, prior_mean: _F64, prior_cov: _F64, noise_var: float
) -> Tuple[_F64, _F64, int]: ...
def grid_posterior(comm: Comm, log_prior: _F64, local_loglik: _F64) -> _F64: ...
