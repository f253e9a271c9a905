//! On-demand checkpoint downloads from the Hugging Face Hub (cached in the usual HF cache,
//! honouring `HF_TOKEN` and `HF_HOME`). The well-known files of the model zoo are named here once
//! ([`FITV2_XL`], [`FLUX_DEV`], …); downloading them ([`fetch`], [`fetch_sharded`]) needs the
//! feature `hub` (an HTTP client with TLS).

#[cfg(feature = "hub")]
use std::path::PathBuf;

/// A downloadable file: repository and path inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubFile {
    /// Repository id, e.g. `InfImagine/FiTv2`.
    pub repo: &'static str,
    /// File path inside the repository.
    pub file: &'static str,
}

/// FiTv2-XL/2 EMA weights (F32, 2.68 GB).
pub const FITV2_XL: HubFile = HubFile {
    repo: "InfImagine/FiTv2",
    file: "FiTv2_XL/model_ema.safetensors",
};
/// The SD VAE FiT decodes with (`stabilityai/sd-vae-ft-ema`).
pub const SD_VAE_FT_EMA: HubFile = HubFile {
    repo: "stabilityai/sd-vae-ft-ema",
    file: "diffusion_pytorch_model.safetensors",
};

/// Why a download failed.
#[cfg(feature = "hub")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The Hub could not be reached or refused a file.
    #[error(
        "could not download `{path}` from the Hugging Face Hub repository `{}`: {source}\n\
         (offline? use a local copy instead; gated repository? accept its licence on the Hub and set HF_TOKEN)",
        file.repo
    )]
    Download {
        /// The file asked for (repository and path).
        file: HubFile,
        /// The path that failed: the file itself or one of its shards.
        path: String,
        /// The Hub client's error.
        #[source]
        source: hf_hub::api::sync::ApiError,
    },
    /// A sharded checkpoint's index could not be read.
    #[error("`{}` from `{}`: {source}", file.file, file.repo)]
    IndexRead {
        /// The index file.
        file: HubFile,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// A sharded checkpoint's index is not JSON with a `weight_map` object.
    #[error("`{}` from `{}` is not a sharded-checkpoint index (JSON with a `weight_map` object)", file.file, file.repo)]
    IndexFormat {
        /// The index file.
        file: HubFile,
        /// The JSON parser's error, when it is not JSON at all.
        #[source]
        source: Option<serde_json::Error>,
    },
}

/// A Hub client from the environment (`HF_HOME`, `HF_ENDPOINT`), authenticated with `HF_TOKEN`.
#[cfg(feature = "hub")]
fn api() -> Result<hf_hub::api::sync::Api, hf_hub::api::sync::ApiError> {
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    hf_hub::api::sync::ApiBuilder::from_env()
        .with_token(token)
        .with_progress(true)
        .build()
}

/// Returns the local path of `f`, downloading it into the HF cache first if needed.
#[cfg(feature = "hub")]
pub fn fetch(f: HubFile) -> Result<PathBuf, HubError> {
    let err = |source| HubError::Download {
        file: f,
        path: f.file.to_string(),
        source,
    };
    api()
        .map_err(err)?
        .model(f.repo.to_string())
        .get(f.file)
        .map_err(err)
}

/// FLUX.1-dev DiT weights, BFL single-file layout (bf16, 23.8 GB). Gated: accept the licence on
/// the Hub and set `HF_TOKEN`.
pub const FLUX_DEV: HubFile = HubFile {
    repo: "black-forest-labs/FLUX.1-dev",
    file: "flux1-dev.safetensors",
};
/// The FLUX autoencoder (BFL layout, `ae.safetensors`) from the gated FLUX.1-dev repository.
pub const FLUX_AE: HubFile = HubFile {
    repo: "black-forest-labs/FLUX.1-dev",
    file: "ae.safetensors",
};

/// FLUX.1-dev's T5-XXL encoder (`text_encoder_2/`, sharded bf16 safetensors; fetch with
/// [`fetch_sharded`]).
pub const FLUX_T5: HubFile = HubFile {
    repo: "black-forest-labs/FLUX.1-dev",
    file: "text_encoder_2/model.safetensors.index.json",
};
/// FLUX.1-dev's T5 tokenizer (`tokenizer_2/tokenizer.json`).
pub const FLUX_T5_TOKENIZER: HubFile = HubFile {
    repo: "black-forest-labs/FLUX.1-dev",
    file: "tokenizer_2/tokenizer.json",
};
/// FLUX.1-dev's CLIP-L text encoder (`text_encoder/model.safetensors`).
pub const FLUX_CLIP: HubFile = HubFile {
    repo: "black-forest-labs/FLUX.1-dev",
    file: "text_encoder/model.safetensors",
};
/// CLIP ViT-L/14's tokenizer.json (the FLUX.1-dev repository ships only vocab/merges files).
pub const CLIP_TOKENIZER: HubFile = HubFile {
    repo: "openai/clip-vit-large-patch14",
    file: "tokenizer.json",
};

/// Fetches a sharded checkpoint: its `*.safetensors.index.json` and every shard its `weight_map`
/// names (they land beside the index in the cache). Returns the local index path.
#[cfg(feature = "hub")]
pub fn fetch_sharded(index: HubFile) -> Result<PathBuf, HubError> {
    let local = fetch(index)?;
    let text = std::fs::read_to_string(&local).map_err(|source| HubError::IndexRead {
        file: index,
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| HubError::IndexFormat {
            file: index,
            source: Some(e),
        })?;
    let mut shards: Vec<String> = json["weight_map"]
        .as_object()
        .ok_or(HubError::IndexFormat {
            file: index,
            source: None,
        })?
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    let dir = index.file.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let err = |path: &str| {
        let path = path.to_string();
        move |source| HubError::Download {
            file: index,
            path,
            source,
        }
    };
    let repo = api()
        .map_err(err(index.file))?
        .model(index.repo.to_string());
    for shard in shards {
        let path = if dir.is_empty() {
            shard
        } else {
            format!("{dir}/{shard}")
        };
        repo.get(&path).map_err(err(&path))?;
    }
    Ok(local)
}
