//! Training a small FiTv2 on the shapes dataset ([`crate::shapes`]) with burn's autodiff backend
//! (feature `train`), and the quality gate its samples must pass at the training size.
//!
//! One step: [`batch`] draws `batch` samples from a stream seeded by `(seed, step)` (class,
//! layout seed, label dropout to the null class, FiT time `t ~ U[0, 1]`, Gaussian noise), renders
//! them at the training size in [−1, 1], and AdamW takes one step on FiT's flow-matching loss
//! ([`dype_burn::train::flow_matching_loss`]); an EMA of the weights follows. A run is a pure
//! function of its seed and backend, and [`Trainer::resume`] continues it exactly (model,
//! optimiser moments, EMA and step are saved).

use dype_burn::models::Pretrained;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder, RecorderError};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, FloatDType, Int, Tensor, TensorData};
use dype_burn::models::ModelError;
use dype_burn::models::fitv2::{
    FitConfig, FitPosition, FitV2, GuidedChannels, fit_grid, fit_rope, patchify,
};
use dype_burn::pipeline::PipelineError;
use dype_burn::pipeline::fitv2::{FitGenerate, FitSampler, generate_pixels};
use dype_burn::rotary::{PairLayout, RotaryEmbedding, RotaryError};
use dype_burn::train::{Ema, TrainError, flow_matching_loss};
use dype_core::DypeError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::shapes::{
    self, CLASSES, Detection, Image, MIN_AREA_FRACTION, RenderConfig, Sample, ShapesError,
};

