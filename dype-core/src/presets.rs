//! Named presets: each reproduces one reference exactly, as data over the functions of
//! [`crate::method`] (no second copy of a formula), or names the paper's methods for a model.

use crate::axis::RampClamp;
use crate::error::{DypeError, Result};
use crate::layout::{AttentionFactor, AxialRope, AxisConfig, AxisPolicy};
use crate::method::{Method, Mscale, NtkByParts, NtkKappa, ScaleSource, Yarn, YarnLlm};
use crate::schedule::{KappaSchedule, ThresholdKappa};

/// FLUX.1's rotary layout: axes (16, 56, 56), θ = 10 000, trained at 1024² = 64 tokens per side.
pub const FLUX_AXES: [usize; 3] = [16, 56, 56];
/// FLUX.1's RoPE base.
pub const FLUX_THETA: f64 = 10_000.0;
/// FLUX.1's trained tokens per side (1024 px / 16 px per token).
pub const FLUX_TRAIN_TOKENS: f64 = 64.0;
/// FiTv2-XL/2's head dim (72 → two axes of 36).
pub const FITV2_HEAD_DIM: usize = 72;
/// FiTv2's trained tokens per side (256 px / 8 / patch 2).
pub const FITV2_TRAIN_TOKENS: f64 = 16.0;

/// The methods of the official DyPE FLUX code (`--method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfficialMethod {
    /// `base`.
    Base,
    /// `ntk`: NTK-aware; with DyPE `ntk_factor = (s^(d/(d−2)))^(2t²)`.
    Ntk,
    /// `yarn`: NTK-by-parts (β 1.25/0.75, γ 16/2) with the official clamps; with DyPE thresholds × t².
    Yarn,
}

/// The official DyPE FLUX `FluxPosEmbed` (guyyariv/DyPE @436fe61): the first axis never scaled,
/// the others per axis against `base_tokens` (64), static `0.1·ln s + 1` mscale on YaRN axes.
/// Reproduces the reference for t ≥ 0.05; below t ≈ 0.02 its ramp inverts (every pair PI) and at
/// t = 0 it divides by zero — [`crate::DypeError::NonFinite`] here. Use [`paper_flux`] for the
/// well-defined form.
pub fn official_flux(
    method: OfficialMethod,
    dype: bool,
    theta: f64,
    axes_dim: &[usize],
    base_tokens: f64,
) -> Result<AxialRope> {
    let method = match method {
        OfficialMethod::Base => Method::Base,
        OfficialMethod::Ntk => Method::Ntk {
            dynamic: dype.then_some((
                KappaSchedule {
                    lambda_s: 2.0,
                    lambda_t: 2.0,
                },
                NtkKappa::Exponential,
            )),
        },
        OfficialMethod::Yarn => Method::NtkByParts(NtkByParts {
            clamp: RampClamp::Official,
            thresholds: dype.then_some((
                KappaSchedule {
                    lambda_s: 1.0,
                    lambda_t: 2.0,
                },
                ThresholdKappa::Multiply,
            )),
            ntk: None,
            mscale: Mscale::Yarn(ScaleSource::Linear),
            ..NtkByParts::default()
        }),
    };
    flux_layout(theta, axes_dim, base_tokens, method, AxisPolicy::PerAxis)
}

fn flux_layout(
    theta: f64,
    axes_dim: &[usize],
    base_tokens: f64,
    method: Method,
    policy: AxisPolicy,
) -> Result<AxialRope> {
    let mut axes = [AxisConfig::unscaled(2, theta)?; crate::MAX_AXES];
    if axes_dim.is_empty() {
        return Err(DypeError::Empty { name: "axes_dim" });
    }
    if axes_dim.len() > crate::MAX_AXES {
        return Err(DypeError::TooManyAxes {
            count: axes_dim.len(),
            max: crate::MAX_AXES,
        });
    }
    for (k, &d) in axes_dim.iter().enumerate() {
        axes[k] = if k == 0 {
            AxisConfig::unscaled(d, theta)?
        } else {
            AxisConfig::scaled(d, theta, base_tokens)?
        };
    }
    AxialRope::new(&axes[..axes_dim.len()], method, policy)
}

/// The paper's methods by name (DyPE §2.2, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperMethod {
    /// Native RoPE.
    Base,
    /// PI (Eq. 5) / Dy-PI (Eq. 14).
    Pi,
    /// NTK-aware (Eq. 6) / Dy-NTK (Eq. 15, exponential, λs = λt = 2).
    Ntk,
    /// YaRN (Eq. 7–9, α = 1, β = 32) / Dy-YaRN (Eq. 16–17, κ = t²).
    Yarn,
}

