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
    /// A size above one of the documented caps ([`crate::MAX_DIM`], [`crate::MAX_TOKENS`],
    /// [`crate::MAX_ELEMENTS`]), or one whose arithmetic overflows.
    #[error("`{name}` = {value} is too large (at most {max})")]
    TooLarge {
        /// What was too large.
        name: &'static str,
        /// The size asked for (saturated at `u64::MAX` when it overflowed).
        value: u64,
        /// The cap.
        max: u64,
    },
    /// A name that no registry entry has.
    #[error("unknown {kind} `{name}`; known: {known}")]
    UnknownName {
        /// What kind of name (e.g. "method").
        kind: &'static str,
        /// The name given (truncated to 48 bytes).
        name: ShortName,
        /// The known names, comma-separated.
        known: &'static str,
    },
}

/// A name kept inline in an error (no allocation, so `DypeError` stays `Copy` and `no_std`): the
/// first 48 bytes of the name, cut at a character boundary.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShortName {
    bytes: [u8; 48],
    len: u8,
}

impl ShortName {
    /// Keeps the first 48 bytes of `name` (at a character boundary).
    pub fn new(name: &str) -> Self {
        let mut len = name.len().min(48);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0u8; 48];
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        ShortName {
            bytes,
            len: len as u8,
        }
    }

    /// The kept text.
    pub fn as_str(&self) -> &str {
        let len = usize::from(self.len).min(self.bytes.len());
        core::str::from_utf8(&self.bytes[..len]).unwrap_or("")
    }
}

impl core::fmt::Debug for ShortName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for ShortName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
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

/// Checks that a produced value is finite (a bug or an extreme input otherwise).
pub(crate) fn produced(name: &'static str, value: f64) -> Result<f64> {
    finite(name, value)
}

/// Checks that a produced attention factor is finite and strictly positive.
pub(crate) fn factor(name: &'static str, value: f64) -> Result<f64> {
    positive(name, value)
}

/// `a · b` for sizes, as a typed error when it overflows.
pub(crate) fn mul(name: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(DypeError::TooLarge {
        name,
        value: u64::MAX,
        max: usize::MAX as u64,
    })
}

/// `a + b` for sizes, as a typed error when it overflows.
#[cfg_attr(not(feature = "alloc"), allow(dead_code))]
pub(crate) fn add(name: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b).ok_or(DypeError::TooLarge {
        name,
        value: u64::MAX,
        max: usize::MAX as u64,
    })
}

/// Checks `value <= max`.
pub(crate) fn at_most(name: &'static str, value: usize, max: usize) -> Result<usize> {
    if value <= max {
        Ok(value)
    } else {
        Err(DypeError::TooLarge {
            name,
            value: value as u64,
            max: max as u64,
        })
    }
}
