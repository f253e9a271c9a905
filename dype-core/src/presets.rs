//! Named presets: each reproduces one reference exactly, as data over the functions of
//! [`crate::method`] (no second copy of a formula), or names the paper's methods for a model.

use crate::axis::RampClamp;
use crate::error::ShortName;
use crate::error::{DypeError, Result};
use crate::layout::{AttentionFactor, AxialRope, AxisConfig, AxisPolicy, PairLayout};
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
    let method = official_flux_method(method, dype);
    flux_layout(theta, axes_dim, base_tokens, method, AxisPolicy::PerAxis)
}

/// The registry recipe of an official DyPE FLUX `--method` (the `official-*` entries of
/// [`METHODS`]): its method, per-axis scales.
pub fn official_flux_recipe(method: OfficialMethod, dype: bool) -> Recipe {
    Recipe {
        policy: Some(AxisPolicy::PerAxis),
        ..Recipe::method(official_flux_method(method, dype))
    }
}

/// The method of an official DyPE FLUX `--method` (as [`official_flux`] puts on its scaled axes).
pub fn official_flux_method(method: OfficialMethod, dype: bool) -> Method {
    match method {
        OfficialMethod::Base => Method::Base,
        OfficialMethod::Ntk => Method::Ntk {
            dynamic: dype.then_some((KappaSchedule::PAPER, NtkKappa::Exponential)),
        },
        OfficialMethod::Yarn => official_ntk_by_parts(dype),
    }
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
    RotaryLayout::flux(theta, axes_dim, base_tokens)?.rope(&Recipe {
        policy: Some(policy),
        ..Recipe::method(method)
    })
}

/// How a model numbers its tokens' positions (what the position ids of [`crate::table`] hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PositionIds {
    /// FLUX: text tokens at `(0, 0, 0)`, image token `(row, col)` at `(0, row, col)`; an axis'
    /// extent is its largest id + 1 (`table::flux_ids`, `ExtentRule::MaxPlusOne`).
    TextThenGrid,
    /// FiT: `(row, col)` per image token, row-major; extents are the grid's (`table::grid_ids`).
    Grid,
}

/// A model's rotary layout as one value: its axes (rotary dim, θ, trained extent, whether the
/// axis is ever scaled), the pair layout its attention rotates, how its position ids are made and
/// its own axis policy. `(layout, method)` gives the rope — method, axis policy and attention
/// factor — in one call ([`RotaryLayout::rope`], [`RotaryLayout::rope_by_name`]), the one road
/// every preset, pipeline, example and the lab takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotaryLayout {
    axes: [AxisConfig; crate::MAX_AXES],
    n_axes: usize,
    pair: PairLayout,
    policy: AxisPolicy,
    ids: PositionIds,
}

impl RotaryLayout {
    /// A layout over `axes` (1 to [`crate::MAX_AXES`]) with its pair layout, default axis policy
    /// and position ids.
    pub fn new(
        axes: &[AxisConfig],
        pair: PairLayout,
        policy: AxisPolicy,
        ids: PositionIds,
    ) -> Result<Self> {
        // The rope's own checks (count, extents) once, here.
        AxialRope::new(axes, Method::Base, policy)?;
        let mut arr = [axes[0]; crate::MAX_AXES];
        arr[..axes.len()].copy_from_slice(axes);
        Ok(RotaryLayout {
            axes: arr,
            n_axes: axes.len(),
            pair,
            policy,
            ids,
        })
    }

    /// FLUX.1's layout for axes `axes_dim` (FLUX.1: [`FLUX_AXES`]) with base `theta` trained at
    /// `base_tokens` per side: the first (text/time) axis never scaled, per-axis scales,
    /// interleaved pairs, text-then-grid ids.
    pub fn flux(theta: f64, axes_dim: &[usize], base_tokens: f64) -> Result<Self> {
        if axes_dim.is_empty() {
            return Err(DypeError::Empty { name: "axes_dim" });
        }
        if axes_dim.len() > crate::MAX_AXES {
            return Err(DypeError::TooManyAxes {
                count: axes_dim.len(),
                max: crate::MAX_AXES,
            });
        }
        let mut axes = [AxisConfig::unscaled(2, theta)?; crate::MAX_AXES];
        for (k, &d) in axes_dim.iter().enumerate() {
            axes[k] = if k == 0 {
                AxisConfig::unscaled(d, theta)?
            } else {
                AxisConfig::scaled(d, theta, base_tokens)?
            };
        }
        RotaryLayout::new(
            &axes[..axes_dim.len()],
            PairLayout::Interleaved,
            AxisPolicy::PerAxis,
            PositionIds::TextThenGrid,
        )
    }

