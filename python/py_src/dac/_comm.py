"""The SPMD handle: join a job, reduce, leave."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Sequence, Type, Union

import numpy as np

from . import _native
from ._arrays import Float64Array, as_count, as_float
from .errors import ArgumentError, DacError, ShapeError


@dataclass(frozen=True)
class Reduction:
    """The outcome of :meth:`Comm.allreduce`, the same on every member (up
    to ``residual``)."""

    value: Union[float, Float64Array]
    """The mean or sum, shaped like the input (a float for a scalar)."""
    rounds: int
    """Consensus rounds it took."""
    residual: float
    """Bound on the relative distance of any member's mean from the exact
    mean of the contributors' inputs (0 for the exact schedule)."""
    contributors: List[int]
    """The ranks whose inputs are in ``value``: a member that left or
    crashed before its input was counted is not."""


class Comm:
    """One member's handle on a networked job, like an MPI communicator.

    Made by :func:`init`. Every member makes the same calls in the same
    order, each with its own data. Calls release the GIL while they wait
    on the network, and Ctrl-C interrupts them (the member then leaves the
    job). Use it as a context manager, or call :meth:`close`.

    >>> import dac
    >>> with dac.init(size=1, rank=0) as comm:
    ...     comm.rank, comm.size
    (0, 1)
    """

    def __init__(self, native: _native.Comm) -> None:
        self._native = native

    @property
    def rank(self) -> int:
        """This member's rank, in ``0..size``: its identity for the whole job
        (never renumbered)."""
        return self._native.rank

    @property
    def size(self) -> int:
        """Ranks assigned so far: the members the job started with. A rank
        is a member's identity for the whole job; members that departed
        keep theirs (:attr:`members` lists the current ones)."""
        return self._native.size

    @property
    def members(self) -> List[int]:
        """The members of the current view, by rank, in increasing order:
        those the next reduction runs over. After a reduction that lacks a
        member, the next view is that reduction's contributors, the same on
        every member, and the reductions in it run the exact schedule over
        exactly them; :attr:`view_id` counts the changes.

        >>> with dac.init(size=1, rank=0) as comm:
        ...     comm.members, comm.view_id
        ([0], 0)
        """
        return self._native.members()

    @property
    def view_id(self) -> int:
        """The id of the current view: 0 for the members the job formed
        with, one more at every change."""
        return self._native.view_id()

    @property
    def peer_id(self) -> str:
        """This member's peer id: what other members put on an allow-list
        (the same across runs with ``identity_file``)."""
        return self._native.peer_id

    @property
    def address(self) -> str:
        """This member's address (``/ip4/…/tcp/…/p2p/…``): another process
        joins the running job through it with ``dac.init(join=address)``."""
        return self._native.address

    @property
    def closed(self) -> bool:
        """Whether the member has left the job."""
        return self._native.closed

    def allreduce(self, x: Any, op: str = "mean") -> Reduction:
        """The mean (``op="mean"``) or sum (``op="sum"``) of every member's
        ``x`` (a float or an array; all members pass the same shape).

        The sum is the mean times the number of contributors, so after a
        member vanishes it is the sum over the survivors (see
        ``contributors``). Raises :class:`~dac.ShapeError` on every member
        if the shapes differ (also with the same number of entries, such as
        ``(2, 3)`` and ``(3, 2)``, or a float and an array of shape
        ``(1,)``) or if one passes more values than a frame holds (found
        before they are copied), :class:`~dac.NonFiniteError` on every member
        if one passes NaN or infinity, :class:`~dac.ConvergenceError`,
        :class:`~dac.NetworkError`. An invalid argument on one member (a
        dtype that is not real numbers, more than 32 dimensions, an
        unknown ``op``) raises on every member: that member gets the
        detailed error, the others the same exception class naming it in
        ``ranks``.

        >>> import numpy as np, dac
        >>> with dac.init(size=1, rank=0) as comm:
        ...     red = comm.allreduce(np.array([1.0, 2.0]), op="sum")
        ...     red.value.tolist(), red.contributors
        ([1.0, 2.0], [0])
        """
        with local_checks(self):
            if op not in ("mean", "sum"):
                raise ArgumentError(
                    f"rank {self.rank}: op={op!r}; expected 'mean' or 'sum'", rank=self.rank
                )
            arr = np.asarray(as_float(x, "x", tuple(range(33)), self.rank))
        r = self._native.allreduce(arr.reshape(-1), list(arr.shape), op == "sum")
        shaped: Union[float, Float64Array] = (
            float(r.value[0]) if arr.ndim == 0 else r.value.reshape(arr.shape)
        )
        return Reduction(shaped, r.rounds, r.residual, r.contributors)

    def admit(self) -> List[int]:
        """An admission point: admits the processes waiting to join the job
        (``dac.init(join=...)``) and returns their ranks, the same on every
        member (usually none). A collective: every member calls it at the
        same point, after the last collective of an iteration of the job's
        loop, so that a joiner, whose ``dac.init`` returns once it is
        admitted, runs the loop from its top. From the next call on, every
        result includes the joiners. It costs one reduction of one value.

        >>> with dac.init(size=1, rank=0) as comm:
        ...     comm.admit()
        []
        """
        return self._native.admit()

    def departed(self) -> List[int]:
        """Members that departed mid-job, in increasing order: those whose
        input is missing from a reduction this member completed (they
        crashed, were cut off, or left before the others were done with
        them). Members that completed the same reductions list the same
        ones. Members that went away after their part was done are in
        :meth:`left` instead.

        >>> import dac
        >>> with dac.init(size=1, rank=0) as comm:
        ...     comm.departed()
        []
        """
        return self._native.departed()

    def left(self) -> List[int]:
        """Members known to be gone whose input is in every reduction this
        member completed (typically members that finished and left first),
        in increasing order; disjoint from :meth:`departed`. A member
        listed here moves to :meth:`departed` if a later reduction lacks
        it.

        >>> import dac
        >>> with dac.init(size=1, rank=0) as comm:
        ...     comm.left()
        []
        """
        return self._native.left()

    def close(self) -> None:
        """Leaves the job (flushing what is queued, at most 2 s). Closing
        twice is harmless; any later call raises :class:`~dac.NetworkError`.

        >>> import dac
        >>> comm = dac.init(size=1, rank=0)
        >>> comm.close(); comm.close()
        >>> comm.closed
        True
        """
        self._native.close()

    def __enter__(self) -> Comm:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._native)


