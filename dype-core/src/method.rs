//! The positional-extrapolation methods as small pure functions of one axis, its scale factors and
//! (for the dynamic forms) DyPE's time. Each writes the per-pair inverse frequencies and returns the
//! axis' attention factor. Formulas and their sources are listed in `docs/math.md`.

use crate::attention::{deepseek_attention_factor, sqrt_damped_mscale, yarn_mscale};
use crate::axis::{
    Axis, RampClamp, linear_ramp, ntk_base, raw_correction_range, raw_inv_freq, raw_rotations,
    yarn_ramp,
};
use crate::error::{DypeError, Result, factor, finite, length, non_negative, positive, produced};
use crate::math::{pow, sqrt};
use crate::schedule::{KappaSchedule, ThresholdKappa, start_sigma_mscale};
use crate::time::Sigma;

/// Scale factors of one axis for one step. Validated on use by [`Method::frequencies`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisScales {
    /// Scale used for position interpolation (PI bands): `s ≥ 1`.
    pub linear: f64,
    /// Scale used for NTK base changes: `s ≥ 1` (differs from `linear` only under
    /// [`crate::AxisPolicy::VisionYarn`]).
    pub ntk: f64,
    /// The largest scale over all scaled axes (some attention factors use it), `≥ 1`.
    pub global: f64,
    /// The area scale `(∏ L'_a/L_a)^(1/n)` over the scaled axes, *not* clamped at 1 (Lumina-Next's
    /// `√(W·H)/size` for two axes): `> 0`.
    pub area: f64,
    /// The trained extent `L` of this axis, in positions (tokens): `> 0`.
    pub train_len: f64,
}

impl AxisScales {
    /// The same scale for every purpose (1-D / isotropic use).
    pub fn uniform(scale: f64, train_len: f64) -> Self {
        AxisScales {
            linear: scale,
            ntk: scale,
            global: scale,
            area: scale,
            train_len,
        }
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("linear_scale", self.linear),
            ("ntk_scale", self.ntk),
            ("global_scale", self.global),
        ] {
            positive(name, v)?;
            if v < 1.0 {
                return Err(DypeError::OutOfRange {
                    name,
                    value: v,
                    expected: ">= 1 (no extrapolation below the trained extent)",
                });
            }
        }
        positive("area_scale", self.area)?;
        positive("train_len", self.train_len)?;
        Ok(())
    }

    /// Whether nothing is extrapolated on this axis (`linear = ntk = 1`).
    fn is_native(&self) -> bool {
        self.linear == 1.0 && self.ntk == 1.0
    }
}

/// Which scale an attention factor is evaluated at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleSource {
    /// The axis' interpolation scale.
    Linear,
    /// The axis' NTK scale.
    Ntk,
    /// The largest scale over all axes (FiT computes YaRN's mscale from `max(H, W)`).
    Global,
}

impl ScaleSource {
    fn pick(self, s: &AxisScales) -> f64 {
        match self {
            ScaleSource::Linear => s.linear,
            ScaleSource::Ntk => s.ntk,
            ScaleSource::Global => s.global,
        }
    }
}

/// An attention factor ("mscale") rule of a YaRN-like method. Validated on use.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Mscale {
    /// No factor (1).
    None,
    /// `0.1·ln s + 1` ([`yarn_mscale`]).
    Yarn(ScaleSource),
    /// `1 + 0.1·ln s/√s` ([`sqrt_damped_mscale`]).
    SqrtDamped(ScaleSource),
    /// `get_mscale(s, m)/get_mscale(s, m_all)` ([`deepseek_attention_factor`]).
    DeepSeek {
        /// `mscale`.
        mscale: f64,
        /// `mscale_all_dim`.
        mscale_all_dim: f64,
    },
    /// A given number (HF `attention_factor`), finite and `> 0`.
    Fixed(f64),
    /// ComfyUI-DyPE's node: `0.1·ln s_global + 1`, decaying to 1 as `min(t/start_sigma, 1)^λt`
    /// ([`start_sigma_mscale`]; the node passes it to every method it patches with
    /// `dype_start_sigma` and `dype_exponent`).
    StartSigmaDecay {
        /// `dype_start_sigma` (clamped into `[0.001, 1]`).
        start_sigma: f64,
        /// `dype_exponent` (`>= 0`).
        lambda_t: f64,
    },
}

