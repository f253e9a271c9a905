//! The positional-extrapolation methods as small pure functions of one axis, its scale factors and
//! (for the dynamic forms) DyPE's time. Each writes the per-pair inverse frequencies and returns the
//! axis' attention factor. Formulas and their sources are listed in `docs/math.md`.

use crate::attention::{deepseek_attention_factor, sqrt_damped_mscale, yarn_mscale};
use crate::axis::{
    Axis, RampClamp, correction_range, inv_freq_with_base, linear_ramp, ntk_base, rotations,
    yarn_ramp,
};
use crate::error::{DypeError, Result, finite, length, non_negative, positive};
use crate::math::pow;
use crate::schedule::{KappaSchedule, ThresholdKappa};
use crate::time::Sigma;

/// Scale factors of one axis for one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisScales {
    /// Scale used for position interpolation (PI bands): `s ≥ 1`.
    pub linear: f64,
    /// Scale used for NTK base changes: `s ≥ 1` (differs from `linear` only under
    /// [`crate::AxisPolicy::VisionYarn`]).
    pub ntk: f64,
    /// The largest scale over all scaled axes (some attention factors use it).
    pub global: f64,
    /// The trained extent `L` of this axis, in positions (tokens).
    pub train_len: f64,
}

impl AxisScales {
    /// The same scale for every purpose (1-D / isotropic use).
    pub fn uniform(scale: f64, train_len: f64) -> Self {
        AxisScales {
            linear: scale,
            ntk: scale,
            global: scale,
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
        positive("train_len", self.train_len)?;
        Ok(())
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

/// An attention factor ("mscale") rule of a YaRN-like method.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// A given number (HF `attention_factor`).
    Fixed(f64),
}

impl Mscale {
    /// Evaluates the rule at the axis' scales; with `decay = Some(κ)` the scale is replaced by
    /// `s^κ` first, so the factor fades to 1 together with the frequencies.
    pub fn evaluate(&self, scales: &AxisScales, decay: Option<f64>) -> f64 {
        let eff = |s: f64| match decay {
            Some(k) => pow(s, k),
            None => s,
        };
        match *self {
            Mscale::None => 1.0,
            Mscale::Yarn(src) => yarn_mscale(eff(src.pick(scales))),
            Mscale::SqrtDamped(src) => sqrt_damped_mscale(eff(src.pick(scales))),
            Mscale::DeepSeek {
                mscale,
                mscale_all_dim,
            } => deepseek_attention_factor(eff(scales.linear), mscale, mscale_all_dim),
            Mscale::Fixed(f) => f,
        }
    }
}

/// How Dy-NTK lets κ modulate the NTK base change (DyPE App. D).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    /// α: below `α` rotations a pair is interpolated (PI). Paper: 1.
    pub alpha: f64,
    /// β: above `β` rotations a pair keeps its frequency. Paper: 32.
    pub beta: f64,
    /// Dy-YaRN (Eq. 16–17): thresholds `α·κ(t)`, `β·κ(t)` with `κ(t) = t^λt`. `None` = static YaRN.
    pub dynamic: Option<KappaSchedule>,
    /// Attention factor; paper Eq. 9: `τ(s) = 0.1·ln s + 1`.
    pub mscale: Mscale,
    /// Evaluate the attention factor at `s^κ` so that it fades to 1 at t = 0 with the frequencies
    /// (ours; the paper keeps τ(s) static, which `false` reproduces).
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

/// A positional-extrapolation method for one axis, static or dynamic.
#[derive(Debug, Clone, Copy, PartialEq)]
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
}

/// What one method produced for one axis at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisOutput {
    /// The attention factor for this axis' cos/sin.
    pub attention_factor: f64,
    /// The κ the method used (`None` for static methods).
    pub kappa: Option<f64>,
}

impl Method {
    /// Dy-PI with the paper's default schedule (λs = λt = 2).
    pub fn dy_pi() -> Self {
        Method::Pi {
            dynamic: Some(KappaSchedule::default()),
        }
    }

    /// Dy-NTK, exponential form, with the paper's default schedule (λs = λt = 2).
    pub fn dy_ntk() -> Self {
        Method::Ntk {
            dynamic: Some((KappaSchedule::default(), NtkKappa::Exponential)),
        }
    }