    /// FLUX.1 itself: [`FLUX_AXES`], [`FLUX_THETA`], [`FLUX_TRAIN_TOKENS`].
    pub fn flux1() -> Result<Self> {
        RotaryLayout::flux(FLUX_THETA, &FLUX_AXES, FLUX_TRAIN_TOKENS)
    }

    /// FiT's layout (whlzy/FiT `VisionRotaryEmbedding`): two axes (rows, then columns) of
    /// `head_dim/2` each, trained extent `ori_max_pe_len`, interleaved pairs, grid ids; `decouple`
    /// scales each axis by its own extent ([`AxisPolicy::PerAxis`]), otherwise both by `max(H, W)`
    /// ([`AxisPolicy::Isotropic`]).
    pub fn fit(head_dim: usize, theta: f64, ori_max_pe_len: f64, decouple: bool) -> Result<Self> {
        if !head_dim.is_multiple_of(4) || head_dim == 0 {
            return Err(DypeError::InvalidDim { dim: head_dim });
        }
        let axis = AxisConfig::scaled(head_dim / 2, theta, ori_max_pe_len)?;
        let policy = if decouple {
            AxisPolicy::PerAxis
        } else {
            AxisPolicy::Isotropic
        };
        RotaryLayout::new(
            &[axis, axis],
            PairLayout::Interleaved,
            policy,
            PositionIds::Grid,
        )
    }

    /// The axes.
    pub fn axes(&self) -> &[AxisConfig] {
        &self.axes[..self.n_axes]
    }

    /// The pair layout the model's attention rotates (what its rotary embedding must be built
    /// with).
    pub fn pair_layout(&self) -> PairLayout {
        self.pair
    }

    /// The model's own axis policy (a recipe may fix another).
    pub fn policy(&self) -> AxisPolicy {
        self.policy
    }

    /// How the model numbers its tokens.
    pub fn position_ids(&self) -> PositionIds {
        self.ids
    }

    /// The rope of `recipe` on this layout: its method, its policy or the layout's, its attention
    /// rule.
    pub fn rope(&self, recipe: &Recipe) -> Result<AxialRope> {
        recipe.rope(self.axes(), self.policy)
    }

    /// The rope of a method with the layout's policy and the method's own attention factor (a
    /// built-in [`Method`] or a user's [`Method::custom`]).
    pub fn rope_for(&self, method: Method) -> Result<AxialRope> {
        self.rope(&Recipe::method(method))
    }

    /// The rope of a registry name ([`METHODS`]); an unknown name is [`DypeError::UnknownName`].
    pub fn rope_by_name(&self, name: &str) -> Result<AxialRope> {
        self.rope(&recipe_by_name(name)?)
    }
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
    RotaryLayout::fit(head_dim, theta, ori_max_pe_len, decouple)?.rope(&fit_recipe(freqs))
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

/// What a registry name builds: a method plus, where the reference fixes them, the axis policy and
/// the attention-factor rule. Applied to a model's axes by [`Recipe::rope`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    /// The per-axis method.
    pub method: Method,
    /// The axis policy the reference uses (`None`: the model's own, e.g. FiT's `decouple`).
    pub policy: Option<AxisPolicy>,
    /// The attention-factor rule (usually [`AttentionFactor::FromMethod`]).
    pub attention: AttentionFactor,
}

impl Recipe {
    /// A method with the model's policy and its own attention factor.
    pub const fn method(method: Method) -> Self {
        Recipe {
            method,
            policy: None,
            attention: AttentionFactor::FromMethod,
        }
    }

    /// The rope over `axes` (a model's layout) with this recipe; `default_policy` where the recipe
    /// leaves it to the model.
    pub fn rope(&self, axes: &[AxisConfig], default_policy: AxisPolicy) -> Result<AxialRope> {
        Ok(
            AxialRope::new(axes, self.method, self.policy.unwrap_or(default_policy))?
                .with_attention(self.attention),
        )
    }
}

/// One entry of the method registry: a name, where it comes from, what it is, and what it builds.
#[derive(Debug, Clone, Copy)]
pub struct MethodEntry {
    /// The name (`--method` in the examples).
    pub name: &'static str,
    /// Where the method comes from (`paper`, `official DyPE`, `ComfyUI-DyPE`, `FiT`, `HF`, `Lumina`).
    pub family: &'static str,
    /// One line on what it is.
    pub summary: &'static str,
    build: fn() -> Recipe,
}

impl MethodEntry {
    /// What this name stands for.
    pub fn recipe(&self) -> Recipe {
        (self.build)()
    }

    /// The method alone.
    pub fn method(&self) -> Method {
        self.recipe().method
    }
}

const fn entry(
    name: &'static str,
    family: &'static str,
    summary: &'static str,
    build: fn() -> Recipe,
) -> MethodEntry {
    MethodEntry {
        name,
        family,
        summary,
        build,
    }
}