/// Errors of training, checkpoints and the quality gate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainingError {
    /// A configuration value outside its range.
    #[error("training configuration: {0}")]
    Config(&'static str),
    /// The loss stopped being finite.
    #[error("the loss is {loss} at step {step} (diverged)")]
    NonFinite {
        /// The step.
        step: u64,
        /// The loss.
        loss: f64,
    },
    /// A checkpoint file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint's state file is not what [`Trainer::save`] writes.
    #[error("{}: {source}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// burn's recorder failed on the model or optimiser state.
    #[error("{}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// burn's error.
        #[source]
        source: RecorderError,
    },
    /// A checkpoint record that burn could not load or whose parameters have the wrong shapes.
    #[error("{}: corrupt checkpoint record (wrong structure or shapes for the config)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
    },
    /// A tensor could not be read back from the device.
    #[error("cannot read {0} back from the device")]
    ReadBack(&'static str),
    /// The dataset failed.
    #[error(transparent)]
    Shapes(#[from] ShapesError),
    /// The loss or the EMA failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Sampling failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The rotary embedding failed.
    #[error(transparent)]
    Rotary(#[from] RotaryError),
    /// The position math failed.
    #[error(transparent)]
    Dype(#[from] DypeError),
}

/// The model trained on the shapes: FiTv2's architecture in pixel space at 32² px, patch 4
/// (8 × 8 tokens), hidden 128, depth 6, 2 heads of 64, SwiGLU ×4, adaLN-LoRA rank 32, 8 classes,
/// RoPE θ = 10 000 with `ori_max_pe_len` 8 (≈ 1.5 M parameters).
pub fn shapes_model() -> FitConfig {
    FitConfig {
        patch_size: 4,
        in_channels: 3,
        hidden_size: 128,
        depth: 6,
        num_heads: 2,
        mlp_ratio: 4.0,
        num_classes: CLASSES,
        adaln_lora_dim: 32,
        learn_sigma: false,
        rope_theta: 10_000.0,
        ori_max_pe_len: 8,
    }
}

/// The largest `batch · image_size²` a configuration may ask for (2²⁴ pixels, 200 MB of f32 data
/// and noise).
pub const MAX_BATCH_PIXELS: usize = 1 << 24;

/// Everything that fixes a training run (with the seed and the backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The model.
    pub model: FitConfig,
    /// Training image side in pixels (square; `ori_max_pe_len · patch_size`).
    pub image_size: usize,
    /// Images per step.
    pub batch: usize,
    /// AdamW peak learning rate.
    pub learning_rate: f64,
    /// Linear warm-up of the learning rate, in steps.
    pub warmup_steps: u64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient clipping: each parameter's gradient is scaled down to at most this L2 norm
    /// (burn's `GradientClippingConfig::Norm`, per parameter tensor; 0 = off).
    pub grad_clip: f64,
    /// EMA decay (with DiT's warm-up `min(decay, (1 + s)/(10 + s))`).
    pub ema_decay: f64,
    /// Probability of replacing a label with the null class (classifier-free guidance).
    pub label_dropout: f64,
    /// The run's seed (initialisation and every batch).
    pub seed: u64,
    /// Cool-down phases `[start, end]`, in order and not overlapping: in each, the learning rate
    /// falls linearly from its peak at `start` to 0 at `end`, and stays 0 until the next phase,
    /// which restarts at the peak (none: constant after the warm-up). JSON takes one `[start, end]`
    /// or a list of them.
    #[serde(default, deserialize_with = "cooldown_phases")]
    pub cooldown: Vec<[u64; 2]>,
}

/// `cooldown` as one `[start, end]` (the first format) or a list of them.
fn cooldown_phases<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<[u64; 2]>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Phases {
        One([u64; 2]),
        Many(Vec<[u64; 2]>),
    }
    Ok(match Option::<Phases>::deserialize(d)? {
        None => Vec::new(),
        Some(Phases::One(p)) => vec![p],
        Some(Phases::Many(v)) => v,
    })
}

impl Default for TrainConfig {
    /// [`shapes_model`] at 32² px, batch 32, AdamW 6e-4 with 200 warm-up steps, no weight decay,
    /// per-parameter gradient clipping at norm 1, EMA 0.995 (a horizon of ≈ 200 steps suits a run of a few thousand),
    /// label dropout 0.1, seed 0.
    fn default() -> Self {
        TrainConfig {
            model: shapes_model(),
            image_size: 32,
            batch: 32,
            learning_rate: 6e-4,
            warmup_steps: 200,
            weight_decay: 0.0,
            grad_clip: 1.0,
            ema_decay: 0.995,
            label_dropout: 0.1,
            seed: 0,
            cooldown: Vec::new(),
        }
    }
}

impl TrainConfig {
    /// Checks the configuration is usable.
    pub fn validate(&self) -> Result<(), TrainingError> {
        self.model.validate()?;
        let bad = |rule| Err(TrainingError::Config(rule));
        if self.model.num_classes != CLASSES {
            return bad("the shapes model needs num_classes = 8");
        }
        if self.model.in_channels != 3 {
            return bad("the shapes model is in pixel space: in_channels = 3");
        }
        if self.model.learn_sigma {
            return bad("the flow-matching loss trains a velocity only: learn_sigma = false");
        }
        if self.image_size == 0
            || self.image_size > shapes::MAX_SIDE
            || !self.image_size.is_multiple_of(self.model.patch_size)
        {
            return bad("image_size must be a positive multiple of patch_size");
        }
        if self.batch == 0 || self.batch > 4096 {
            return bad("batch must be in 1..=4096");
        }
        if self.batch * self.image_size * self.image_size > MAX_BATCH_PIXELS {
            return bad("batch · image_size² must be at most 2^24 pixels");
        }
        let finite = |v: f64| v.is_finite() && v >= 0.0;
        if !(finite(self.learning_rate)
            && finite(self.weight_decay)
            && finite(self.grad_clip)
            && (0.0..1.0).contains(&self.ema_decay)
            && (0.0..=1.0).contains(&self.label_dropout))
        {
            return bad(
                "learning_rate, weight_decay, grad_clip must be finite and >= 0; ema_decay in [0, 1); label_dropout in [0, 1]",
            );
        }
        let ordered = self.cooldown.iter().all(|[s, e]| s < e)
            && self.cooldown.windows(2).all(|w| w[0][1] <= w[1][0]);
        if !ordered {
            return bad("cooldown phases [start, end] need start < end, in order, not overlapping");
        }
        Ok(())
    }

    /// The learning rate at `step`: linear warm-up, constant, and in the cool-down phases a linear
    /// fall to 0 (0 after a phase until the next one starts).
    pub fn learning_rate_at(&self, step: u64) -> f64 {
        let warm = ((step + 1) as f64 / self.warmup_steps.max(1) as f64).min(1.0);
        let cool = match self.cooldown.iter().rev().find(|[start, _]| step >= *start) {
            Some([start, end]) => (end.saturating_sub(step) as f64
                / end.saturating_sub(*start).max(1) as f64)
                .clamp(0.0, 1.0),
            None => 1.0,
        };
        self.learning_rate * warm * cool
    }

    /// The EMA decay at `step`: `min(ema_decay, (1 + step)/(10 + step))`.
    pub fn ema_decay_at(&self, step: u64) -> f64 {
        self.ema_decay
            .min((1.0 + step as f64) / (10.0 + step as f64))
    }

    /// Tokens per side at the training size.
    pub fn tokens_per_side(&self) -> usize {
        self.image_size / self.model.patch_size.max(1)
    }
}

/// One training batch on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Images `[batch, 3, size, size]` in [−1, 1].
    pub images: Vec<f32>,
    /// Gaussian noise of the same shape.
    pub noise: Vec<f32>,
    /// FiT times in [0, 1) (0 = noise).
    pub t: Vec<f32>,
    /// Classes, the null class ([`FitConfig::null_class`]) for dropped labels.
    pub labels: Vec<i64>,
    /// The rendered classes (before dropout).
    pub classes: Vec<usize>,
}