@contextmanager
def local_checks(comm: Comm) -> Iterator[None]:
    """A collective's checks of this member's own arguments, made before
    the call: ``with local_checks(comm): ...`` around them.

    If a check raises, this member still takes part in the collective, to
    fail it on every other member with the matching exception naming this
    rank (an :class:`~dac.InputTypeError`, :class:`~dac.ShapeError` or,
    for anything else, :class:`~dac.ArgumentError`); then the exception
    goes on as raised, with ``ranks = [rank]``. Otherwise the others would
    wait for this member, and its next call would pair with their current
    one. If the others cannot be told (the comm is closed, or this member
    is out of the job), the check's exception is raised anyway, with that
    failure as its ``__context__`` (or, if it has one already, in a note).
    """
    try:
        yield
    except Exception as exc:  # not KeyboardInterrupt and the like
        if isinstance(exc, DacError) and not hasattr(exc, "ranks"):
            setattr(exc, "ranks", [comm.rank])
        try:
            comm._native.abort_call(_kind(exc))
        except Exception as failure:
            if failure.__context__ is exc:
                failure.__context__ = None  # (set by Python: it was raised here)
            if exc.__context__ is None:
                exc.__context__ = failure
            elif hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(
                    f"rank {comm.rank} could not fail the call on the other ranks: {failure}"
                )
        raise


def _kind(exc: Exception) -> str:
    """The kind of invalid argument :meth:`_native.Comm.abort_call` tells
    the other members of, for ``exc``."""
    if isinstance(exc, ShapeError):
        return "shape"
    if isinstance(exc, TypeError):  # InputTypeError, or a TypeError from a user's function
        return "type"
    return "value"


