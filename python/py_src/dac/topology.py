"""Properties of the named topologies: who talks to whom, and how fast
averaging mixes on them.

Names as in :func:`dac.simulate`: ``complete``, ``ring``, ``torus``,
``torus:RxC``, ``random-regular:K``, ``exponential``, ``hypercube``,
``edges:0-1,1-2,...``. ``seed`` draws the random topologies.
"""

from __future__ import annotations

from typing import List

from . import _native
from ._arrays import as_count

__all__ = ["spectral_gap", "diameter", "neighbors"]


def spectral_gap(name: str, n: int, *, seed: int = 0) -> float:
    """``1 - max(|λ₂|, |λₙ|)`` of the Metropolis matrix of topology ``name``
    on ``n`` nodes: the fraction by which disagreement shrinks per round,
    asymptotically (up to 4096 nodes).

    >>> import dac
    >>> round(dac.topology.spectral_gap("complete", 4), 12)
    1.0
    >>> round(dac.topology.spectral_gap("ring", 8), 6)
    0.195262
    """
    return _native.spectral_gap(str(name), as_count(n, "n"), as_count(seed, "seed"))


def diameter(name: str, n: int, *, seed: int = 0) -> int:
    """The longest shortest path between two of the ``n`` nodes.

    >>> import dac
    >>> dac.topology.diameter("ring", 10), dac.topology.diameter("hypercube", 16)
    (5, 4)
    """
    return _native.diameter(str(name), as_count(n, "n"), as_count(seed, "seed"))


def neighbors(name: str, n: int, i: int, *, seed: int = 0) -> List[int]:
    """The neighbours of node ``i`` of ``n``, in increasing order.

    >>> import dac
    >>> dac.topology.neighbors("ring", 8, 0)
    [1, 7]
    >>> dac.topology.neighbors("exponential", 8, 0)
    [1, 2, 4, 6, 7]
    """
    return _native.neighbors(str(name), as_count(n, "n"), as_count(i, "i"), as_count(seed, "seed"))
