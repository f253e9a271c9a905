//! Backends compiled into this crate, and a non-panicking usability probe.
//!
//! | alias | cargo feature | burn type | notes |
//! |---|---|---|---|
//! | [`Cpu`] | `cpu` (default) | [`burn::backend::Flex`] | pure-Rust CPU backend; f32/f64/f16/bf16; tiled attention |
//! | `Wgpu` | `wgpu` | `burn::backend::Wgpu` (CubeCL + fusion + autotune) | Vulkan/Metal/DX12/GL, also Mesa lavapipe |
//! | `Cuda` | `cuda` | `burn::backend::Cuda` (CubeCL + fusion + autotune) | needs `libcuda` and `libnvrtc` at run time |
//!
//! burn panics when a GPU runtime cannot be initialised (no `libcuda`, no wgpu adapter).
//! [`check_backend`] runs device initialisation plus one tiny computation under
//! [`std::panic::catch_unwind`] and turns such a panic into a [`BackendError`]. The panic message
//! is still printed by the process' panic hook (this crate does not replace the global hook).

use core::fmt;
use core::str::FromStr;
use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// burn's pure-Rust CPU backend ([`burn::backend::Flex`]), f32 floats and i32 ints.
#[cfg(feature = "cpu")]
pub type Cpu = burn::backend::Flex;

/// The wgpu backend (CubeCL WGSL runtime with fusion and autotune), f32 floats.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;

/// The CUDA backend (CubeCL CUDA runtime with fusion and autotune), f32 floats.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;

/// A backend selectable at run time (e.g. from a command-line flag).
///
/// Parses case-insensitively from `"cpu"` (alias `"flex"`), `"wgpu"` and `"cuda"`.
///
/// ```
/// use dype_burn::backend::BackendKind;
/// let kind: BackendKind = "CUDA".parse().unwrap();
/// assert_eq!(kind, BackendKind::Cuda);
/// assert_eq!(kind.to_string(), "cuda");
/// assert!("tpu".parse::<BackendKind>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendKind {
    /// [`Cpu`] (burn Flex), feature `cpu`.
    Cpu,
    /// `Wgpu`, feature `wgpu`.
    Wgpu,
    /// `Cuda`, feature `cuda`.
    Cuda,
}

impl BackendKind {
    /// All kinds, compiled in or not.
    pub const ALL: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

    /// Lower-case name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether the cargo feature for this backend was enabled when this crate was built.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Cpu => cfg!(feature = "cpu"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The kinds compiled into this build, in the order of [`BackendKind::ALL`].
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|k| k.is_compiled()).collect()
    }

    /// Probes the default device of this backend with [`check_backend`].
    ///
    /// Returns [`BackendError::NotCompiled`] when the backend's cargo feature is off.
    pub fn check(self) -> Result<(), BackendError> {
        match self {
            #[cfg(feature = "cpu")]
            BackendKind::Cpu => check_backend::<Cpu>(&Default::default()),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => check_backend::<Wgpu>(&Default::default()),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => check_backend::<Cuda>(&Default::default()),
            #[allow(unreachable_patterns)]
            kind => Err(BackendError::NotCompiled { kind }),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error of `BackendKind::from_str`: the string names no known backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?} (expected one of: cpu, flex, wgpu, cuda)")]
pub struct ParseBackendKindError(pub String);

impl FromStr for BackendKind {
    type Err = ParseBackendKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            _ => Err(ParseBackendKindError(s.to_owned())),
        }
    }
}

/// Why a backend cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend's cargo feature was not enabled for this build.
    #[error("backend `{kind}` is not compiled in (enable the `{kind}` cargo feature of dype-burn)")]
    NotCompiled {
        /// The requested backend.
        kind: BackendKind,
    },
    /// Device initialisation or the probe computation panicked or returned an error
    /// (e.g. `libcuda` not found, no wgpu adapter).
    #[error("backend `{backend}` is unavailable: {message}")]
    Unavailable {
        /// Backend name (burn's `Backend::name` where it could be obtained).
        backend: String,
        /// The panic or error message.
        message: String,
    },
    /// The probe ran but produced a wrong result.
    #[error("backend `{backend}` computed {got} for a probe whose result is {expected}")]
    WrongResult {
        /// Backend name.
        backend: String,
        /// Value the probe should produce.
        expected: f32,
        /// Value it produced.
        got: f32,
    },
}

/// Checks that backend `B` works on `device`: initialises the device, uploads a tiny tensor,
/// computes on it and reads the result back, catching panics.
///
/// ```
/// # #[cfg(feature = "cpu")] {
/// use dype_burn::backend::{check_backend, Cpu};
/// check_backend::<Cpu>(&Default::default()).unwrap();
/// # }
/// ```
pub fn check_backend<B: Backend>(device: &B::Device) -> Result<(), BackendError> {
    let type_name = std::any::type_name::<B>().to_owned();
    let probe = catch_unwind(AssertUnwindSafe(|| {
        let name = B::name(device);
        let data = Tensor::<B, 1>::from_floats([1.0f32, 2.0, 3.0], device)
            .mul_scalar(2.0)
            .sum()
            .try_into_data();
        (name, data)
    }));
    let (name, data) = probe.map_err(|payload| BackendError::Unavailable {
        backend: type_name.clone(),
        message: panic_message(payload.as_ref()),
    })?;
    let data = data.map_err(|e| BackendError::Unavailable {
        backend: name.clone(),
        message: format!("{e:?}"),
    })?;
    let got = data
        .to_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN);
    let expected = 12.0;
    if got == expected {
        Ok(())
    } else {
        Err(BackendError::WrongResult {
            backend: name,
            expected,
            got,
        })
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
