//! Named presets: each reproduces one reference exactly, as data over the functions of
//! [`crate::method`] (no second copy of a formula), or names the paper's methods for a model.

use crate::axis::RampClamp;
use crate::error::ShortName;
use crate::error::{DypeError, Result};
use crate::layout::{AttentionFactor, AxialRope, AxisConfig, AxisPolicy};
use crate::method::{Lumina, Method, Mscale, NtkByParts, NtkKappa, ScaleSource, Yarn, YarnLlm};
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
/// the others per axis against `base_tokens` (64), static `0.1·ln s + 1` mscale on YaRN axes; an
/// axis not larger than its trained extent keeps the plain RoPE at every t, as the reference.
/// Reproduces the reference for t ≥ 0.05; below t ≈ 0.02 its ramp inverts (every pair PI), and at
/// t = 0, where the reference divides by zero, it returns the κ → 0 limit of the paper's form: the
/// native RoPE. Use [`paper_flux`] for the well-defined form.
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
            dynamic: dype.then_some((KappaSchedule::PAPER, NtkKappa::Exponential)),
        },
        OfficialMethod::Yarn => official_ntk_by_parts(dype),
    };
    flux_layout(theta, axes_dim, base_tokens, method, AxisPolicy::PerAxis)
}

/// The official code's "yarn": NTK-by-parts with the official clamps, thresholds `× t²` with DyPE.
fn official_ntk_by_parts(dype: bool) -> Method {
    Method::NtkByParts(NtkByParts {
        clamp: RampClamp::Official,
        thresholds: dype.then_some((KappaSchedule::DY_YARN, ThresholdKappa::Multiply)),
        ntk: None,
        mscale: Mscale::Yarn(ScaleSource::Linear),
        ..NtkByParts::default()
    })
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
    /// YaRN (Eq. 7–9, α = 1, β = 32) / Dy-YaRN (Eq. 16–17, κ = t², static τ(s) of Eq. 9).
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

/// ComfyUI-DyPE v2.3's `vision_yarn` as its node runs it: like [`comfy_yarn`] but PI bands at the
/// axis' linear scale and NTK bands at the NTK (global) scale (use with
/// [`AxisPolicy::VisionYarn`]), and the attention factor the node always passes in: `0.1·ln s_global
/// + 1`, decaying to 1 as `min(t/start_sigma, 1)^dype_exponent` ([`Mscale::StartSigmaDecay`]; the
/// node's defaults are `start_sigma = 1`, `dype_exponent = 2`).
pub fn comfy_vision_yarn(
    dype: bool,
    dype_scale: f64,
    dype_exponent: f64,
    start_sigma: f64,
) -> Result<Method> {
    let schedule = KappaSchedule::new(dype_scale, dype_exponent)?;
    crate::error::finite("start_sigma", start_sigma)?;
    Ok(Method::NtkByParts(NtkByParts {
        clamp: RampClamp::Official,
        thresholds: dype.then_some((schedule, ThresholdKappa::Power)),
        ntk: None,
        mscale: Mscale::StartSigmaDecay {
            start_sigma,
            lambda_t: dype_exponent,
        },
        ..NtkByParts::default()
    }))
}

/// `get_1d_dype_yarn_pos_embed` called on its own, without the node's mscale: its default factor
/// `1 + 0.1·ln(ntk_scale)/√ntk_scale` (what `rope/comfy_rope.json` records). The node never runs
/// it this way; [`comfy_vision_yarn`] is what it runs.
pub fn comfy_vision_yarn_function(
    dype: bool,
    dype_scale: f64,
    dype_exponent: f64,
) -> Result<Method> {
    let schedule = KappaSchedule::new(dype_scale, dype_exponent)?;
    Ok(Method::NtkByParts(NtkByParts {
        clamp: RampClamp::Official,
        thresholds: dype.then_some((schedule, ThresholdKappa::Power)),
        ntk: None,
        mscale: Mscale::SqrtDamped(ScaleSource::Ntk),
        ..NtkByParts::default()
    }))
}

/// Lumina-Next's time-aware scaled RoPE ([`Method::Lumina`]) with the given watershed (in Lumina's
/// time, `1 − σ`) and proportional attention.
pub fn lumina(watershed: f64, proportional_attention: bool) -> Result<Method> {
    crate::error::finite("watershed", watershed)?;
    if !(0.0..=1.0).contains(&watershed) {
        return Err(DypeError::OutOfRange {
            name: "watershed",
            value: watershed,
            expected: "within [0, 1] (Lumina's time)",
        });
    }
    Ok(Method::Lumina(Lumina {
        watershed,
        proportional_attention,
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

/// One entry of the method registry: a name, what it is, and what it builds.
#[derive(Debug, Clone, Copy)]
pub struct MethodEntry {
    /// The name (`--method` in the examples).
    pub name: &'static str,
    /// One line on what it is and where it comes from.
    pub summary: &'static str,
    build: fn() -> Method,
}

impl MethodEntry {
    /// The method this name stands for.
    pub fn method(&self) -> Method {
        (self.build)()
    }
}

const fn entry(name: &'static str, summary: &'static str, build: fn() -> Method) -> MethodEntry {
    MethodEntry {
        name,
        summary,
        build,
    }
}

/// Every named method, in the order `--method list` prints them: the paper's (DyPE §2.2, §3.2),
/// its App. D variants, the official DyPE FLUX forms and Lumina-Next's time-aware RoPE.
pub const METHODS: &[MethodEntry] = &[
    entry("base", "native RoPE", || Method::Base),
    entry("pi", "position interpolation, ω/s (Eq. 5)", || {
        paper_method(PaperMethod::Pi, false)
    }),
    entry("ntk", "NTK-aware, θ·s^(d/(d−2)) (Eq. 6)", || {
        paper_method(PaperMethod::Ntk, false)
    }),
    entry(
        "yarn",
        "paper YaRN, α = 1, β = 32 rotations, τ(s) = 0.1·ln s + 1 (Eq. 7–9)",
        || paper_method(PaperMethod::Yarn, false),
    ),
    entry(
        "ntk-by-parts",
        "NTK-by-parts, β 1.25/0.75, γ 16/2, well-defined clamps",
        || Method::NtkByParts(NtkByParts::default()),
    ),
    entry("dy-pi", "Dy-PI, ω/s^κ(t), κ = 2t² (Eq. 14)", || {
        paper_method(PaperMethod::Pi, true)
    }),
    entry(
        "dy-ntk",
        "Dy-NTK, θ·s^(κ(t)·d/(d−2)), κ = 2t² (Eq. 15)",
        || paper_method(PaperMethod::Ntk, true),
    ),
    entry(
        "dy-ntk-mult",
        "Dy-NTK, multiplicative form 1 + (s−1)·κ(t) (Eq. 19)",
        || Method::Ntk {
            dynamic: Some((KappaSchedule::PAPER, NtkKappa::Multiplicative)),
        },
    ),
    entry(
        "dy-yarn",
        "Dy-YaRN, thresholds × t², static τ(s) (Eq. 16–17, 9)",
        || paper_method(PaperMethod::Yarn, true),
    ),
    entry(
        "dy-yarn-decay",
        "Dy-YaRN with τ evaluated at s^κ(t), fading to 1 (variant)",
        Method::dy_yarn_decaying,
    ),
    entry(
        "dy-ntk-by-parts",
        "NTK-by-parts with thresholds × t² (App. D), well-defined clamps",
        || {
            Method::NtkByParts(NtkByParts {
                thresholds: Some((KappaSchedule::DY_YARN, ThresholdKappa::Multiply)),
                ..NtkByParts::default()
            })
        },
    ),
    entry("official-ntk", "official DyPE FLUX: static NTK", || {
        Method::Ntk { dynamic: None }
    }),
    entry(
        "official-yarn",
        "official DyPE FLUX: NTK-by-parts with its clamps",
        || official_ntk_by_parts(false),
    ),
    entry(
        "official-dy-ntk",
        "official DyPE FLUX: Dy-NTK, (s^(d/(d−2)))^(2t²)",
        || Method::Ntk {
            dynamic: Some((KappaSchedule::PAPER, NtkKappa::Exponential)),
        },
    ),
    entry(
        "official-dy-yarn",
        "official DyPE FLUX: NTK-by-parts, thresholds × t², its clamps",
        || official_ntk_by_parts(true),
    ),
    entry(
        "lumina-time-aware",
        "Lumina-Next time-aware: PI, then NTK θ·s from Lumina time 0.3; proportional attention",
        || {
            Method::Lumina(Lumina {
                watershed: 0.3,
                proportional_attention: true,
            })
        },
    ),
    entry(
        "lumina-time-aware-diffusers",
        "Lumina-Next time-aware with diffusers' default watershed 1.0 (PI until the last step)",
        || {
            Method::Lumina(Lumina {
                watershed: 1.0,
                proportional_attention: true,
            })
        },
    ),
];

/// The names of [`METHODS`], comma-separated (what an unknown name's error lists).
pub const METHOD_NAMES_LIST: &str = "base, pi, ntk, yarn, ntk-by-parts, dy-pi, dy-ntk, dy-ntk-mult, \
dy-yarn, dy-yarn-decay, dy-ntk-by-parts, official-ntk, official-yarn, official-dy-ntk, \
official-dy-yarn, lumina-time-aware, lumina-time-aware-diffusers";

/// Every name [`method_by_name`] accepts, in registry order.
pub fn method_names() -> impl Iterator<Item = &'static str> {
    METHODS.iter().map(|e| e.name)
}

/// The registry entry of a name.
pub fn method_entry(name: &str) -> Result<&'static MethodEntry> {
    METHODS
        .iter()
        .find(|e| e.name == name)
        .ok_or(DypeError::UnknownName {
            kind: "method",
            name: ShortName::new(name),
            known: METHOD_NAMES_LIST,
        })
}

/// The method of a registry name ([`METHODS`]); an unknown name is [`DypeError::UnknownName`].
pub fn method_by_name(name: &str) -> Result<Method> {
    method_entry(name).map(MethodEntry::method)
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    #[test]
    fn the_names_list_is_the_registry() {
        let mut joined = alloc::string::String::new();
        for (i, n) in method_names().enumerate() {
            if i > 0 {
                joined.push_str(", ");
            }
            joined.push_str(n);
        }
        assert_eq!(joined, METHOD_NAMES_LIST);
        for n in method_names() {
            assert_eq!(method_names().filter(|m| *m == n).count(), 1, "{n} twice");
        }
    }

    #[test]
    fn unknown_names_are_typed_errors() {
        let e = method_by_name("no-such-method").unwrap_err();
        assert!(matches!(e, DypeError::UnknownName { kind: "method", .. }));
        let long = "x".repeat(300);
        let e = method_by_name(&long).unwrap_err();
        assert!(alloc::format!("{e}").contains(&"x".repeat(48)));
    }
}