impl Mscale {
    /// Evaluates the rule at the axis' scales and DyPE time `t`; with `decay = Some(κ)` the scale
    /// is replaced by `s^κ` first, so the factor fades to 1 together with the frequencies. The
    /// result is finite and `> 0`.
    pub fn evaluate(&self, scales: &AxisScales, decay: Option<f64>, t: Sigma) -> Result<f64> {
        let eff = |s: f64| -> Result<f64> {
            match decay {
                Some(k) => produced("scale", pow(s, non_negative("kappa", k)?)),
                None => Ok(s),
            }
        };
        match *self {
            Mscale::None => Ok(1.0),
            Mscale::Yarn(src) => yarn_mscale(eff(src.pick(scales))?),
            Mscale::SqrtDamped(src) => sqrt_damped_mscale(eff(src.pick(scales))?),
            Mscale::DeepSeek {
                mscale,
                mscale_all_dim,
            } => deepseek_attention_factor(eff(scales.linear)?, mscale, mscale_all_dim),
            Mscale::Fixed(f) => factor("attention_factor", f),
            Mscale::StartSigmaDecay {
                start_sigma,
                lambda_t,
            } => {
                let m = yarn_mscale(eff(scales.global)?)?;
                factor(
                    "attention_factor",
                    start_sigma_mscale(m, t, start_sigma, lambda_t)?,
                )
            }
        }
    }
}

/// How Dy-NTK lets κ modulate the NTK base change (DyPE App. D).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NtkKappa {
    /// Eq. 15/20: `θ' = θ · s^(κ·d/(d−2))` (the paper's choice, λs = λt = 2).
    Exponential,
    /// Eq. 19, "the scheduler linearly modulates the compression": the NTK scale becomes
    /// `1 + (s − 1)·κ`, i.e. `θ' = θ · (1 + (s−1)·κ)^(d/(d−2))`. Eq. 19 literally writes `s·κ`,
    /// which neither vanishes at `s = 1` nor at κ = 0 (against the paper's own §3.2 premise that
    /// every method shuts down at `s = 1`); the affine form agrees with it at κ = 1 and does both.
    Multiplicative,
}

/// The paper's YaRN (DyPE Eq. 7–9): one ramp `γ(r)` over the number of rotations `r = L/λ`.
/// Validated on use (`0 <= α <= β`, finite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    /// α: below `α` rotations a pair is interpolated (PI). Paper: 1.
    pub alpha: f64,
    /// β: above `β` rotations a pair keeps its frequency. Paper: 32.
    pub beta: f64,
    /// Dy-YaRN (Eq. 16–17): thresholds `α·κ(t)`, `β·κ(t)` with `κ(t) = t^λt`. `None` = static YaRN.
    pub dynamic: Option<KappaSchedule>,
    /// Attention factor; paper Eq. 9: `τ(s) = 0.1·ln s + 1`, static in t.
    pub mscale: Mscale,
    /// Evaluate the attention factor at `s^κ` so that it fades to 1 at t = 0 with the frequencies
    /// (a variant, as ComfyUI decays its mscale; the paper and the official code keep τ(s) static,
    /// which `false` reproduces).
    pub mscale_follows_kappa: bool,
}

impl Default for Yarn {
    /// Static YaRN with the paper's α = 1, β = 32 and `τ(s) = 0.1·ln s + 1`.
    fn default() -> Self {
        Yarn {
            alpha: 1.0,
            beta: 32.0,
            dynamic: None,
            mscale: Mscale::Yarn(ScaleSource::Linear),
            mscale_follows_kappa: false,
        }
    }
}

/// YaRN as LLM stacks implement it (HF transformers `_compute_yarn_parameters`, jquesnelle/yarn,
/// FiT `yarn`): a ramp over pair *indices* between the correction dimensions of β_fast and β_slow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YarnLlm {
    /// β_fast (rotations; maps to the lower index bound). HF default 32.
    pub beta_fast: f64,
    /// β_slow (rotations). HF default 1.
    pub beta_slow: f64,
    /// Round the index bounds outwards (HF `truncate`, default true).
    pub truncate: bool,
    /// Attention factor.
    pub mscale: Mscale,
}

