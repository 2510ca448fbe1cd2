"""The exceptions of ``dac``: one hierarchy, rooted at :class:`DacError`.

Every exception carries ``rank`` (the member that raised it, or ``None``
outside a job) and, where the error has them, the numbers behind it
(``rounds``, ``residual``, ``partition``, ``ranks``, ...) as attributes.
The errors that refine a built-in derive from it too, so
``except ValueError`` still catches a :class:`ShapeError`.

>>> import dac
>>> try:
...     dac.simulate([1.0, 2.0], topology="moebius")
... except dac.ArgumentError as e:
...     print(type(e).__name__, "|", str(e).split(":")[0])
ArgumentError | unknown topology "moebius"
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
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


class DacError(Exception):
    """Base of every error ``dac`` raises."""

    rank: Optional[int]

    def __init__(self, message: str, rank: Optional[int] = None, **details: Any) -> None:
        super().__init__(message)
        self.rank = rank
        for name, value in details.items():
            setattr(self, name, value)


class ArgumentError(DacError, ValueError):
    """An invalid setting or argument: an unknown topology or schedule name,
    ``tol`` out of range, a Laplacian step too large for the graph, options
    that differ between ranks, a ``size`` that contradicts ``dacrun``."""


class InputTypeError(DacError, TypeError):
    """An input that is not an array of real numbers (strings, complex,
    objects)."""


class ShapeError(DacError, ValueError):
    """Shapes that do not fit, on one rank or across ranks (every rank of
    the call raises it)."""


class NonFiniteError(DacError, ValueError):
    """NaN or infinity in some rank's input (every rank of the call raises
    it; ``ranks`` lists the offenders where known)."""


class ConvergenceError(DacError):
    """A reduction reached ``max_rounds`` (attributes ``rounds``,
    ``residual``) or a solver its iteration limit (``iterations``,
    ``residual``)."""


class NetworkError(DacError):
    """The job could not be formed, a peer vanished with data the call
    needed (``departed``), a timeout, or a closed comm.

    A failure of the transport itself also carries ``kind``, one of
    ``"refused"``, ``"key_mismatch"``, ``"timeout"``,
    ``"protocol_violation"``, ``"peer_lost"``, ``"setup"`` and
    ``"closed"``, and ``peer``, the peer id it concerns (or ``None``)."""


class ReplicaMismatchError(DacError):
    """The holders of a replicated partition computed different
    contributions and no majority agrees (``partition``, ``ranks``)."""


class PartitionLostError(DacError):
    """Every holder of a replicated partition is gone (``partition``)."""