/// The paper's method, static or dynamic, with the paper's defaults.
pub fn paper_method(method: PaperMethod, dynamic: bool) -> Method {
    match (method, dynamic) {
        (PaperMethod::Base, _) => Method::Base,
        (PaperMethod::Pi, false) => Method::Pi { dynamic: None },
        (PaperMethod::Pi, true) => Method::dy_pi(),
        (PaperMethod::Ntk, false) => Method::Ntk { dynamic: None },
        (PaperMethod::Ntk, true) => Method::dy_ntk(),
        (PaperMethod::Yarn, false) => Method::Yarn(Yarn::default()),
        (PaperMethod::Yarn, true) => Method::dy_yarn(),
    }
}

/// FLUX.1 with any [`Method`], per-axis scales against 64 trained tokens, first axis unscaled.
pub fn paper_flux(method: Method) -> Result<AxialRope> {
    flux_layout(
        FLUX_THETA,
        &FLUX_AXES,
        FLUX_TRAIN_TOKENS,
        method,
        AxisPolicy::PerAxis,
    )
}

/// ComfyUI-DyPE v2.3 `get_1d_yarn_pos_embed` as a 1-D method: NTK-by-parts with thresholds raised
/// to `κ = dype_scale·t^dype_exponent` (exponent form), official clamps, and mscale
/// `0.1·ln s + 1` (`aggressive`) or `1 + 0.1·ln s/√s`.
pub fn comfy_yarn(
    dype: bool,
    dype_scale: f64,
    dype_exponent: f64,
    aggressive_mscale: bool,
) -> Result<Method> {
    let schedule = KappaSchedule::new(dype_scale, dype_exponent)?;
    Ok(Method::NtkByParts(NtkByParts {
        clamp: RampClamp::Official,
        thresholds: dype.then_some((schedule, ThresholdKappa::Power)),
        ntk: None,
        mscale: if aggressive_mscale {
            Mscale::Yarn(ScaleSource::Linear)
        } else {
            Mscale::SqrtDamped(ScaleSource::Linear)
        },
        ..NtkByParts::default()
    }))
}

/// ComfyUI-DyPE v2.3 `get_1d_dype_yarn_pos_embed` ("vision_yarn") as a method: like [`comfy_yarn`]
/// but PI bands at the axis' linear scale, NTK bands at the NTK (global) scale, and mscale
/// `1 + 0.1·ln(ntk_scale)/√ntk_scale`. Use with [`AxisPolicy::VisionYarn`]; the node's
/// time-decaying mscale is [`AttentionFactor::StartSigmaDecay`].
pub fn comfy_vision_yarn(dype: bool, dype_scale: f64, dype_exponent: f64) -> Result<Method> {
    let schedule = KappaSchedule::new(dype_scale, dype_exponent)?;
    Ok(Method::NtkByParts(NtkByParts {
        clamp: RampClamp::Official,
        thresholds: dype.then_some((schedule, ThresholdKappa::Power)),
        ntk: None,
        mscale: Mscale::SqrtDamped(ScaleSource::Ntk),
        ..NtkByParts::default()
    }))
}

/// FiT's `custom_freqs` (whlzy/FiT `VisionRotaryEmbedding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitFreqs {
    /// `normal`.
    Normal,
    /// `linear` (PI).
    Linear,
    /// `ntk-aware`.
    NtkAware,
    /// `ntk-aware-pro1`: NTK-aware with proportional attention over `max(H, W)`.
    NtkAwarePro1,
    /// `ntk-aware-pro2`: NTK-aware with proportional attention over `H·W`.
    NtkAwarePro2,
    /// `ntk-by-parts` (β 1.25/0.75, γ 16/2, HF clamps, no mscale).
    NtkByParts,
    /// `yarn` (β_fast 32, β_slow 1, mscale `0.1·ln s + 1` at `max(H, W)/L`).
    Yarn,
}

impl core::str::FromStr for FitFreqs {
    type Err = DypeError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "normal" => FitFreqs::Normal,
            "linear" => FitFreqs::Linear,
            "ntk-aware" => FitFreqs::NtkAware,
            "ntk-aware-pro1" => FitFreqs::NtkAwarePro1,
            "ntk-aware-pro2" => FitFreqs::NtkAwarePro2,
            "ntk-by-parts" => FitFreqs::NtkByParts,
            "yarn" => FitFreqs::Yarn,
            _ => {
                return Err(DypeError::InvalidConfig {
                    reason: "unknown FiT custom_freqs",
                });
            }
        })
    }
}

