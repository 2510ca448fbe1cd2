"""Bad inputs raise the right `dac` exception, with a message that says
what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, Type

import numpy as np
import pytest

import dac


@pytest.fixture
def comm() -> Iterator[dac.Comm]:
    with dac.init(size=1, rank=0) as c:
        yield c


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_simulate_rejects_non_finite_inputs(bad: float) -> None:
    x = np.ones((8, 2))
    x[5, 1] = bad
    with pytest.raises(dac.NonFiniteError, match="rank 5") as e:
        dac.simulate(x)
    assert isinstance(e.value, ValueError)
    assert e.value.ranks == [5]  # type: ignore[attr-defined]


def test_every_kind_of_rust_error_has_its_exception_class() -> None:
    """Every kind of failure the Rust side can raise (dac_core::ErrorClass,
    matched exhaustively there) names a class of dac.errors that derives from
    DacError and is exported as dac.<name>."""
    from dac import _native, errors

    names = _native.error_classes()
    assert len(names) == len(set(names)) == 8
    for name in names:
        cls = getattr(errors, name)
        assert issubclass(cls, dac.DacError) and cls is not dac.DacError, name
        assert getattr(dac, name) is cls, name


def test_unknown_names_are_argument_errors() -> None:
    with pytest.raises(dac.ArgumentError, match="moebius") as e:
        dac.simulate(np.ones(4), topology="moebius")
    assert isinstance(e.value, ValueError)
    with pytest.raises(dac.ArgumentError, match="gossip"):
        dac.simulate(np.ones(4), schedule="gossip")
    with pytest.raises(dac.ArgumentError, match="moebius"):
        dac.topology.spectral_gap("moebius", 4)


def test_invalid_settings_are_argument_errors() -> None:
    with pytest.raises(dac.ArgumentError, match="too large"):
        dac.simulate(np.ones(8), topology="ring", schedule="laplacian:0.9")
    with pytest.raises(dac.ArgumentError, match="tol"):
        dac.simulate(np.ones(8), tol=0.0)
    with pytest.raises(dac.ArgumentError, match="node 8"):
        dac.simulate(np.ones(8), crash={8: 1})
    with pytest.raises(dac.ArgumentError, match="power-of-two node count, got 10"):
        dac.simulate(np.ones(10), topology="hypercube")
    with pytest.raises(dac.ArgumentError, match="node 9"):
        dac.topology.neighbors("ring", 8, 9)


def test_wrong_dtypes_are_type_errors() -> None:
    with pytest.raises(dac.InputTypeError, match="dtype <U") as e:
        dac.simulate(["a", "b", "c"])
    assert isinstance(e.value, TypeError)
    with pytest.raises(dac.InputTypeError, match="complex"):
        dac.simulate(np.ones(4) * 1j)
    with pytest.raises(dac.InputTypeError, match="crash node"):
        dac.simulate(np.ones(4), crash={"a": 1})  # type: ignore[dict-item]


def test_integer_inputs_are_converted() -> None:
    r = dac.simulate(np.array([1, 2, 3, 6]), topology="complete")
    assert np.allclose(r.estimates, 3.0, rtol=0, atol=1e-12)


def test_wrong_shapes_are_shape_errors() -> None:
    with pytest.raises(dac.ShapeError, match=r"shape \(2, 2, 2\)"):
        dac.simulate(np.ones((2, 2, 2)))


def test_comm_errors_name_the_rank(comm: dac.Comm) -> None:
    with pytest.raises(dac.NonFiniteError, match="rank 0") as e:
        comm.allreduce(np.array([1.0, np.nan]))
    assert e.value.rank == 0
    with pytest.raises(dac.InputTypeError, match="rank 0: x has dtype"):
        comm.allreduce(["1", "x"])
    with pytest.raises(dac.ArgumentError, match="'max'"):
        comm.allreduce(1.0, op="max")
    with pytest.raises(dac.ShapeError, match="2 columns here but x has 3"):
        dac.linalg.matvec(comm, np.ones((4, 2)), np.ones(3))
    with pytest.raises(dac.ShapeError, match="rank 0: a_rows has shape"):
        dac.linalg.lstsq(comm, np.ones(4), np.ones(4))
    with pytest.raises(dac.ShapeError):
        dac.linalg.lstsq(comm, np.ones((4, 2)), np.ones(3))
    with pytest.raises(dac.ArgumentError, match="intercept = 2 is not a column of A"):
        dac.linalg.lstsq(comm, np.ones((4, 2)), np.ones(4), ridge=1.0, intercept=2)
    with pytest.raises(dac.ArgumentError, match="intercept = -1 must not be negative"):
        dac.linalg.lstsq(comm, np.ones((4, 2)), np.ones(4), ridge=1.0, intercept=-1)
    with pytest.raises(dac.InputTypeError, match="intercept = 'a' is not an integer"):
        dac.linalg.lstsq(comm, np.ones((4, 2)), np.ones(4), ridge=1.0, intercept="a")
    with pytest.raises(dac.ShapeError):
        dac.linalg.dot(comm, np.ones(3), np.ones(4))
    with pytest.raises(dac.ArgumentError, match="noise_var"):
        dac.bayes.gaussian_linear(comm, np.ones((3, 1)), np.ones(3), np.zeros(1), np.eye(1), -1.0)
    with pytest.raises(dac.ShapeError, match="3 values but the grid has 4"):
        dac.bayes.grid_posterior(comm, np.arange(4.0), np.zeros(3), lambda t: 0.0)
    # More values than a frame holds (65 MiB): refused before the input
    # is copied (it was copied first: 3.16 GB peak for 2e8 values).
    with pytest.raises(dac.ShapeError, match="9000000 values"):
        comm.allreduce(np.ones(9_000_000))
    # The comm is still usable after all of these.
    assert comm.allreduce(4.0).value == 4.0


def test_a_local_argument_error_names_this_rank_and_keeps_the_comm_usable(
    comm: dac.Comm,
) -> None:
    # (Every rank raises it in a networked job: tests/spmd/lone_bad_argument.py.)
    with pytest.raises(dac.InputTypeError, match="rank 0: x has dtype") as e:
        comm.allreduce("x")
    assert e.value.ranks == [0]  # type: ignore[attr-defined]
    assert e.value.__context__ is None
    with pytest.raises(dac.ArgumentError, match="max_iter = -1 must not be negative"):
        dac.linalg.cg(comm, np.eye(2), np.ones(2), max_iter=-1)
    with pytest.raises(ZeroDivisionError):
        dac.bayes.grid_posterior(comm, np.arange(1.0, 3.0), np.zeros(2), lambda t: 1 / 0)
    with pytest.raises(dac.ArgumentError, match="C-contiguous"):
        dac._native.dot(comm._native, np.ones(6)[::2], np.ones(3))
    with pytest.raises(dac.ArgumentError, match='kind="size"; expected'):
        comm._native.abort_call("size")
    comm._native.abort_call("shape")  # alone in the job: nobody to tell
    assert comm.allreduce(3.0).value == 3.0


def test_a_local_argument_error_wins_over_a_failure_to_tell_the_others() -> None:
    c = dac.init(size=1, rank=0)
    c.close()
    with pytest.raises(dac.InputTypeError, match="rank 0: x has dtype") as e:
        c.allreduce(["1", "x"])
    assert isinstance(e.value.__context__, dac.NetworkError), e.value.__context__
    assert "closed" in str(e.value.__context__)
    with pytest.raises(dac.ShapeError, match="a_rows has shape") as e2:
        dac.linalg.lstsq(c, np.ones(4), np.ones(4))
    assert isinstance(e2.value.__context__, dac.NetworkError)
    with pytest.raises(dac.ArgumentError, match="C-contiguous") as e3:
        dac._native.dot(c._native, np.ones(6)[::2], np.ones(3))
    assert isinstance(e3.value.__context__, dac.NetworkError)
    # An error with a context of its own keeps it, and gets a note.
    with pytest.raises(dac.InputTypeError, match="cannot be read as an array") as e4:
        c.allreduce([[1.0], [1.0, 2.0]])
    assert not isinstance(e4.value.__context__, dac.NetworkError)
    notes = getattr(e4.value, "__notes__", ["could not fail the call"])  # (Python < 3.11)
    assert any("could not fail the call" in n for n in notes), notes


def test_solver_limits_are_convergence_errors(comm: dac.Comm) -> None:
    a = np.diag(np.arange(1.0, 21.0))
    with pytest.raises(dac.ConvergenceError) as e:
        dac.linalg.cg(comm, a, np.ones(20), tol=1e-12, max_iter=3)
    assert e.value.iterations == 3  # type: ignore[attr-defined]
    assert e.value.residual > 1e-12  # type: ignore[attr-defined]


def test_init_checks_its_arguments() -> None:
    with pytest.raises(dac.ArgumentError, match="not started by dacrun"):
        dac.init()
    with pytest.raises(dac.ArgumentError, match="rank"):
        dac.init(size=2, rank=5)
    with pytest.raises(dac.ArgumentError, match="peer_timeout"):
        dac.init(size=1, rank=0, peer_timeout=-1.0)
    with pytest.raises(dac.ArgumentError, match="bootstrap"):
        dac.init(size=2, rank=1, bootstrap="not an address")
    with pytest.raises(dac.ArgumentError, match="moebius"):
        dac.init(size=1, rank=0, topology="moebius")


def test_size_that_contradicts_dacrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAC_RANK", "1")
    monkeypatch.setenv("DAC_SIZE", "4")
    with pytest.raises(dac.ArgumentError, match="size=3 but this process was started by dacrun"):
        dac.init(size=3)


def test_a_closed_comm_says_so() -> None:
    c = dac.init(size=1, rank=0)
    c.close()
    c.close()
    assert c.closed
    with pytest.raises(dac.NetworkError, match="closed") as e:
        c.allreduce(1.0)
    assert e.value.kind == "closed" and e.value.peer is None


def test_an_allow_list_of_bad_peer_ids_is_an_argument_error() -> None:
    with pytest.raises(dac.ArgumentError, match='allow_peers: "not-a-peer" is not a peer id'):
        dac.init(size=1, rank=0, allow_peers=["not-a-peer"])
    with pytest.raises(dac.ArgumentError, match="allow_peers.*empty"):
        dac.init(size=1, rank=0, allow_peers=[])


def test_an_identity_file_keeps_the_peer_id(tmp_path: Path) -> None:
    ids = []
    for _ in range(2):
        with dac.init(size=1, rank=0, identity_file=str(tmp_path / "id")) as c:
            ids.append(c.peer_id)
    assert ids[0] == ids[1]
    assert (tmp_path / "id").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "options, error, says",
    [
        ({"size": 1, "rank": -1}, dac.ArgumentError, "rank = -1 must not be negative"),
        ({"size": -2, "rank": 0}, dac.ArgumentError, "size = -2 must not be negative"),
        ({"size": 1, "rank": 0, "max_rounds": -5}, dac.ArgumentError, "max_rounds = -5"),
        ({"size": 1, "rank": 0, "max_rounds": 2**40}, dac.ArgumentError, "too large"),
        ({"size": 1, "rank": 0, "seed": -1}, dac.ArgumentError, "seed = -1"),
        ({"size": 1.5, "rank": 0}, dac.InputTypeError, "size = 1.5 is not an integer"),
    ],
)
def test_init_counts_are_checked_with_a_sentence(
    options: Dict[str, Any], error: Type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        dac.init(**options)
