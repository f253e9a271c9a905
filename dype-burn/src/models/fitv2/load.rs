//! The FiTv2 checkpoint, each key spelled once: one builder declares it
//! ([`FitConfig::key_map`]) and loads it ([`FitV2::from_weights`]).

use burn::nn::{Embedding, Linear};
use burn::tensor::backend::Backend;

use super::FitConfig;
use super::model::{FitBlock, FitV2};
use crate::models::{CheckpointSpec, ModelError, Pretrained};
use crate::weights::{Checkpoint, Declare, KeyMap, Load, Source, Weights};

/// FiT's tensors as a [`Source`] gives them, in checkpoint order.
struct Fit<S: Source> {
    x_embedder: S::Linear,
    t_mlp: [S::Linear; 2],
    y_table: S::Param<2>,
    global_adaln: S::Linear,
    blocks: Vec<[S::Linear; 7]>,
    final_linear: S::Linear,
    final_adaln: S::Linear,
}

/// Every tensor of FiT's `state_dict()`, with PyTorch shapes.
fn fit<S: Source>(s: &mut S, c: &FitConfig) -> Result<Fit<S>, S::Error> {
    let (d, h, r) = (c.hidden_size, c.mlp_hidden(), c.adaln_lora_dim);
    Ok(Fit {
        x_embedder: s.linear("x_embedder.proj", c.token_dim(), d, true)?,
        t_mlp: [
            s.linear("t_embedder.mlp.0", 256, d, true)?,
            s.linear("t_embedder.mlp.2", d, d, true)?,
        ],
        y_table: s.param("y_embedder.embedding_table.weight", [c.num_classes + 1, d])?,
        global_adaln: s.linear("global_adaLN_modulation.1", d, 6 * d, true)?,
        blocks: (0..c.depth)
            .map(|i| {
                let mut lin = |name: &str, d_in, d_out| {
                    s.linear(&format!("blocks.{i}.{name}"), d_in, d_out, true)
                };
                // In `FitBlock`'s field order.
                Ok([
                    lin("attn.qkv", d, 3 * d)?,
                    lin("attn.proj", d, d)?,
                    lin("mlp.fc1_g", d, h)?,
                    lin("mlp.fc1_x", d, h)?,
                    lin("mlp.fc2", h, d)?,
                    lin("adaLN_modulation.1", d, r)?,
                    lin("adaLN_modulation.2", r, 6 * d)?,
                ])
            })
            .collect::<Result<_, _>>()?,
        final_linear: s.linear("final_layer.linear", d, c.out_token_dim(), true)?,
        final_adaln: s.linear("final_layer.adaLN_modulation.1", d, 2 * d, true)?,
    })
}

impl<B: Backend> From<[Linear<B>; 7]> for FitBlock<B> {
    fn from([qkv, proj, fc1_g, fc1_x, fc2, lora_down, lora_up]: [Linear<B>; 7]) -> Self {
        FitBlock {
            qkv,
            proj,
            fc1_g,
            fc1_x,
            fc2,
            lora_down,
            lora_up,
        }
    }
}

impl FitConfig {
    /// The checkpoint key map: every tensor FiT's `state_dict()` holds, with PyTorch shapes.
    pub fn key_map(&self) -> KeyMap {
        Declare::key_map(|s| fit(s, self))
    }
}

impl<B: Backend> FitV2<B> {
    /// Builds the model from validated weights (see [`FitConfig::key_map`]).
    pub fn from_weights(config: &FitConfig, w: &Weights<'_, B>) -> Result<Self, ModelError> {
        config.validate()?;
        let f = fit(&mut Load::new(w), config)?;
        let [t_mlp0, t_mlp2] = f.t_mlp;
        Ok(FitV2 {
            x_embedder: f.x_embedder,
            t_mlp0,
            t_mlp2,
            y_embedder: Embedding { weight: f.y_table },
            global_adaln: f.global_adaln,
            blocks: f.blocks.into_iter().map(FitBlock::from).collect(),
            final_adaln: f.final_adaln,
            final_linear: f.final_linear,
            config: config.clone(),
        })
    }
}

impl CheckpointSpec for FitConfig {
    type Layout = ();

    fn layout(&self, _: &Checkpoint) -> Result<(), ModelError> {
        self.validate()
    }

    fn declare(&self, _: &()) -> KeyMap {
        self.key_map()
    }
}

impl<B: Backend> Pretrained<B> for FitV2<B> {
    type Config = FitConfig;

    fn build(config: &FitConfig, _: (), w: &Weights<'_, B>) -> Result<Self, ModelError> {
        Self::from_weights(config, w)
    }
}
