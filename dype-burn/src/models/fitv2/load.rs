//! The FiTv2 checkpoint: key map and model construction from validated weights.

use burn::module::Param;
use burn::nn::Embedding;
use burn::tensor::backend::Backend;

use super::FitConfig;
use super::model::{FitBlock, FitV2};
use crate::models::ModelError;
use crate::weights::{KeyMap, Weights, WeightsError};

impl FitConfig {
    /// The checkpoint key map: every tensor FiT's `state_dict()` holds, with PyTorch shapes.
    pub fn key_map(&self) -> KeyMap {
        let (d, t) = (self.hidden_size, self.token_dim());
        let mut m = KeyMap::new();
        m.linear("x_embedder.proj", t, d, true);
        m.linear("t_embedder.mlp.0", 256, d, true);
        m.linear("t_embedder.mlp.2", d, d, true);
        m.tensor(
            "y_embedder.embedding_table.weight",
            &[self.num_classes + 1, d],
        );
        m.linear("global_adaLN_modulation.1", d, 6 * d, true);
        for i in 0..self.depth {
            let p = format!("blocks.{i}");
            m.linear(&format!("{p}.attn.qkv"), d, 3 * d, true);
            m.linear(&format!("{p}.attn.proj"), d, d, true);
            m.linear(&format!("{p}.mlp.fc1_g"), d, self.mlp_hidden(), true);
            m.linear(&format!("{p}.mlp.fc1_x"), d, self.mlp_hidden(), true);
            m.linear(&format!("{p}.mlp.fc2"), self.mlp_hidden(), d, true);
            m.linear(
                &format!("{p}.adaLN_modulation.1"),
                d,
                self.adaln_lora_dim,
                true,
            );
            m.linear(
                &format!("{p}.adaLN_modulation.2"),
                self.adaln_lora_dim,
                6 * d,
                true,
            );
        }
        m.linear("final_layer.linear", d, self.out_token_dim(), true);
        m.linear("final_layer.adaLN_modulation.1", d, 2 * d, true);
        m
    }
}

impl<B: Backend> FitV2<B> {
    /// Builds the model from validated weights (see [`FitConfig::key_map`]).
    pub fn from_weights(config: &FitConfig, w: &Weights<'_, B>) -> Result<Self, ModelError> {
        config.validate()?;
        let blocks = (0..config.depth)
            .map(|i| {
                let p = format!("blocks.{i}");
                Ok(FitBlock {
                    qkv: w.linear(&format!("{p}.attn.qkv"), true)?,
                    proj: w.linear(&format!("{p}.attn.proj"), true)?,
                    fc1_g: w.linear(&format!("{p}.mlp.fc1_g"), true)?,
                    fc1_x: w.linear(&format!("{p}.mlp.fc1_x"), true)?,
                    fc2: w.linear(&format!("{p}.mlp.fc2"), true)?,
                    lora_down: w.linear(&format!("{p}.adaLN_modulation.1"), true)?,
                    lora_up: w.linear(&format!("{p}.adaLN_modulation.2"), true)?,
                })
            })
            .collect::<Result<Vec<_>, WeightsError>>()?;
        Ok(FitV2 {
            x_embedder: w.linear("x_embedder.proj", true)?,
            t_mlp0: w.linear("t_embedder.mlp.0", true)?,
            t_mlp2: w.linear("t_embedder.mlp.2", true)?,
            y_embedder: Embedding {
                weight: Param::from_tensor(w.tensor::<2>("y_embedder.embedding_table.weight")?),
            },
            global_adaln: w.linear("global_adaLN_modulation.1", true)?,
            blocks,
            final_adaln: w.linear("final_layer.adaLN_modulation.1", true)?,
            final_linear: w.linear("final_layer.linear", true)?,
            config: config.clone(),
        })
    }

    /// Opens `path` (safetensors, sharded safetensors or a PyTorch pickle), validates every key,
    /// shape and dtype against [`FitConfig::key_map`] before building anything, and builds the
    /// model on `device` in `dtype` (weights are cast on load).
    pub fn load(
        path: impl AsRef<std::path::Path>,
        config: &FitConfig,
        dtype: burn::tensor::FloatDType,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let ckpt = crate::weights::Checkpoint::open(path)?;
        let map = config.key_map();
        let w = ckpt.load::<B>(&map, dtype, device)?;
        Self::from_weights(config, &w)
    }
}
