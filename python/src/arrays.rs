//! Copies of the array arguments, for calls that run on a worker thread.
//!
//! The Python wrappers pass float64, C-contiguous arrays. A copy is made
//! from the flat data (not through an `ndarray` view, which rejects some
//! strides numpy gives empty arrays).

use numpy::ndarray::{Array1, Array2};
use numpy::{AsSliceError, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::{argument, to_py};

/// A copy of a vector argument.
pub fn owned1(py: Python<'_>, a: &PyReadonlyArray1<'_, f64>) -> PyResult<Array1<f64>> {
    Ok(Array1::from(contiguous(py, a.as_slice())?.to_vec()))
}

/// [`owned1`] for matrices.
pub fn owned2(py: Python<'_>, a: &PyReadonlyArray2<'_, f64>) -> PyResult<Array2<f64>> {
    let (rows, cols) = (a.shape()[0], a.shape()[1]);
    let data = contiguous(py, a.as_slice())?.to_vec();
    Array2::from_shape_vec((rows, cols), data).map_err(|e| {
        to_py(
            py,
            None,
            argument(format!("array of shape ({rows}, {cols}): {e}")),
        )
    })
}

fn contiguous<T>(py: Python<'_>, slice: Result<T, AsSliceError>) -> PyResult<T> {
    slice.map_err(|_| {
        to_py(
            py,
            None,
            argument("arrays passed to dac._native must be C-contiguous"),
        )
    })
}

/// The flat data of a C-contiguous array of any shape.
pub fn flat<T: Copy>(py: Python<'_>, slice: Result<&[T], AsSliceError>) -> PyResult<Vec<T>> {
    Ok(contiguous(py, slice)?.to_vec())
}