/// The registry recipe of a FiT `custom_freqs` (the `normal`, `linear`, `ntk-aware`, … entries of
/// [`METHODS`]): its method and attention rule, the model's policy.
pub fn fit_recipe(freqs: FitFreqs) -> Recipe {
    let (method, attention) = fit_method(freqs);
    Recipe {
        method,
        policy: None,
        attention,
    }
}

/// ComfyUI-DyPE v2.3 with its node defaults (dype_scale 2, dype_exponent 2, start σ 1).
fn comfy_recipe(kind: u8) -> Recipe {
    // The node defaults are valid by construction.
    let yarn = |aggressive| match comfy_yarn(true, 2.0, 2.0, aggressive) {
        Ok(m) => m,
        Err(_) => Method::Base,
    };
    match kind {
        0 => Recipe {
            method: yarn(false),
            policy: Some(AxisPolicy::Isotropic),
            attention: AttentionFactor::FromMethod,
        },
        1 => Recipe {
            method: yarn(true),
            policy: Some(AxisPolicy::PerAxis),
            attention: AttentionFactor::FromMethod,
        },
        _ => Recipe {
            method: comfy_vision_yarn(true, 2.0, 2.0, 1.0).unwrap_or(Method::Base),
            policy: Some(AxisPolicy::VisionYarn),
            attention: AttentionFactor::FromMethod,
        },
    }
}

