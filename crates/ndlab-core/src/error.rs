//! The one error type of the core. Every fallible core function returns [`Result`].

use thiserror::Error;

/// What can go wrong in the core. Messages are written for a person: the browser and the
/// command line show them as they are.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A shape that does not fit the operation (wrong rank, zero size, mismatched channels...).
    #[error("shape error: {0}")]
    Shape(String),
    /// A parameter out of its range (T, stride, padding, threshold...).
    #[error("invalid parameter: {0}")]
    Param(String),
    /// A file that could not be read as what it claims to be.
    #[error("cannot read file: {0}")]
    Format(String),
    /// Weights or inputs holding NaN or infinity.
    #[error("non-finite values: {0}")]
    NonFinite(String),
    /// A request larger than the stated limits (refused before allocating).
    #[error("too large: {0}")]
    TooLarge(String),
    /// A numerical self-check failed (e.g. the SVD's energy does not match the slice's norm).
    #[error("numerical check failed: {0}")]
    Numeric(String),
}

/// The core's result type.
pub type Result<T> = std::result::Result<T, Error>;
