//! Seeded DiT-style initialisation and saving in FiT's checkpoint layout.
//!
//! Initialisation follows DiT's `initialize_weights` (Peebles & Xie, facebookresearch/DiT
//! `models.py`) as FiT keeps it: Xavier-uniform linear weights with zero biases, N(0, 0.02) for the
//! class table and the timestep MLP, and **zero** adaLN modulation (the global one, every block's
//! LoRA up-projection) and final layer, so every block starts as the identity and the model's
//! first prediction is zero.

use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::model::{FitBlock, FitV2};
use super::{FitConfig, MODEL};
use crate::models::ModelError;

/// Named tensors in PyTorch layout: `(name, shape, values)`, f32.
pub type StateDict = Vec<(String, Vec<usize>, Vec<f32>)>;

/// How a weight matrix starts.
#[derive(Clone, Copy)]
enum Init {
    Xavier,
    Normal(f32),
    Zero,
}

/// Draws every parameter from one ChaCha8 stream, in a fixed order: the same seed gives the same
/// model on every backend.
struct Draw<'a, B: Backend> {
    rng: ChaCha8Rng,
    device: &'a B::Device,
}

impl<B: Backend> Draw<'_, B> {
    fn values(&mut self, n: usize, fan: (usize, usize), init: Init) -> Vec<f32> {
        match init {
            Init::Zero => vec![0.0; n],
            Init::Xavier => {
                let bound = (6.0 / (fan.0 + fan.1) as f64).sqrt() as f32;
                (0..n)
                    .map(|_| bound * (2.0 * self.rng.random::<f32>() - 1.0))
                    .collect()
            }
            Init::Normal(std) => match Normal::new(0.0f32, std) {
                Ok(normal) => (0..n).map(|_| normal.sample(&mut self.rng)).collect(),
                Err(_) => vec![0.0; n],
            },
        }
    }

    /// A `fan_in → fan_out` linear layer (burn layout `[in, out]`) with a zero bias.
    fn linear(&mut self, fan_in: usize, fan_out: usize, init: Init) -> Linear<B> {
        let w = self.values(fan_in * fan_out, (fan_in, fan_out), init);
        Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(w, [fan_in, fan_out]),
                self.device,
            )),
            bias: Some(Param::from_tensor(Tensor::zeros([fan_out], self.device))),
        }
    }
}

impl<B: Backend> FitV2<B> {
    /// A freshly initialised model for training: DiT's initialisation (see the module docs), every
    /// value drawn from ChaCha8 seeded with `seed`, so a seed gives the same weights on every
    /// backend.
    pub fn init(config: &FitConfig, seed: u64, device: &B::Device) -> Result<Self, ModelError> {
        config.validate()?;
        let mut draw = Draw::<B> {
            rng: ChaCha8Rng::seed_from_u64(seed),
            device,
        };
        let (d, r, hidden) = (
            config.hidden_size,
            config.adaln_lora_dim,
            config.mlp_hidden(),
        );
        let x_embedder = draw.linear(config.token_dim(), d, Init::Xavier);
        let t_mlp0 = draw.linear(256, d, Init::Normal(0.02));
        let t_mlp2 = draw.linear(d, d, Init::Normal(0.02));
        let rows = config.num_classes + 1;
        let table = draw.values(rows * d, (rows, d), Init::Normal(0.02));
        let y_embedder = Embedding {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(table, [rows, d]),
                device,
            )),
        };
        let global_adaln = draw.linear(d, 6 * d, Init::Zero);
        let blocks = (0..config.depth)
            .map(|_| FitBlock {
                qkv: draw.linear(d, 3 * d, Init::Xavier),
                proj: draw.linear(d, d, Init::Xavier),
                fc1_g: draw.linear(d, hidden, Init::Xavier),
                fc1_x: draw.linear(d, hidden, Init::Xavier),
                fc2: draw.linear(hidden, d, Init::Xavier),
                lora_down: draw.linear(d, r, Init::Xavier),
                lora_up: draw.linear(r, 6 * d, Init::Zero),
            })
            .collect();
        let final_adaln = draw.linear(d, 2 * d, Init::Zero);
        let final_linear = draw.linear(d, config.out_token_dim(), Init::Zero);
        Ok(FitV2 {
            x_embedder,
            t_mlp0,
            t_mlp2,
            y_embedder,
            global_adaln,
            blocks,
            final_adaln,
            final_linear,
            config: config.clone(),
        })
    }

    /// Every tensor under its FiT checkpoint name, in PyTorch layout (linear weights `[out, in]`),
    /// as f32: the keys of [`FitConfig::key_map`].
    pub fn state_dict(&self) -> Result<StateDict, ModelError> {
        let mut out = Vec::new();
        let mut linear = |name: &str, l: &Linear<B>| -> Result<(), ModelError> {
            let [i, o] = l.weight.val().dims();
            let w = read(l.weight.val().transpose())?;
            out.push((format!("{name}.weight"), vec![o, i], w));
            if let Some(b) = &l.bias {
                out.push((format!("{name}.bias"), vec![o], read(b.val())?));
            }
            Ok(())
        };
        linear("x_embedder.proj", &self.x_embedder)?;
        linear("t_embedder.mlp.0", &self.t_mlp0)?;
        linear("t_embedder.mlp.2", &self.t_mlp2)?;
        linear("global_adaLN_modulation.1", &self.global_adaln)?;
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("blocks.{i}");
            linear(&format!("{p}.attn.qkv"), &b.qkv)?;
            linear(&format!("{p}.attn.proj"), &b.proj)?;
            linear(&format!("{p}.mlp.fc1_g"), &b.fc1_g)?;
            linear(&format!("{p}.mlp.fc1_x"), &b.fc1_x)?;
            linear(&format!("{p}.mlp.fc2"), &b.fc2)?;
            linear(&format!("{p}.adaLN_modulation.1"), &b.lora_down)?;
            linear(&format!("{p}.adaLN_modulation.2"), &b.lora_up)?;
        }
        linear("final_layer.linear", &self.final_linear)?;
        linear("final_layer.adaLN_modulation.1", &self.final_adaln)?;
        let table = self.y_embedder.weight.val();
        let dims = table.dims().to_vec();
        out.push((
            "y_embedder.embedding_table.weight".into(),
            dims,
            read(table)?,
        ));
        Ok(out)
    }

    /// Writes the weights as an f32 safetensors file in FiT's key layout ([`FitV2::state_dict`]),
    /// with `metadata` (e.g. the config and the training step) in its header; [`Pretrained::load`](crate::models::Pretrained::load)
    /// reads it back.
    pub fn save(
        &self,
        path: impl AsRef<Path>,
        metadata: Option<std::collections::HashMap<String, String>>,
    ) -> Result<(), ModelError> {
        let tensors = self.state_dict()?;
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(k, shape, v)| {
                let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                (k, shape, b)
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(k, shape, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .map(|v| (k.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ModelError::Save {
                path: path.as_ref().to_path_buf(),
                source,
            })?;
        safetensors::serialize_to_file(views, metadata, path.as_ref()).map_err(|source| {
            ModelError::Save {
                path: path.as_ref().to_path_buf(),
                source,
            }
        })
    }
}

fn read<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::ReadBack {
            model: MODEL,
            what: "weights",
            reason: format!("{e:?}"),
        })
}