impl Default for YarnLlm {
    fn default() -> Self {
        YarnLlm {
            beta_fast: 32.0,
            beta_slow: 1.0,
            truncate: true,
            mscale: Mscale::Yarn(ScaleSource::Linear),
        }
    }
}

/// NTK-by-parts (jquesnelle `LlamaPartNTKScaledRotaryEmbedding`; what the official DyPE code and FiT
/// call "yarn"/"ntk-by-parts"): a ramp between the correction dims of `(β0, β1)` blends PI into the
/// NTK-aware frequencies, then a ramp between those of `(γ0, γ1)` blends the result into the base
/// frequencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NtkByParts {
    /// β0 (rotations), default 1.25.
    pub beta0: f64,
    /// β1 (rotations), default 0.75.
    pub beta1: f64,
    /// γ0 (rotations), default 16.
    pub gamma0: f64,
    /// γ1 (rotations), default 2.
    pub gamma1: f64,
    /// Rounding and clamping of the index bounds.
    pub clamp: RampClamp,
    /// κ on the ramp thresholds (DyPE App. D Table 7 "by-parts"): schedule and form.
    pub thresholds: Option<(KappaSchedule, ThresholdKappa)>,
    /// κ on the NTK term (Table 7 "NTK term"): the NTK band uses `s^(κ·d/(d−2))`.
    pub ntk: Option<KappaSchedule>,
    /// Attention factor.
    pub mscale: Mscale,
}

impl Default for NtkByParts {
    fn default() -> Self {
        NtkByParts {
            beta0: 1.25,
            beta1: 0.75,
            gamma0: 16.0,
            gamma1: 2.0,
            clamp: RampClamp::Safe,
            thresholds: None,
            ntk: None,
            mscale: Mscale::Yarn(ScaleSource::Linear),
        }
    }
}

/// Lumina-Next's time-aware scaled RoPE (Zhuo et al. 2024, §2.3; diffusers `LuminaPipeline`), the
/// timestep-dependent baseline of DyPE's Table 4. With the area scale `s = √(W·H)/size`
/// ([`AxisScales::area`]) and Lumina's time `1 − σ` (0 = noise): below the watershed PI (`ω/s`),
/// at or above it NTK as `θ·s` (no `d/(d−2)` exponent). Proportional attention multiplies the logits
/// by `√(ln N / ln N_base)`; here the factor on cos/sin is its square root.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lumina {
    /// The watershed in Lumina's time, in `[0, 1]` (Lumina-Next's sampler: 0.3; diffusers'
    /// pipeline default: 1.0, i.e. PI until the last step).
    pub watershed: f64,
    /// Proportional attention (Lumina-Next and diffusers default: on).
    pub proportional_attention: bool,
}

impl Default for Lumina {
    /// Lumina-Next's sampling defaults: watershed 0.3, proportional attention.
    fn default() -> Self {
        Lumina {
            watershed: 0.3,
            proportional_attention: true,
        }
    }
}

/// Lumina-Next's `(linear_factor, ntk_factor)` at DyPE time `σ` for area scale `s`: `(s, 1)` while
/// Lumina's time `1 − σ` is below the watershed, else `(1, s)` (diffusers `LuminaPipeline.__call__`).
pub fn lumina_factors(scale: f64, sigma: Sigma, watershed: f64) -> Result<(f64, f64)> {
    positive("scale", scale)?;
    finite("watershed", watershed)?;
    if 1.0 - sigma.get() < watershed {
        Ok((scale, 1.0))
    } else {
        Ok((1.0, scale))
    }
}

/// Lumina's proportional attention as a factor on cos/sin: `(ln N / ln N_base)^(1/4)` with
/// `ln N / ln N_base = 1 + ln s / ln L` (`N = (s·L)^n` tokens for area scale `s` over `n` axes of
/// trained extent `L`). 1 at `s = 1`; an error where the reference is undefined (`L <= 1`, or `N <= 1`).
pub fn lumina_attention_factor(area_scale: f64, train_len: f64) -> Result<f64> {
    positive("area_scale", area_scale)?;
    positive("train_len", train_len)?;
    // ln N / ln N_base = ln(s·L) / ln L: the logit factor of `proportional_attention`, whose
    // square root goes on cos and sin.
    let tokens = produced("tokens", area_scale * train_len)?;
    Ok(sqrt(crate::attention::proportional_attention(
        tokens, train_len,
    )?))
}

