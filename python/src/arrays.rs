//! Copies of the array arguments, for calls that run on a worker thread.
//!
//! The Python wrappers pass float64, C-contiguous arrays. A copy is made
//! from the flat data (not through an `ndarray` view, which rejects some
//! strides numpy gives empty arrays). A failed copy is an `ArgumentError`;
//! in a collective, [`crate::comm::Comm::arguments`] tells the other
//! members of it.

use numpy::ndarray::{Array1, Array2};
use numpy::{AsSliceError, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};

use crate::errors::{Failure, argument};

/// A copy of a vector argument.
pub fn owned1(a: &PyReadonlyArray1<'_, f64>) -> Result<Array1<f64>, Failure> {
    Ok(Array1::from(contiguous(a.as_slice())?.to_vec()))
}

/// [`owned1`] for matrices.
pub fn owned2(a: &PyReadonlyArray2<'_, f64>) -> Result<Array2<f64>, Failure> {
    let (rows, cols) = (a.shape()[0], a.shape()[1]);
    let data = contiguous(a.as_slice())?.to_vec();
    Array2::from_shape_vec((rows, cols), data)
        .map_err(|e| argument(format!("array of shape ({rows}, {cols}): {e}")))
}

fn contiguous<T>(slice: Result<T, AsSliceError>) -> Result<T, Failure> {
    slice.map_err(|_| argument("arrays passed to dac._native must be C-contiguous"))
}

/// The flat data of a C-contiguous array of any shape.
pub fn flat<T: Copy>(slice: Result<&[T], AsSliceError>) -> Result<Vec<T>, Failure> {
    Ok(contiguous(slice)?.to_vec())
}
