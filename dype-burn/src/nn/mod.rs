//! Building blocks the model ports share: precision casts, normalisations,
//! latent patchify/packing. Internal: models use them, users see the models.

#[cfg(feature = "text")]
pub(crate) mod layers;
pub(crate) mod norm;
pub mod patch;
pub(crate) mod precision;
pub(crate) mod timestep;

#[cfg(feature = "text")]
pub(crate) use layers::cast_params;
#[cfg(feature = "text")]
pub(crate) use norm::layer_norm_eps;
pub(crate) use norm::{EPS, RmsForm, group_norm, layer_norm, rms_norm};
pub(crate) use patch::{patchify, unpatchify};
pub(crate) use timestep::{fit_timestep_features, flux_timestep_embedding};