/// The batch of `step`: a pure function of `(config.seed, step)` (a ChaCha8 stream per step).
pub fn batch(config: &TrainConfig, step: u64) -> Result<Batch, TrainingError> {
    config.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(step);
    let render = RenderConfig::default();
    let s = config.image_size;
    let per = 3 * s * s;
    let mut out = Batch {
        images: Vec::with_capacity(config.batch * per),
        noise: Vec::with_capacity(config.batch * per),
        t: Vec::with_capacity(config.batch),
        labels: Vec::with_capacity(config.batch),
        classes: Vec::with_capacity(config.batch),
    };
    for _ in 0..config.batch {
        let class = rng.random_range(0..CLASSES);
        let seed = rng.random::<u64>();
        let dropped = rng.random::<f64>() < config.label_dropout;
        out.t.push(rng.random::<f32>());
        out.classes.push(class);
        out.labels.push(if dropped {
            config.model.null_class() as i64
        } else {
            class as i64
        });
        let image = render.render(Sample { class, seed }, s, s)?;
        out.images.extend(image.data.iter().map(|v| 2.0 * v - 1.0));
        out.noise
            .extend((0..per).map(|_| -> f32 { StandardNormal.sample(&mut rng) }));
    }
    Ok(out)
}

/// A training run: the model, AdamW, the EMA and the step count.
pub struct Trainer<B: AutodiffBackend> {
    config: TrainConfig,
    model: FitV2<B>,
    optim: OptimizerAdaptor<AdamW, FitV2<B>, B>,
    ema: Ema<FitV2<B::InnerBackend>>,
    rotary: RotaryEmbedding<B>,
    device: B::Device,
    step: u64,
    losses: Vec<f64>,
}

/// The files of a saved run in its directory.
pub mod files {
    /// The run's state: config, step and loss per step (JSON).
    pub const STATE: &str = "state.json";
    /// The trained weights (burn record, full precision).
    pub const MODEL: &str = "model";
    /// AdamW's moments (burn record, full precision).
    pub const OPTIMIZER: &str = "optimizer";
    /// The EMA weights in FiT's checkpoint layout (f32 safetensors; what sampling uses).
    pub const EMA: &str = "ema.safetensors";
}

/// `state.json`. Losses are f32 values (the loss tensor's), stored as f32 so they read back exactly.
#[derive(Serialize, Deserialize)]
struct State {
    config: TrainConfig,
    step: u64,
    losses: Vec<f32>,
}

type Rec = NamedMpkFileRecorder<FullPrecisionSettings>;

impl<B: AutodiffBackend> Trainer<B> {
    /// A new run: the model initialised from `config.seed` ([`FitV2::init`]), the EMA at the
    /// same weights, step 0.
    pub fn new(config: TrainConfig, device: &B::Device) -> Result<Self, TrainingError> {
        config.validate()?;
        let model = FitV2::<B>::init(&config.model, config.seed, device)?;
        let ema = Ema::new(model.valid());
        Self::assemble(config, model, ema, 0, Vec::new(), None, device)
    }