/// A positional-extrapolation method for one axis, static or dynamic. Parameters are validated
/// on use by [`Method::frequencies`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Method {
    /// The model's native RoPE.
    Base,
    /// Position interpolation (Chen et al. 2023; DyPE Eq. 5): `ω/s`. Dy-PI (Eq. 14): `ω/s^κ(t)`.
    Pi {
        /// Dy-PI schedule; `None` = static PI.
        dynamic: Option<KappaSchedule>,
    },
    /// NTK-aware (DyPE Eq. 6): base `θ·s^(d/(d−2))`. Dy-NTK (Eq. 15/19/20).
    Ntk {
        /// Dy-NTK schedule and form; `None` = static NTK.
        dynamic: Option<(KappaSchedule, NtkKappa)>,
    },
    /// The paper's one-ramp YaRN / Dy-YaRN.
    Yarn(Yarn),
    /// LLM-style YaRN (β_fast/β_slow).
    YarnLlm(YarnLlm),
    /// Two-ramp NTK-by-parts and its dynamic variants.
    NtkByParts(NtkByParts),
    /// Lumina-Next's time-aware PI → NTK switch with proportional attention.
    Lumina(Lumina),
    /// A user-defined frequency rule ([`FrequencyRule`]): it gets what the built-in methods get
    /// and works everywhere they do (tables, caches, attention factors, reports).
    Custom(CustomRule),
}

/// A frequency rule of the user's own, for [`Method::Custom`]: per axis and step it gets what the
/// built-in methods get — the axis (dim, θ, its base frequencies), its scales, DyPE's time σ and
/// the rule's own κ(σ) — and writes the per-pair inverse frequencies and returns the attention
/// factor. The core validates what it returns (finite, non-negative frequencies; a finite,
/// positive factor) and gives an axis that is not extrapolated (`linear = ntk = 1`) the native
/// frequencies without asking, as it does for every built-in method.
///
/// ```
/// use dype_core::{presets, AxisConfig, AxisPolicy, AxialRope, FrequencyRule, Method, RuleInput, Sigma};
///
/// /// PI on the slowest half of the pairs only.
/// struct HalfPi;
/// impl FrequencyRule for HalfPi {
///     fn name(&self) -> &str { "half-pi" }
///     fn frequencies(&self, input: &RuleInput<'_>, out: &mut [f64]) -> dype_core::Result<f64> {
///         let half = out.len() / 2;
///         for w in &mut out[half..] {
///             *w /= input.scales.linear; // `out` holds the base frequencies on entry
///         }
///         Ok(1.0)
///     }
/// }
/// static HALF_PI: HalfPi = HalfPi;
///
/// let axis = AxisConfig::scaled(8, 10_000.0, 16.0)?;
/// let rope = AxialRope::new(&[axis, axis], Method::custom(&HALF_PI), AxisPolicy::PerAxis)?;
/// let mut freqs = [0.0; 8];
/// rope.step(&[32.0, 32.0], Some(Sigma::NOISE), &mut freqs)?;
/// assert_eq!(freqs[0], 1.0); // fast pair kept
/// assert!((freqs[3] - 1e-3 / 2.0).abs() < 1e-15); // slowest pair θ^(-3/4) interpolated, s = 2
/// # Ok::<(), dype_core::DypeError>(())
/// ```
pub trait FrequencyRule: Sync {
    /// A short name for reports and errors (not a registry name: the registry,
    /// [`crate::presets::METHODS`], names only the built-in methods).
    fn name(&self) -> &str;

    /// Whether the rule depends on the time step (default: no). A static rule's tables are built
    /// once; a dynamic one's whenever σ changes what it returns.
    fn is_dynamic(&self) -> bool {
        false
    }

    /// The rule's κ at `σ` (default: none), handed back in [`RuleInput::kappa`] and reported.
    fn kappa(&self, sigma: Sigma) -> Result<Option<f64>> {
        let _ = sigma;
        Ok(None)
    }

    /// Whether the attention factor is for the whole head's logits (so that axes the rule does
    /// not scale carry it too, as Lumina's proportional attention); default: no.
    fn factor_covers_whole_head(&self) -> bool {
        false
    }