/// Every named method, in the order `--method list` prints them: the paper's (DyPE §2.2, §3.2) and
/// its App. D variants, the official DyPE FLUX forms, ComfyUI-DyPE's, FiT's `custom_freqs`, HF's
/// YaRN and Lumina-Next's time-aware RoPE. One vocabulary for every model and example.
pub const METHODS: &[MethodEntry] = &[
    entry("base", "paper", "native RoPE", || {
        Recipe::method(Method::Base)
    }),
    entry(
        "pi",
        "paper",
        "position interpolation, ω/s (Eq. 5)",
        || Recipe::method(paper_method(PaperMethod::Pi, false)),
    ),
    entry(
        "ntk",
        "paper",
        "NTK-aware, θ·s^(d/(d−2)) (Eq. 6)",
        || Recipe::method(paper_method(PaperMethod::Ntk, false)),
    ),
    entry(
        "yarn",
        "paper",
        "YaRN, α = 1, β = 32 rotations, τ(s) = 0.1·ln s + 1 (Eq. 7–9)",
        || Recipe::method(paper_method(PaperMethod::Yarn, false)),
    ),
    entry(
        "ntk-by-parts",
        "paper",
        "NTK-by-parts, β 1.25/0.75, γ 16/2, well-defined clamps",
        || Recipe::method(Method::NtkByParts(NtkByParts::default())),
    ),
    entry(
        "dy-pi",
        "paper",
        "Dy-PI, ω/s^κ(t), κ = 2t² (Eq. 14)",
        || Recipe::method(paper_method(PaperMethod::Pi, true)),
    ),
    entry(
        "dy-ntk",
        "paper",
        "Dy-NTK, θ·s^(κ(t)·d/(d−2)), κ = 2t² (Eq. 15)",
        || Recipe::method(paper_method(PaperMethod::Ntk, true)),
    ),
    entry(
        "dy-ntk-mult",
        "paper",
        "Dy-NTK, multiplicative form 1 + (s−1)·κ(t) (Eq. 19)",
        || {
            Recipe::method(Method::Ntk {
                dynamic: Some((KappaSchedule::PAPER, NtkKappa::Multiplicative)),
            })
        },
    ),
    entry(
        "dy-yarn",
        "paper",
        "Dy-YaRN, thresholds × t², static τ(s) (Eq. 16–17, 9)",
        || Recipe::method(paper_method(PaperMethod::Yarn, true)),
    ),
    entry(
        "dy-yarn-decay",
        "paper",
        "Dy-YaRN with τ evaluated at s^κ(t), fading to 1 (variant)",
        || Recipe::method(Method::dy_yarn_decaying()),
    ),
    entry(
        "dy-ntk-by-parts",
        "paper",
        "NTK-by-parts with thresholds × t² (App. D), well-defined clamps",
        || {
            Recipe::method(Method::NtkByParts(NtkByParts {
                thresholds: Some((KappaSchedule::DY_YARN, ThresholdKappa::Multiply)),
                ..NtkByParts::default()
            }))
        },
    ),
    entry("official-base", "official DyPE", "native RoPE", || {
        official_flux_recipe(OfficialMethod::Base, false)
    }),
    entry(
        "official-ntk",
        "official DyPE",
        "static NTK, per axis",
        || official_flux_recipe(OfficialMethod::Ntk, false),
    ),
    entry(
        "official-yarn",
        "official DyPE",
        "NTK-by-parts with its clamps, per axis, static 0.1·ln s + 1",
        || official_flux_recipe(OfficialMethod::Yarn, false),
    ),
    entry(
        "official-dy-ntk",
        "official DyPE",
        "Dy-NTK, (s^(d/(d−2)))^(2t²), per axis",
        || official_flux_recipe(OfficialMethod::Ntk, true),
    ),
    entry(
        "official-dy-yarn",
        "official DyPE",
        "NTK-by-parts, thresholds × t², its clamps, per axis (the FLUX default)",
        || official_flux_recipe(OfficialMethod::Yarn, true),
    ),
    entry(
        "comfy-yarn",
        "ComfyUI-DyPE",
        "thresholds ^(2t²), isotropic, 1 + 0.1·ln s/√s (node default)",
        || comfy_recipe(0),
    ),
    entry(
        "comfy-yarn-anisotropic",
        "ComfyUI-DyPE",
        "thresholds ^(2t²), per axis, 0.1·ln s + 1",
        || comfy_recipe(1),
    ),
    entry(
        "comfy-vision-yarn",
        "ComfyUI-DyPE",
        "PI per axis, NTK at the global scale, the node's decaying mscale",
        || comfy_recipe(2),
    ),
    entry("normal", "FiT", "custom_freqs normal (native)", || {
        fit_recipe(FitFreqs::Normal)
    }),
    entry(
        "linear",
        "FiT",
        "custom_freqs linear (PI), no factor",
        || fit_recipe(FitFreqs::Linear),
    ),
    entry(
        "ntk-aware",
        "FiT",
        "custom_freqs ntk-aware, no factor",
        || fit_recipe(FitFreqs::NtkAware),
    ),
    entry(
        "ntk-aware-pro1",
        "FiT",
        "ntk-aware with proportional attention over max(H, W)",
        || fit_recipe(FitFreqs::NtkAwarePro1),
    ),
    entry(
        "ntk-aware-pro2",
        "FiT",
        "ntk-aware with proportional attention over H·W",
        || fit_recipe(FitFreqs::NtkAwarePro2),
    ),
    entry(
        "fit-ntk-by-parts",
        "FiT",
        "custom_freqs ntk-by-parts (HF clamps, no factor)",
        || fit_recipe(FitFreqs::NtkByParts),
    ),
    entry(
        "fit-yarn",
        "FiT",
        "custom_freqs yarn (β_fast 32, β_slow 1, mscale at max(H, W))",
        || fit_recipe(FitFreqs::Yarn),
    ),
    entry(
        "hf-yarn",
        "HF",
        "transformers' yarn rope type (β_fast 32, β_slow 1, truncate, 0.1·ln s + 1)",
        || Recipe::method(Method::YarnLlm(YarnLlm::default())),
    ),
    entry(
        "lumina-time-aware",
        "Lumina",
        "PI, then NTK θ·s from Lumina time 0.3; proportional attention",
        || {
            Recipe::method(Method::Lumina(Lumina {
                watershed: 0.3,
                proportional_attention: true,
            }))
        },
    ),
    entry(
        "lumina-time-aware-diffusers",
        "Lumina",
        "as lumina-time-aware with diffusers' default watershed 1.0",
        || {
            Recipe::method(Method::Lumina(Lumina {
                watershed: 1.0,
                proportional_attention: true,
            }))
        },
    ),
];

/// The names of [`METHODS`], comma-separated (what an unknown name's error lists).
pub const METHOD_NAMES_LIST: &str = "base, pi, ntk, yarn, ntk-by-parts, dy-pi, dy-ntk, dy-ntk-mult, \
dy-yarn, dy-yarn-decay, dy-ntk-by-parts, official-base, official-ntk, official-yarn, \
official-dy-ntk, official-dy-yarn, comfy-yarn, comfy-yarn-anisotropic, comfy-vision-yarn, normal, \
linear, ntk-aware, ntk-aware-pro1, ntk-aware-pro2, fit-ntk-by-parts, fit-yarn, hf-yarn, \
lumina-time-aware, lumina-time-aware-diffusers";

/// Every name [`method_by_name`] accepts, in registry order.
pub fn method_names() -> impl Iterator<Item = &'static str> {
    METHODS.iter().map(|e| e.name)
}

/// The registry entry of a name; an unknown name is [`DypeError::UnknownName`] listing the known
/// ones.
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

/// The recipe (method, policy, attention rule) of a registry name.
pub fn recipe_by_name(name: &str) -> Result<Recipe> {
    method_entry(name).map(MethodEntry::recipe)
}

/// The method of a registry name ([`METHODS`]).
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