    fn assemble(
        config: TrainConfig,
        model: FitV2<B>,
        ema: Ema<FitV2<B::InnerBackend>>,
        step: u64,
        losses: Vec<f64>,
        optim_record: Option<PathBuf>,
        device: &B::Device,
    ) -> Result<Self, TrainingError> {
        let clip = (config.grad_clip > 0.0).then_some(
            burn::grad_clipping::GradientClippingConfig::Norm(config.grad_clip as f32),
        );
        let mut optim = AdamWConfig::new()
            .with_weight_decay(config.weight_decay as f32)
            .with_grad_clipping(clip)
            .init::<B, FitV2<B>>();
        if let Some(path) = optim_record {
            let record = guarded(&path, || Rec::new().load(path.clone(), device))?
                .map_err(|source| TrainingError::Record { path, source })?;
            optim = optim.load_record(record);
        }
        let n = config.tokens_per_side();
        let rope = fit_rope(
            &config.model,
            FitPosition::from(dype_core::Method::Base),
            true,
        )?;
        let rotary = RotaryEmbedding::<B>::new(
            rope,
            fit_grid(n, n, n * n)?,
            PairLayout::Interleaved,
            device,
        )?;
        Ok(Trainer {
            config,
            model,
            optim,
            ema,
            rotary,
            device: device.clone(),
            step,
            losses,
        })
    }