    /// Writes the axis' inverse frequencies into `out` (`input.axis.pairs()` values, holding the
    /// base frequencies `θ^(−2i/d)` on entry) and returns the axis' attention factor.
    fn frequencies(&self, input: &RuleInput<'_>, out: &mut [f64]) -> Result<f64>;
}

/// What a [`FrequencyRule`] gets for one axis at one step.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RuleInput<'a> {
    /// The axis (dim, θ; [`Axis::inv_freq`] gives each base frequency).
    pub axis: &'a Axis,
    /// Its scale factors this step (validated: `linear`, `ntk`, `global ≥ 1`).
    pub scales: &'a AxisScales,
    /// DyPE's time (1 = noise; `Sigma::NOISE` when the caller gives none).
    pub sigma: Sigma,
    /// The rule's own κ at `sigma` ([`FrequencyRule::kappa`]).
    pub kappa: Option<f64>,
}

/// A [`FrequencyRule`] as a [`Method`] value (`Copy`, `no_std`): a `'static` reference (a
/// `static`, or `Box::leak` for a rule built at run time). Two are equal when they are the same
/// rule object.
#[derive(Clone, Copy)]
pub struct CustomRule(&'static dyn FrequencyRule);

impl CustomRule {
    /// The rule.
    pub fn rule(&self) -> &'static dyn FrequencyRule {
        self.0
    }
}

impl core::fmt::Debug for CustomRule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("CustomRule").field(&self.0.name()).finish()
    }
}

impl PartialEq for CustomRule {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::addr_eq(self.0, other.0)
    }
}

/// What one method produced for one axis at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisOutput {
    /// The attention factor for this axis' cos/sin (finite, `> 0`).
    pub attention_factor: f64,
    /// The κ the method used (`None` for static methods and Lumina).
    pub kappa: Option<f64>,
}

impl Method {
    /// A user-defined frequency rule as a method ([`Method::Custom`]).
    pub fn custom(rule: &'static dyn FrequencyRule) -> Self {
        Method::Custom(CustomRule(rule))
    }

    /// Dy-PI with the paper's default schedule (λs = λt = 2).
    pub fn dy_pi() -> Self {
        Method::Pi {
            dynamic: Some(KappaSchedule::PAPER),
        }
    }

    /// Dy-NTK, exponential form, with the paper's default schedule (λs = λt = 2).
    pub fn dy_ntk() -> Self {
        Method::Ntk {
            dynamic: Some((KappaSchedule::PAPER, NtkKappa::Exponential)),
        }
    }

    /// Dy-YaRN as in the paper (Eq. 16–17 with Eq. 9): α = 1, β = 32, thresholds × `t²`, and the
    /// static attention factor `τ(s) = 0.1·ln s + 1` (as the official code).
    pub fn dy_yarn() -> Self {
        Method::Yarn(Yarn {
            dynamic: Some(KappaSchedule::DY_YARN),
            mscale_follows_kappa: false,
            ..Yarn::default()
        })
    }

    /// Dy-YaRN with the attention factor evaluated at `s^κ(t)`, fading to 1 with the frequencies
    /// (a variant in the spirit of ComfyUI's decaying mscale; not the paper's).
    pub fn dy_yarn_decaying() -> Self {
        Method::Yarn(Yarn {
            dynamic: Some(KappaSchedule::DY_YARN),
            mscale_follows_kappa: true,
            ..Yarn::default()
        })
    }

    /// Whether the method depends on the time step.
    pub fn is_dynamic(&self) -> bool {
        match self {
            Method::Base | Method::YarnLlm(_) => false,
            Method::Pi { dynamic } => dynamic.is_some(),
            Method::Ntk { dynamic } => dynamic.is_some(),
            Method::Yarn(y) => y.dynamic.is_some(),
            Method::NtkByParts(p) => p.thresholds.is_some() || p.ntk.is_some(),
            Method::Lumina(_) => true,
            Method::Custom(c) => c.0.is_dynamic(),
        }
    }

    /// Whether the attention factor is meant for the whole head's logits (Lumina's proportional
    /// attention), so that axes the method does not scale carry it too.
    pub fn factor_covers_whole_head(&self) -> bool {
        if let Method::Custom(c) = self {
            return c.0.factor_covers_whole_head();
        }
        matches!(
            self,
            Method::Lumina(Lumina {
                proportional_attention: true,
                ..
            })
        )
    }

