//! The positional method of a FiT run and its token grid.

use dype_core::DypeError;

use super::FitConfig;

/// The positional method of a FiT run: FiT's own `custom_freqs` as the reference implements them,
/// or any registry recipe ([`dype_core::presets::METHODS`]: the paper's, official DyPE, ComfyUI,
/// FiT's, HF's, Lumina's) on FiT's axes.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum FitPosition {
    /// FiT's `custom_freqs` through [`dype_core::presets::fit`].
    Fit(dype_core::presets::FitFreqs),
    /// A registry recipe; its policy, when it fixes one, overrides `decouple`.
    Recipe(dype_core::presets::Recipe),
}

impl From<dype_core::Method> for FitPosition {
    fn from(m: dype_core::Method) -> Self {
        FitPosition::Recipe(dype_core::presets::Recipe::method(m))
    }
}

impl FitPosition {
    /// The registry recipe this position stands for (FiT's `custom_freqs` are the registry's FiT
    /// entries, [`dype_core::presets::fit_recipe`]).
    pub fn recipe(&self) -> dype_core::presets::Recipe {
        match *self {
            FitPosition::Fit(f) => dype_core::presets::fit_recipe(f),
            FitPosition::Recipe(r) => r,
        }
    }
}

impl core::str::FromStr for FitPosition {
    type Err = DypeError;
    /// Any registry name ([`dype_core::presets::METHODS`]); an unknown one is
    /// [`DypeError::UnknownName`] with the list.
    fn from_str(s: &str) -> Result<Self, DypeError> {
        dype_core::presets::recipe_by_name(s).map(FitPosition::Recipe)
    }
}

/// The rotary layout of a FiT model ([`dype_core::presets::RotaryLayout::fit`]): two axes (rows,
/// then columns) of `head_dim/2`, trained extent `ori_max_pe_len`, interleaved pairs; `decouple`
/// scales each axis by its own extent, otherwise both by `max(H, W)`.
pub fn fit_layout(
    config: &FitConfig,
    decouple: bool,
) -> Result<dype_core::presets::RotaryLayout, DypeError> {
    dype_core::presets::RotaryLayout::fit(
        config.head_dim(),
        config.rope_theta,
        config.ori_max_pe_len as f64,
        decouple,
    )
}

/// The dype-core rope of a FiT model for `position` ([`fit_layout`] and the position's recipe:
/// FiT's `custom_freqs` are the registry's FiT entries, [`dype_core::presets::fit_recipe`]).
pub fn fit_rope(
    config: &FitConfig,
    position: FitPosition,
    decouple: bool,
) -> Result<dype_core::AxialRope, DypeError> {
    fit_layout(config, decouple)?.rope(&position.recipe())
}

/// Positions of an `h × w` token grid (row-major, `(row, col)` per token), padded with `(0, 0)` up
/// to `tokens` entries, and its extents `[h, w]`.
pub fn fit_grid(
    h: usize,
    w: usize,
    tokens: usize,
) -> Result<crate::rotary::SamplePositions, DypeError> {
    let mut ids = dype_core::table::grid_ids(h, w)?;
    if tokens > dype_core::MAX_TOKENS {
        return Err(DypeError::TooLarge {
            name: "tokens",
            value: tokens as u64,
            max: dype_core::MAX_TOKENS as u64,
        });
    }
    if tokens < h * w {
        return Err(DypeError::InvalidConfig {
            reason: "grid has more tokens than the padded length",
        });
    }
    ids.resize(2 * tokens, 0.0);
    crate::rotary::SamplePositions::with_extents(&ids, 2, vec![h as f64, w as f64])
}