    /// Adds the cool-down phase `[start, end]` to a run (a phase it already has is accepted as is).
    /// A new phase may not start before the current step or the end of the last phase, so the run
    /// stays the one a fresh run with all its phases makes.
    pub fn add_cooldown(&mut self, start: u64, end: u64) -> Result<(), TrainingError> {
        if self.config.cooldown.contains(&[start, end]) {
            return Ok(());
        }
        if start < self.step {
            return Err(TrainingError::Config(
                "a cool-down may not start before the current step (it would change the past)",
            ));
        }
        let mut config = self.config.clone();
        config.cooldown.push([start, end]);
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The loss of every step taken.
    pub fn losses(&self) -> &[f64] {
        &self.losses
    }

    /// The trained weights.
    pub fn model(&self) -> &FitV2<B> {
        &self.model
    }

    /// The EMA weights (sampling uses these).
    pub fn ema(&self) -> &FitV2<B::InnerBackend> {
        self.ema.model()
    }

    /// The loss of the model on `batch` without a step (no graph kept).
    pub fn loss_on(&self, batch: &Batch) -> Result<f64, TrainingError> {
        let model = self.model.valid();
        let (x1, x0, t, y) = tensors::<B::InnerBackend>(&self.config, batch, &self.device)?;
        let n = self.config.tokens_per_side();
        let rope = fit_rope(
            &self.config.model,
            FitPosition::from(dype_core::Method::Base),
            true,
        )?;
        let rotary = RotaryEmbedding::<B::InnerBackend>::new(
            rope,
            fit_grid(n, n, n * n)?,
            PairLayout::Interleaved,
            &self.device,
        )?;
        let loss = flow_matching_loss(&model, x1, x0, t, y, rotary.tables())?;
        scalar(loss)
    }

    /// One optimiser step on `batch` (use [`Trainer::step`] for the run's own batches); returns
    /// the loss before the step.
    pub fn step_on(&mut self, batch: &Batch) -> Result<f64, TrainingError> {
        let (x1, x0, t, y) = tensors::<B>(&self.config, batch, &self.device)?;
        let loss = flow_matching_loss(&self.model, x1, x0, t, y, self.rotary.tables())?;
        let value = scalar(loss.clone())?;
        if !value.is_finite() {
            return Err(TrainingError::NonFinite {
                step: self.step,
                loss: value,
            });
        }
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let lr = self.config.learning_rate_at(self.step);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.ema
            .update(&self.model.valid(), self.config.ema_decay_at(self.step))?;
        self.step += 1;
        self.losses.push(value);
        Ok(value)
    }

    /// One step on the run's next batch ([`batch`] of the current step); returns its loss.
    pub fn step(&mut self) -> Result<f64, TrainingError> {
        let b = batch(&self.config, self.step)?;
        self.step_on(&b)
    }

    /// Saves the run to `dir` (created if needed): [`files::STATE`], [`files::MODEL`],
    /// [`files::OPTIMIZER`] and [`files::EMA`] (with the config and step in its metadata).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), TrainingError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| TrainingError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let rec = Rec::new();
        let path = dir.join(files::MODEL);
        self.model
            .clone()
            .save_file(path.clone(), &rec)
            .map_err(|source| TrainingError::Record { path, source })?;
        let path = dir.join(files::OPTIMIZER);
        rec.record(self.optim.to_record(), path.clone())
            .map_err(|source| TrainingError::Record { path, source })?;
        save_ema(
            self.ema.model(),
            &self.config,
            self.step,
            &dir.join(files::EMA),
        )?;
        let state = State {
            config: self.config.clone(),
            step: self.step,
            losses: self.losses.iter().map(|&l| l as f32).collect(),
        };
        let path = dir.join(files::STATE);
        let json = serde_json::to_string(&state).map_err(|source| TrainingError::State {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, json).map_err(|source| TrainingError::Io { path, source })
    }

    /// Continues the run saved in `dir` by [`Trainer::save`].
    pub fn resume(dir: impl AsRef<Path>, device: &B::Device) -> Result<Self, TrainingError> {
        let dir = dir.as_ref();
        let state: State = read_json(&dir.join(files::STATE))?;
        state.config.validate()?;
        if state.losses.len() as u64 != state.step {
            return Err(TrainingError::Config(
                "state.json: one loss per step expected",
            ));
        }
        let path = dir.join(files::MODEL);
        let fresh = FitV2::<B>::random(&state.config.model, device)?;
        let expected = param_shapes(&fresh);
        // burn's record loader panics on some malformed records (a wrong block count, a corrupt
        // parameter id); those become `TrainingError::Corrupt`.
        let model = guarded(&path, || fresh.load_file(path.clone(), &Rec::new(), device))?
            .map_err(|source| TrainingError::Record {
                path: path.clone(),
                source,
            })?;
        if param_shapes(&model) != expected {
            return Err(TrainingError::Corrupt { path });
        }
        let ema = FitV2::<B::InnerBackend>::load(
            dir.join(files::EMA),
            &state.config.model,
            FloatDType::F32,
            device,
        )?;
        Self::assemble(
            state.config,
            model,
            Ema::new(ema),
            state.step,
            state.losses.into_iter().map(f64::from).collect(),
            Some(dir.join(files::OPTIMIZER)),
            device,
        )
    }
}

/// Reads a JSON file written by this module, with the path in any error.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrainingError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainingError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| TrainingError::State {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs a burn record load, turning a panic inside burn into [`TrainingError::Corrupt`].
fn guarded<T>(path: &Path, load: impl FnOnce() -> T) -> Result<T, TrainingError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)).map_err(|_| {
        TrainingError::Corrupt {
            path: path.to_path_buf(),
        }
    })
}

/// The shapes of a module's float parameters, in visit order.
fn param_shapes<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<usize>> {
    struct Shapes(Vec<Vec<usize>>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            self.0.push(param.lazy_shape().dims::<D>().to_vec());
        }
    }
    let mut shapes = Shapes(Vec::new());
    module.visit(&mut shapes);
    shapes.0
}

/// Writes EMA weights as FiT-layout safetensors with the training config (model included) and
/// the step in the header, as one JSON value under the key `dype` (`{"train": …, "step": …}`).
pub fn save_ema<B: Backend>(
    model: &FitV2<B>,
    config: &TrainConfig,
    step: u64,
    path: &Path,
) -> Result<(), TrainingError> {
    let info = BundleInfo {
        train: config.clone(),
        step,
        command: None,
    };
    let meta = HashMap::from([("dype".to_string(), json(&info))]);
    model.save(path, Some(meta))?;
    Ok(())
}