    /// The method's primary κ at `t` (thresholds' κ for by-parts), `None` if static or `t` is `None`.
    pub fn kappa(&self, t: Option<Sigma>) -> Result<Option<f64>> {
        let Some(t) = t else { return Ok(None) };
        let schedule = match self {
            Method::Custom(c) => return c.0.kappa(t),
            Method::Base | Method::YarnLlm(_) | Method::Lumina(_) => None,
            Method::Pi { dynamic } => *dynamic,
            Method::Ntk { dynamic } => dynamic.map(|d| d.0),
            Method::Yarn(y) => y.dynamic,
            Method::NtkByParts(p) => p.thresholds.map(|x| x.0).or(p.ntk),
        };
        schedule.map(|s| s.kappa(t)).transpose()
    }

    fn validate(&self) -> Result<()> {
        match self {
            Method::Base | Method::Pi { .. } | Method::Ntk { .. } | Method::Custom(_) => Ok(()),
            Method::Yarn(y) => {
                non_negative("alpha", y.alpha)?;
                non_negative("beta", y.beta)?;
                if y.beta < y.alpha {
                    return Err(DypeError::InvalidConfig {
                        reason: "YaRN needs beta >= alpha",
                    });
                }
                validate_mscale(&y.mscale)
            }
            Method::YarnLlm(y) => {
                positive("beta_fast", y.beta_fast)?;
                positive("beta_slow", y.beta_slow)?;
                validate_mscale(&y.mscale)
            }
            Method::NtkByParts(p) => {
                for (n, v) in [
                    ("beta0", p.beta0),
                    ("beta1", p.beta1),
                    ("gamma0", p.gamma0),
                    ("gamma1", p.gamma1),
                ] {
                    positive(n, v)?;
                }
                validate_mscale(&p.mscale)
            }
            Method::Lumina(l) => {
                finite("watershed", l.watershed)?;
                if !(0.0..=1.0).contains(&l.watershed) {
                    return Err(DypeError::OutOfRange {
                        name: "watershed",
                        value: l.watershed,
                        expected: "within [0, 1] (Lumina's time)",
                    });
                }
                Ok(())
            }
        }
    }

    /// Writes this axis' inverse frequencies (length `axis.pairs()`) for the given scales at DyPE time
    /// `t` (ignored by static methods; dynamic methods with `t = None` use t = 1, i.e. their
    /// strongest, static-like setting) and returns the attention factor and κ.
    ///
    /// Every `Ok` carries finite frequencies and a finite, positive attention factor. An axis with
    /// `linear = ntk = 1` gets exactly the base frequencies at every t (the references only enter
    /// their extrapolation branch above the trained extent); Lumina, which also compresses below
    /// the trained area, follows its own area scale.
    pub fn frequencies(
        &self,
        axis: &Axis,
        scales: &AxisScales,
        t: Option<Sigma>,
        out: &mut [f64],
    ) -> Result<AxisOutput> {
        length("out", axis.pairs(), out.len())?;
        scales.validate()?;
        self.validate()?;
        let t_eff = t.unwrap_or(Sigma::NOISE);
        let kappa = self.kappa(Some(t_eff))?.filter(|_| self.is_dynamic());
        let attention_factor = if scales.is_native() && !matches!(self, Method::Lumina(_)) {
            axis.base_frequencies(out)?;
            self.native_attention(scales, t_eff)?
        } else {
            self.write(axis, scales, t_eff, out)?
        };
        for &w in out.iter() {
            if !(w.is_finite() && w >= 0.0) {
                return Err(DypeError::NonFinite {
                    name: "frequency",
                    value: w,
                });
            }
        }
        Ok(AxisOutput {
            attention_factor: factor("attention_factor", attention_factor)?,
            kappa,
        })
    }

    /// The attention factor of an axis that is not extrapolated (base frequencies).
    fn native_attention(&self, scales: &AxisScales, t: Sigma) -> Result<f64> {
        match self {
            Method::Yarn(y) => y.mscale.evaluate(scales, None, t),
            Method::YarnLlm(y) => y.mscale.evaluate(scales, None, t),
            Method::NtkByParts(p) => p.mscale.evaluate(scales, None, t),
            _ => Ok(1.0),
        }
    }