def init(
    *,
    rank: Optional[int] = None,
    size: Optional[int] = None,
    listen: Optional[str] = None,
    bootstrap: Union[str, Sequence[str], None] = None,
    join: Union[str, Sequence[str], None] = None,
    run_dir: Optional[str] = None,
    key: Optional[str] = None,
    key_file: Optional[str] = None,
    identity_file: Optional[str] = None,
    allow_peers: Optional[Sequence[str]] = None,
    topology: Optional[str] = None,
    schedule: Optional[str] = None,
    tol: Optional[float] = None,
    max_rounds: Optional[int] = None,
    seed: Optional[int] = None,
    peer_timeout: Optional[float] = None,
    startup_timeout: Optional[float] = None,
) -> Comm:
    """Joins a networked job and returns this member's :class:`Comm`.

    Under ``dacrun -n N python script.py`` call it with no arguments: rank,
    size and addresses come from the environment ``dacrun`` sets. Outside
    ``dacrun``, pass ``size`` and ``rank``; rank 0 listens on ``listen`` (a
    multiaddr such as ``/ip4/0.0.0.0/tcp/7000``) and the others name it in
    ``bootstrap`` (or share a ``run_dir``). To join a job that is running
    already, pass ``join``: the address of any member (:attr:`Comm.address`,
    or ``rank-R.addr`` in the directory where ``dacrun`` says its key is),
    or a list of them, and no ``size`` or ``rank``; the member enters at the
    job's next admission point (:meth:`Comm.admit`, which the members call
    at the end of each iteration of their loop) with the next free rank, and
    every member's :attr:`Comm.size` and :attr:`Comm.members` then include
    it (``dacrun -n K --join ADDR`` starts K such processes). Every member must pass the same
    ``topology``, ``schedule``, ``tol``, ``max_rounds``, ``seed`` and
    ``key`` (a 64-hex-digit job key, or ``key_file``; members without it
    cannot connect, and a wrong key raises :class:`~dac.NetworkError`
    saying so within seconds). A job without a key admits anyone unless
    ``allow_peers`` lists the peer ids it admits; ``identity_file`` keeps a
    member's peer id the same across runs (``dacrun --peer-id FILE`` prints
    it).
    ``peer_timeout`` (seconds, default 10) is how long a silent peer has
    before it counts as gone; ``startup_timeout`` (default 60) bounds the
    wait for the others to join.

    Raises :class:`~dac.ArgumentError` for invalid settings (or a ``size``
    or ``rank`` that contradicts ``dacrun``), :class:`~dac.NetworkError`
    if the job cannot be formed.

    >>> import dac
    >>> comm = dac.init(size=1, rank=0)
    >>> comm.allreduce(2.5).value
    2.5
    >>> comm.close()
    """
    def count(value: Optional[int], name: str, most: int = 2**64 - 1) -> Optional[int]:
        # The library's own errors, before the values reach Rust.
        if value is None:
            return None
        n = as_count(value, name)
        if n > most:
            raise ArgumentError(f"{name} = {n} is too large (at most {most})")
        return n

    options: Dict[str, Any] = {
        "rank": count(rank, "rank"),
        "size": count(size, "size"),
        "listen": listen,
        "bootstrap": [bootstrap] if isinstance(bootstrap, str) else bootstrap,
        "join": [join] if isinstance(join, str) else (None if join is None else list(join)),
        "run_dir": None if run_dir is None else str(run_dir),
        "key": key,
        "key_file": None if key_file is None else str(key_file),
        "identity_file": None if identity_file is None else str(identity_file),
        "allow_peers": None if allow_peers is None else list(allow_peers),
        "topology": topology,
        "schedule": schedule,
        "tol": tol,
        "max_rounds": count(max_rounds, "max_rounds", 2**32 - 1),
        "seed": count(seed, "seed"),
        "peer_timeout": peer_timeout,
        "startup_timeout": startup_timeout,
    }
    return Comm(_native.init(options))
