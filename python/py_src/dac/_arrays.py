"""Conversion of user inputs to the float64 arrays the native module takes."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import numpy.typing as npt

from .errors import ArgumentError, InputTypeError, ShapeError

Float64Array = npt.NDArray[np.float64]


def _who(rank: Optional[int]) -> str:
    return "" if rank is None else f"rank {rank}: "


def as_float(
    x: Any, name: str, ndims: Tuple[int, ...], rank: Optional[int] = None
) -> Float64Array:
    """``x`` as a C-contiguous float64 array with one of ``ndims``
    dimensions; no copy when it already is one.

    Integer and boolean arrays are converted; strings, complex numbers and
    objects raise :class:`InputTypeError`, a wrong number of dimensions
    :class:`ShapeError`. Messages name the rank, the argument and what was
    found.
    """
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise InputTypeError(
            f"{_who(rank)}{name} cannot be read as an array: {e}", rank=rank
        ) from e
    if arr.dtype.kind not in "biuf":
        raise InputTypeError(
            f"{_who(rank)}{name} has dtype {arr.dtype}; expected real numbers "
            "(float64, or a float, integer or bool dtype, which is converted)",
            rank=rank,
        )
    if arr.ndim not in ndims:
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise ShapeError(
            f"{_who(rank)}{name} has shape {arr.shape}; expected a {expected} array",
            rank=rank,
        )
    out = arr.astype(np.float64, copy=False)
    # (ascontiguousarray would turn a 0-D array into a 1-D one.)
    return out if out.flags.c_contiguous else np.ascontiguousarray(out)


def as_scalar(x: Any, name: str, rank: Optional[int] = None) -> float:
    """``x`` as a float; anything else raises :class:`InputTypeError`."""
    try:
        return float(x)
    except (TypeError, ValueError) as e:
        raise InputTypeError(
            f"{_who(rank)}{name} = {x!r} is not a real number", rank=rank
        ) from e


def as_count(x: Any, name: str, rank: Optional[int] = None) -> int:
    """``x`` as an integer in ``0..2**64``: anything but an integer raises
    :class:`InputTypeError`, one out of that range :class:`ArgumentError`."""
    if isinstance(x, bool) or not isinstance(x, int) and not hasattr(x, "__index__"):
        raise InputTypeError(f"{_who(rank)}{name} = {x!r} is not an integer", rank=rank)
    value = int(x.__index__())
    if value < 0:
        raise ArgumentError(f"{_who(rank)}{name} = {value} must not be negative", rank=rank)
    if value >= 2**64:
        raise ArgumentError(f"{_who(rank)}{name} = {value} is too large", rank=rank)
    return value