    fn write(&self, axis: &Axis, scales: &AxisScales, t: Sigma, out: &mut [f64]) -> Result<f64> {
        let d = axis.dim();
        match *self {
            Method::Base => {
                axis.base_frequencies(out)?;
                Ok(1.0)
            }
            Method::Pi { dynamic } => {
                let s = match dynamic {
                    Some(k) => produced("scale", pow(scales.linear, k.kappa(t)?))?,
                    None => scales.linear,
                };
                for (i, w) in out.iter_mut().enumerate() {
                    *w = axis.inv_freq(i) / s;
                }
                Ok(1.0)
            }
            Method::Ntk { dynamic } => {
                let base = match dynamic {
                    None => ntk_base(axis.theta(), d, scales.ntk)?,
                    Some((k, NtkKappa::Exponential)) => {
                        dy_ntk_exponential_base(axis, scales.ntk, k.kappa(t)?)?
                    }
                    Some((k, NtkKappa::Multiplicative)) => {
                        dy_ntk_multiplicative_base(axis, scales.ntk, k.kappa(t)?)?
                    }
                };
                for (i, w) in out.iter_mut().enumerate() {
                    *w = raw_inv_freq(base, d, i);
                }
                Ok(1.0)
            }
            Method::Yarn(y) => {
                let k = match y.dynamic {
                    Some(s) => Some(s.kappa(t)?),
                    None => None,
                };
                let (alpha, beta) = match k {
                    Some(k) => (
                        produced("alpha", y.alpha * k)?,
                        produced("beta", y.beta * k)?,
                    ),
                    None => (y.alpha, y.beta),
                };
                yarn_frequencies(axis, scales.linear, scales.train_len, alpha, beta, out);
                y.mscale
                    .evaluate(scales, if y.mscale_follows_kappa { k } else { None }, t)
            }
            Method::YarnLlm(y) => {
                yarn_llm_frequencies(axis, scales.linear, scales.train_len, &y, out);
                y.mscale.evaluate(scales, None, t)
            }
            Method::NtkByParts(p) => {
                let (b0, b1, g0, g1) = match p.thresholds {
                    Some((sched, form)) => {
                        let k = Some(sched.kappa(t)?);
                        (
                            form.apply(p.beta0, k)?,
                            form.apply(p.beta1, k)?,
                            form.apply(p.gamma0, k)?,
                            form.apply(p.gamma1, k)?,
                        )
                    }
                    None => (p.beta0, p.beta1, p.gamma0, p.gamma1),
                };
                let ntk = match p.ntk {
                    Some(sched) => dy_ntk_exponential_base(axis, scales.ntk, sched.kappa(t)?)?,
                    None => ntk_base(axis.theta(), d, scales.ntk)?,
                };
                ntk_by_parts_frequencies(
                    axis,
                    scales.linear,
                    ntk,
                    scales.train_len,
                    (b0, b1),
                    (g0, g1),
                    p.clamp,
                    out,
                );
                p.mscale.evaluate(scales, None, t)
            }
            Method::Lumina(l) => {
                let (linear, ntk) = lumina_factors(scales.area, t, l.watershed)?;
                let base = produced("ntk_base", axis.theta() * ntk)?;
                for (i, w) in out.iter_mut().enumerate() {
                    *w = raw_inv_freq(base, d, i) / linear;
                }
                if l.proportional_attention {
                    lumina_attention_factor(scales.area, scales.train_len)
                } else {
                    Ok(1.0)
                }
            }
            Method::Custom(c) => {
                axis.base_frequencies(out)?;
                let input = RuleInput {
                    axis,
                    scales,
                    sigma: t,
                    kappa: c.0.kappa(t)?,
                };
                c.0.frequencies(&input, out)
            }
        }
    }
}