/// What a trained-model bundle says about itself (`config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// The training configuration (the model's included).
    pub train: TrainConfig,
    /// Optimiser steps the weights had.
    pub step: u64,
    /// The command that trained it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// The files of a trained-model bundle.
pub mod bundle {
    /// The EMA weights (f32 safetensors, FiT key layout).
    pub const WEIGHTS: &str = "model.safetensors";
    /// [`super::BundleInfo`] as JSON.
    pub const CONFIG: &str = "config.json";
}

/// Writes a trained-model bundle to `dir`: [`bundle::WEIGHTS`] and [`bundle::CONFIG`].
pub fn export_bundle<B: Backend>(
    model: &FitV2<B>,
    info: &BundleInfo,
    dir: &Path,
) -> Result<(), TrainingError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainingError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    save_ema(model, &info.train, info.step, &dir.join(bundle::WEIGHTS))?;
    let path = dir.join(bundle::CONFIG);
    let text = serde_json::to_string_pretty(info).map_err(|source| TrainingError::State {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, text + "\n").map_err(|source| TrainingError::Io { path, source })
}

/// Loads a trained-model bundle written by [`export_bundle`] (every key and shape checked against
/// the config's key map) in `dtype` on `device`.
pub fn load_bundle<B: Backend>(
    dir: &Path,
    dtype: FloatDType,
    device: &B::Device,
) -> Result<(FitV2<B>, BundleInfo), TrainingError> {
    let info: BundleInfo = read_json(&dir.join(bundle::CONFIG))?;
    info.train.validate()?;
    let model = FitV2::load(dir.join(bundle::WEIGHTS), &info.train.model, dtype, device)?;
    Ok((model, info))
}

/// JSON text of a config (these types always serialise).
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

type Tensors<B> = (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 1>, Tensor<B, 1, Int>);

/// The batch as device tensors: data and noise as tokens `[B, N, 3·p²]`, times, labels.
fn tensors<B: Backend>(
    config: &TrainConfig,
    batch: &Batch,
    device: &B::Device,
) -> Result<Tensors<B>, TrainingError> {
    let (b, s) = (batch.labels.len(), config.image_size);
    let n = 3 * s * s;
    if b == 0 || batch.images.len() != b * n || batch.noise.len() != b * n || batch.t.len() != b {
        return Err(TrainingError::Config(
            "batch parts do not agree with each other and the image size",
        ));
    }
    let classes = config.model.num_classes as i64;
    if batch.labels.iter().any(|l| !(0..=classes).contains(l)) {
        return Err(TrainingError::Config(
            "batch labels must be classes or the null class (0..=num_classes)",
        ));
    }
    let p = config.model.patch_size;
    let image = |v: &[f32]| {
        patchify(
            Tensor::<B, 4>::from_data(TensorData::new(v.to_vec(), [b, 3, s, s]), device),
            p,
        )
    };
    let t = Tensor::<B, 1>::from_data(TensorData::new(batch.t.clone(), [b]), device);
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(batch.labels.clone(), [b]), device);
    Ok((image(&batch.images), image(&batch.noise), t, y))
}

fn scalar<B: Backend>(loss: Tensor<B, 1>) -> Result<f64, TrainingError> {
    let v = loss
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|_| TrainingError::ReadBack("loss"))?;
    v.first()
        .map(|x| x.elem::<f64>())
        .ok_or(TrainingError::ReadBack("loss"))
}

/// How a pixel-space shapes model is sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleOptions {
    /// Euler steps.
    pub steps: usize,
    /// Classifier-free guidance scale.
    pub cfg_scale: f64,
    /// Positional method.
    pub position: FitPosition,
}

impl Default for SampleOptions {
    /// The quality gate's sampler: Euler, 32 steps, guidance 1.5, base RoPE.
    fn default() -> Self {
        SampleOptions {
            steps: 32,
            cfg_scale: 1.5,
            position: FitPosition::from(dype_core::Method::Base),
        }
    }
}

