//! The one error type of `dype-core`.

use thiserror::Error;

/// Everything that can be wrong with an input to `dype-core`. Every public function validates its
/// arguments and returns this instead of panicking.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
#[non_exhaustive]
pub enum DypeError {
    /// A rotary dimension was zero or odd (it must hold whole (cos, sin) pairs).
    #[error("rotary dimension {dim} must be even and non-zero")]
    InvalidDim {
        /// The offending dimension.
        dim: usize,
    },
    /// A rotary dimension of 2 has no NTK base change (`d/(d-2)` is undefined).
    #[error("rotary dimension {dim} is too small for NTK-aware scaling (needs dim > 2)")]
    DimTooSmallForNtk {
        /// The offending dimension.
        dim: usize,
    },
    /// A parameter that must be a finite number was NaN or infinite.
    #[error("parameter `{name}` must be finite, got {value}")]
    NonFinite {
        /// Parameter name.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A parameter was outside its valid range.
    #[error("parameter `{name}` = {value} is out of range: {expected}")]
    OutOfRange {
        /// Parameter name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What was expected, in words.
        expected: &'static str,
    },
    /// A caller-provided slice had the wrong length.
    #[error("slice `{name}` has length {actual}, expected {expected}")]
    LengthMismatch {
        /// Which slice.
        name: &'static str,
        /// Required length.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// An empty input where at least one element is needed (no axes, no positions, no tokens).
    #[error("`{name}` must not be empty")]
    Empty {
        /// What was empty.
        name: &'static str,
    },
    /// More axes than [`crate::MAX_AXES`].
    #[error("{count} axes given, at most {max} are supported")]
    TooManyAxes {
        /// Axes given.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A method was combined with an axis policy or parameter set it cannot use.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Why.
        reason: &'static str,
    },
}

/// Result alias of `dype-core`.
pub type Result<T> = core::result::Result<T, DypeError>;

/// Checks that `value` is finite.
pub(crate) fn finite(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(DypeError::NonFinite { name, value })
    }
}

/// Checks that `value` is finite and strictly positive.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64> {
    finite(name, value)?;
    if value > 0.0 {
        Ok(value)
    } else {
        Err(DypeError::OutOfRange {
            name,
            value,
            expected: "> 0",
        })
    }
}

/// Checks that `value` is finite and `>= 0`.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<f64> {
    finite(name, value)?;
    if value >= 0.0 {
        Ok(value)
    } else {
        Err(DypeError::OutOfRange {
            name,
            value,
            expected: ">= 0",
        })
    }
}

/// Checks that a slice has the expected length.
pub(crate) fn length(name: &'static str, expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(DypeError::LengthMismatch {
            name,
            expected,
            actual,
        })
    }
}