fn validate_mscale(m: &Mscale) -> Result<()> {
    match *m {
        Mscale::DeepSeek {
            mscale,
            mscale_all_dim,
        } => {
            finite("mscale", mscale)?;
            finite("mscale_all_dim", mscale_all_dim)?;
            Ok(())
        }
        Mscale::Fixed(f) => positive("attention_factor", f).map(|_| ()),
        Mscale::StartSigmaDecay {
            start_sigma,
            lambda_t,
        } => {
            finite("start_sigma", start_sigma)?;
            non_negative("lambda_t", lambda_t).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// `a·(1 − t) + b·t`, written `a + (b − a)·t` so that it is exact when `a == b` (at `s = 1` every
/// blend is then bit-identical to the base frequency, and per-step caches keyed by the frequencies
/// hit), and exactly `a` / `b` at `t = 0` / `t = 1` (as the references' `a·(1−t) + b·t`).
#[inline]
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    if t == 1.0 { b } else { a + (b - a) * t }
}

/// Dy-NTK, exponential form (DyPE Eq. 15/20): base `θ · s^(κ·d/(d−2))`, for `s > 0` and κ `>= 0`
/// finite; an overflowing base is an error.
pub fn dy_ntk_exponential_base(axis: &Axis, scale: f64, kappa: f64) -> Result<f64> {
    non_negative("kappa", kappa)?;
    let base = ntk_base(axis.theta(), axis.dim(), scale)?;
    positive("ntk_base", axis.theta() * pow(base / axis.theta(), kappa))
}

/// Dy-NTK, multiplicative form (DyPE Eq. 19, see [`NtkKappa::Multiplicative`]): base
/// `θ · (1 + (s−1)·κ)^(d/(d−2))`, for `s > 0`, κ `>= 0` finite and `1 + (s−1)·κ > 0`.
pub fn dy_ntk_multiplicative_base(axis: &Axis, scale: f64, kappa: f64) -> Result<f64> {
    positive("scale", scale)?;
    non_negative("kappa", kappa)?;
    ntk_base(
        axis.theta(),
        axis.dim(),
        produced("scale", 1.0 + (scale - 1.0) * kappa)?,
    )
}

/// The paper's YaRN frequencies (DyPE Eq. 7–8): `h(ω) = (1−γ(r))·ω/s + γ(r)·ω` with `r = L·ω/(2π)`.
pub(crate) fn yarn_frequencies(
    axis: &Axis,
    scale: f64,
    train_len: f64,
    alpha: f64,
    beta: f64,
    out: &mut [f64],
) {
    for (i, w) in out.iter_mut().enumerate() {
        let base = axis.inv_freq(i);
        let g = yarn_ramp(raw_rotations(base, train_len), alpha, beta);
        *w = lerp(base / scale, base, g);
    }
}

/// LLM YaRN frequencies (HF `_compute_yarn_parameters`): `extrapolation = 1 − ramp(i)` between the
/// correction dims of β_fast and β_slow; `ω_i/s · (1 − e) + ω_i · e`.
pub(crate) fn yarn_llm_frequencies(
    axis: &Axis,
    scale: f64,
    train_len: f64,
    y: &YarnLlm,
    out: &mut [f64],
) {
    let (low, high) = raw_correction_range(
        axis,
        y.beta_fast,
        y.beta_slow,
        train_len,
        RampClamp::Hf {
            truncate: y.truncate,
        },
    );
    for (i, w) in out.iter_mut().enumerate() {
        let base = axis.inv_freq(i);
        let e = 1.0 - linear_ramp(i, low, high);
        *w = lerp(base / scale, base, e);
    }
}

/// NTK-by-parts frequencies: blend PI (`ω/s`) into NTK-aware (`ntk_base`) over the `β` ramp, then
/// the result into the base frequencies over the `γ` ramp.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ntk_by_parts_frequencies(
    axis: &Axis,
    linear_scale: f64,
    ntk_base: f64,
    train_len: f64,
    beta: (f64, f64),
    gamma: (f64, f64),
    clamp: RampClamp,
    out: &mut [f64],
) {
    let d = axis.dim();
    let (bl, bh) = raw_correction_range(axis, beta.0, beta.1, train_len, clamp);
    let (gl, gh) = raw_correction_range(axis, gamma.0, gamma.1, train_len, clamp);
    for (i, w) in out.iter_mut().enumerate() {
        let base = axis.inv_freq(i);
        let linear = base / linear_scale;
        let ntk = raw_inv_freq(ntk_base, d, i);
        let m = 1.0 - linear_ramp(i, bl, bh);
        let f = lerp(linear, ntk, m);
        let m = 1.0 - linear_ramp(i, gl, gh);
        *w = lerp(f, base, m);
    }
}