    /// Dy-YaRN as in the paper: α = 1, β = 32, thresholds × `t^2`; attention factor fading with κ.
    pub fn dy_yarn() -> Self {
        Method::Yarn(Yarn {
            dynamic: Some(KappaSchedule {
                lambda_s: 1.0,
                lambda_t: 2.0,
            }),
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
        }
    }

    /// The method's primary κ at `t` (thresholds' κ for by-parts), `None` if static or `t` is `None`.
    pub fn kappa(&self, t: Option<Sigma>) -> Result<Option<f64>> {
        let Some(t) = t else { return Ok(None) };
        let schedule = match self {
            Method::Base | Method::YarnLlm(_) => None,
            Method::Pi { dynamic } => *dynamic,
            Method::Ntk { dynamic } => dynamic.map(|d| d.0),
            Method::Yarn(y) => y.dynamic,
            Method::NtkByParts(p) => p.thresholds.map(|x| x.0).or(p.ntk),
        };
        schedule.map(|s| s.kappa(t)).transpose()
    }

    fn validate(&self) -> Result<()> {
        match self {
            Method::Base | Method::Pi { .. } | Method::Ntk { .. } => Ok(()),
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
        }
    }

    /// Writes this axis' inverse frequencies (length `axis.pairs()`) for the given scales at DyPE time
    /// `t` (ignored by static methods; dynamic methods with `t = None` use t = 1, i.e. their
    /// strongest, static-like setting) and returns the attention factor and κ.
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
        let d = axis.dim();
        let mut attention_factor = 1.0;
        match *self {
            Method::Base => axis.base_frequencies(out)?,
            Method::Pi { dynamic } => {
                let s = match dynamic {
                    Some(k) => pow(scales.linear, k.kappa(t_eff)?),
                    None => scales.linear,
                };
                for (i, w) in out.iter_mut().enumerate() {
                    *w = axis.inv_freq(i) / s;
                }
            }
            Method::Ntk { dynamic } => {
                let base = match dynamic {
                    None => ntk_base(axis.theta(), d, scales.ntk)?,
                    Some((k, NtkKappa::Exponential)) => {
                        dy_ntk_exponential_base(axis, scales.ntk, k.kappa(t_eff)?)?
                    }
                    Some((k, NtkKappa::Multiplicative)) => {
                        dy_ntk_multiplicative_base(axis, scales.ntk, k.kappa(t_eff)?)?
                    }
                };
                for (i, w) in out.iter_mut().enumerate() {
                    *w = inv_freq_with_base(base, d, i);
                }
            }
            Method::Yarn(y) => {
                let k = match y.dynamic {
                    Some(s) => Some(s.kappa(t_eff)?),
                    None => None,
                };
                let (alpha, beta) = match k {
                    Some(k) => (y.alpha * k, y.beta * k),
                    None => (y.alpha, y.beta),
                };
                yarn_frequencies(axis, scales.linear, scales.train_len, alpha, beta, out);
                attention_factor = y
                    .mscale
                    .evaluate(scales, if y.mscale_follows_kappa { k } else { None });
            }
            Method::YarnLlm(y) => {
                yarn_llm_frequencies(axis, scales.linear, scales.train_len, &y, out);
                attention_factor = y.mscale.evaluate(scales, None);
            }
            Method::NtkByParts(p) => {
                let (b0, b1, g0, g1) = match p.thresholds {
                    Some((sched, form)) => {
                        let k = Some(sched.kappa(t_eff)?);
                        (
                            form.apply(p.beta0, k),
                            form.apply(p.beta1, k),
                            form.apply(p.gamma0, k),
                            form.apply(p.gamma1, k),
                        )
                    }
                    None => (p.beta0, p.beta1, p.gamma0, p.gamma1),
                };
                let ntk = match p.ntk {
                    Some(sched) => dy_ntk_exponential_base(axis, scales.ntk, sched.kappa(t_eff)?)?,
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
                attention_factor = p.mscale.evaluate(scales, None);
            }
        }
        finite("attention_factor", attention_factor)?;
        Ok(AxisOutput {
            attention_factor,
            kappa,
        })
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
        _ => Ok(()),
    }
}

/// `a·(1 − t) + b·t`, written `a + (b − a)·t` so that it is exact when `a == b` (at `s = 1` every
/// blend is then bit-identical to the base frequency, and per-step caches keyed by the frequencies
/// hit).
#[inline]
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

/// Dy-NTK, exponential form (DyPE Eq. 15/20): base `θ · s^(κ·d/(d−2))`.
pub fn dy_ntk_exponential_base(axis: &Axis, scale: f64, kappa: f64) -> Result<f64> {
    let base = ntk_base(axis.theta(), axis.dim(), scale)?;
    Ok(axis.theta() * pow(base / axis.theta(), kappa))
}

/// Dy-NTK, multiplicative form (DyPE Eq. 19, see [`NtkKappa::Multiplicative`]): base
/// `θ · (1 + (s−1)·κ)^(d/(d−2))`.
pub fn dy_ntk_multiplicative_base(axis: &Axis, scale: f64, kappa: f64) -> Result<f64> {
    ntk_base(axis.theta(), axis.dim(), 1.0 + (scale - 1.0) * kappa)
}

/// The paper's YaRN frequencies (DyPE Eq. 7–8): `h(ω) = (1−γ(r))·ω/s + γ(r)·ω` with `r = L·ω/(2π)`.
pub fn yarn_frequencies(
    axis: &Axis,
    scale: f64,
    train_len: f64,
    alpha: f64,
    beta: f64,
    out: &mut [f64],
) {
    for (i, w) in out.iter_mut().enumerate() {
        let base = axis.inv_freq(i);
        let g = yarn_ramp(rotations(base, train_len), alpha, beta);
        *w = lerp(base / scale, base, g);
    }
}

/// LLM YaRN frequencies (HF `_compute_yarn_parameters`): `extrapolation = 1 − ramp(i)` between the
/// correction dims of β_fast and β_slow; `ω_i/s · (1 − e) + ω_i · e`.
pub fn yarn_llm_frequencies(axis: &Axis, scale: f64, train_len: f64, y: &YarnLlm, out: &mut [f64]) {
    let (low, high) = correction_range(
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
pub fn ntk_by_parts_frequencies(
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
    let (bl, bh) = correction_range(axis, beta.0, beta.1, train_len, clamp);
    let (gl, gh) = correction_range(axis, gamma.0, gamma.1, train_len, clamp);
    for (i, w) in out.iter_mut().enumerate() {
        let base = axis.inv_freq(i);
        let linear = base / linear_scale;
        let ntk = inv_freq_with_base(ntk_base, d, i);
        let m = 1.0 - linear_ramp(i, bl, bh);
        let f = lerp(linear, ntk, m);
        let m = 1.0 - linear_ramp(i, gl, gh);
        *w = lerp(f, base, m);
    }
}