/// FiT's `VisionRotaryEmbedding`: two axes (rows, then columns) of `head_dim/2` each, trained extent
/// `ori_max_pe_len`; `decouple` scales each axis by its own extent, otherwise both by `max(H, W)`.
pub fn fit(
    freqs: FitFreqs,
    decouple: bool,
    head_dim: usize,
    theta: f64,
    ori_max_pe_len: f64,
) -> Result<AxialRope> {
    if !head_dim.is_multiple_of(4) || head_dim == 0 {
        return Err(DypeError::InvalidDim { dim: head_dim });
    }
    let axis = AxisConfig::scaled(head_dim / 2, theta, ori_max_pe_len)?;
    let (method, attention) = fit_method(freqs);
    let policy = if decouple {
        AxisPolicy::PerAxis
    } else {
        AxisPolicy::Isotropic
    };
    Ok(AxialRope::new(&[axis, axis], method, policy)?.with_attention(attention))
}

/// The method and attention rule of a FiT `custom_freqs`.
pub fn fit_method(freqs: FitFreqs) -> (Method, AttentionFactor) {
    match freqs {
        FitFreqs::Normal => (Method::Base, AttentionFactor::None),
        FitFreqs::Linear => (Method::Pi { dynamic: None }, AttentionFactor::None),
        FitFreqs::NtkAware => (Method::Ntk { dynamic: None }, AttentionFactor::None),
        FitFreqs::NtkAwarePro1 => (Method::Ntk { dynamic: None }, AttentionFactor::FitPro1),
        FitFreqs::NtkAwarePro2 => (Method::Ntk { dynamic: None }, AttentionFactor::FitPro2),
        FitFreqs::NtkByParts => (
            Method::NtkByParts(NtkByParts {
                clamp: RampClamp::Hf { truncate: true },
                mscale: Mscale::None,
                ..NtkByParts::default()
            }),
            AttentionFactor::FromMethod,
        ),
        FitFreqs::Yarn => (
            Method::YarnLlm(YarnLlm {
                mscale: Mscale::Yarn(ScaleSource::Global),
                ..YarnLlm::default()
            }),
            AttentionFactor::FromMethod,
        ),
    }
}

/// One method vocabulary for every example: `base`, `pi`, `ntk`, `yarn` (paper YaRN),
/// `ntk-by-parts`, `dy-pi`, `dy-ntk`, `dy-ntk-mult`, `dy-yarn`, `dy-ntk-by-parts`, and the official
/// DyPE FLUX forms `official-ntk`, `official-yarn`, `official-dy-ntk`, `official-dy-yarn`.
pub fn method_by_name(name: &str) -> Result<Method> {
    let official_parts = |dy: bool| {
        Method::NtkByParts(NtkByParts {
            clamp: RampClamp::Official,
            thresholds: dy.then_some((
                KappaSchedule {
                    lambda_s: 1.0,
                    lambda_t: 2.0,
                },
                ThresholdKappa::Multiply,
            )),
            ..NtkByParts::default()
        })
    };
    Ok(match name {
        "base" => Method::Base,
        "pi" => paper_method(PaperMethod::Pi, false),
        "ntk" => paper_method(PaperMethod::Ntk, false),
        "yarn" => paper_method(PaperMethod::Yarn, false),
        "ntk-by-parts" => Method::NtkByParts(NtkByParts::default()),
        "dy-pi" => paper_method(PaperMethod::Pi, true),
        "dy-ntk" => paper_method(PaperMethod::Ntk, true),
        "dy-ntk-mult" => Method::Ntk {
            dynamic: Some((KappaSchedule::default(), NtkKappa::Multiplicative)),
        },
        "dy-yarn" => paper_method(PaperMethod::Yarn, true),
        "dy-ntk-by-parts" => Method::NtkByParts(NtkByParts {
            thresholds: Some((
                KappaSchedule {
                    lambda_s: 1.0,
                    lambda_t: 2.0,
                },
                ThresholdKappa::Multiply,
            )),
            ..NtkByParts::default()
        }),
        "official-ntk" => Method::Ntk { dynamic: None },
        "official-dy-ntk" => Method::Ntk {
            dynamic: Some((KappaSchedule::default(), NtkKappa::Exponential)),
        },
        "official-yarn" => official_parts(false),
        "official-dy-yarn" => official_parts(true),
        _ => {
            return Err(DypeError::InvalidConfig {
                reason: "unknown method name (see dype_core::presets::METHOD_NAMES)",
            });
        }
    })
}

/// Every name [`method_by_name`] accepts.
pub const METHOD_NAMES: [&str; 14] = [
    "base",
    "pi",
    "ntk",
    "yarn",
    "ntk-by-parts",
    "dy-pi",
    "dy-ntk",
    "dy-ntk-mult",
    "dy-yarn",
    "dy-ntk-by-parts",
    "official-ntk",
    "official-yarn",
    "official-dy-ntk",
    "official-dy-yarn",
];