/// Samples one `height × width` image of `class` from a pixel-space shapes model (FiT's Euler ODE
/// from noise seeded by `seed`) as a [`crate::shapes::Image`] in [0, 1].
pub fn sample<B: Backend>(
    model: &FitV2<B>,
    class: usize,
    height: usize,
    width: usize,
    seed: u64,
    options: &SampleOptions,
    device: &B::Device,
) -> Result<Image, TrainingError> {
    let request = FitGenerate {
        class,
        height,
        width,
        position: options.position,
        decouple: true,
        sampler: FitSampler::Euler {
            steps: options.steps,
        },
        cfg_scale: options.cfg_scale,
        guided: GuidedChannels::All,
        seed,
    };
    let pixels = generate_pixels(model, &request, device, |_| {})?;
    to_image(pixels)
}

/// A sampled `[1, 3, H, W]` tensor in [−1, 1] as an [`Image`] in [0, 1] (clamped; the first
/// sample of a batch).
pub fn to_image<B: Backend>(pixels: Tensor<B, 4>) -> Result<Image, TrainingError> {
    to_images(pixels.narrow(0, 0, 1))?
        .pop()
        .ok_or(TrainingError::ReadBack("image"))
}

/// Every sample of a `[B, 3, H, W]` tensor in [−1, 1] as an [`Image`] in [0, 1] (clamped).
pub fn to_images<B: Backend>(pixels: Tensor<B, 4>) -> Result<Vec<Image>, TrainingError> {
    Ok(to_images_raw(pixels)?.0)
}

/// [`to_images`], and the tensor's raw values as read back (one copy from the device).
pub fn to_images_raw<B: Backend>(
    pixels: Tensor<B, 4>,
) -> Result<(Vec<Image>, Vec<f32>), TrainingError> {
    let [b, c, height, width] = pixels.dims();
    if c != 3 {
        return Err(TrainingError::Config("the model does not output RGB"));
    }
    let raw = pixels
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|_| TrainingError::ReadBack("image"))?;
    let n = 3 * height * width;
    let images = (0..b)
        .filter_map(|i| raw.get(i * n..(i + 1) * n))
        .map(|d| Image {
            height,
            width,
            data: d
                .iter()
                .map(|v| ((v + 1.0) * 0.5).clamp(0.0, 1.0))
                .collect(),
        })
        .collect();
    Ok((images, raw))
}

/// The quality gate, fixed before training: at the training size, `samples_per_class` seeds per
/// class sampled with [`SampleOptions::default`] must show exactly one object of the class's
/// colour with an area fraction inside the renderer's range ([`shapes::passes`]) for at least
/// [`GATE_THRESHOLD`] of all samples.
#[derive(Debug, Clone, PartialEq)]
pub struct GateReport {
    /// Samples that passed, per class.
    pub passed: Vec<usize>,
    /// Samples drawn per class.
    pub per_class: usize,
    /// Every sample's detection, class-major.
    pub detections: Vec<Detection>,
}

/// The fraction of samples the gate needs (0.9).
pub const GATE_THRESHOLD: f64 = 0.9;

impl GateReport {
    /// The fraction of samples that passed.
    pub fn pass_rate(&self) -> f64 {
        let total = self.per_class * self.passed.len();
        self.passed.iter().sum::<usize>() as f64 / total.max(1) as f64
    }

    /// Whether the gate is met.
    pub fn is_met(&self) -> bool {
        self.pass_rate() >= GATE_THRESHOLD
    }
}

/// Runs the quality gate on `model` at `size × size` (seeds `0..samples_per_class` per class).
pub fn quality_gate<B: Backend>(
    model: &FitV2<B>,
    size: usize,
    samples_per_class: usize,
    device: &B::Device,
) -> Result<GateReport, TrainingError> {
    let render = RenderConfig::default();
    let options = SampleOptions::default();
    let mut report = GateReport {
        passed: vec![0; CLASSES],
        per_class: samples_per_class,
        detections: Vec::new(),
    };
    for class in 0..CLASSES {
        let range = shapes::area_range(&render, class, size, size, 256)?;
        for seed in 0..samples_per_class as u64 {
            let image = sample(model, class, size, size, seed, &options, device)?;
            let d = shapes::detect(&image, class, MIN_AREA_FRACTION)?;
            if shapes::passes(&d, range) {
                report.passed[class] += 1;
            }
            report.detections.push(d);
        }
    }
    Ok(report)
}
