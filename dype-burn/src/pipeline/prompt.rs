//! Prompt encoding for FLUX.1 (feature `text`): the prompt is tokenized for T5 and CLIP and
//! encoded into the [`FluxConditioning`] the DiT takes (T5's last hidden states, CLIP's pooled
//! output), both cast to f32.
//!
//! Load the encoders once ([`PromptEncoder::load`]), encode every prompt, and drop the encoder
//! before sampling when device memory is short (T5-XXL is 9.5 GB in bf16).

use crate::models::Pretrained;
use std::path::PathBuf;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};

use super::PipelineError;
use super::flux::FluxConditioning;
use crate::models::text::{
    CLIP_MAX_LENGTH, ClipConfig, ClipTextModel, ClipTokenizer, T5Config, T5Encoder, T5Tokenizer,
    Tokens,
};

/// Where the two encoders and their tokenizers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptFiles {
    /// T5 encoder checkpoint (file, folder or `*.safetensors.index.json`).
    pub t5: PathBuf,
    /// T5 `tokenizer.json`.
    pub t5_tokenizer: PathBuf,
    /// CLIP text model checkpoint.
    pub clip: PathBuf,
    /// CLIP `tokenizer.json`.
    pub clip_tokenizer: PathBuf,
}

/// An encoded prompt and its tokens (whose `dropped` text says what truncation cut).
#[derive(Debug, Clone)]
pub struct EncodedPrompt<B: Backend> {
    /// The DiT's text conditioning, f32, batch 1.
    pub conditioning: FluxConditioning<B>,
    /// T5's tokens.
    pub t5_tokens: Tokens,
    /// CLIP's tokens.
    pub clip_tokens: Tokens,
}

/// T5 and CLIP with their tokenizers, ready to encode prompts.
#[derive(Debug)]
pub struct PromptEncoder<B: Backend> {
    t5: T5Encoder<B>,
    clip: ClipTextModel<B>,
    t5_tokenizer: T5Tokenizer,
    clip_tokenizer: ClipTokenizer,
    t5_length: usize,
    device: B::Device,
}

impl<B: Backend> PromptEncoder<B> {
    /// Loads the tokenizers and both encoders (validating each checkpoint against its config).
    /// `t5_length` is T5's padded sequence length (512 for FLUX.1-dev, 256 for schnell). T5
    /// overflows in f16, so an f16 request runs both encoders in f32.
    pub fn load(
        files: &PromptFiles,
        t5: &T5Config,
        clip: &ClipConfig,
        t5_length: usize,
        dtype: FloatDType,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        let t5_tokenizer = T5Tokenizer::from_file(&files.t5_tokenizer)?;
        let clip_tokenizer = ClipTokenizer::from_file(&files.clip_tokenizer)?;
        let dtype = if dtype == FloatDType::F16 {
            FloatDType::F32
        } else {
            dtype
        };
        Ok(PromptEncoder {
            t5: T5Encoder::load(&files.t5, t5, dtype, device)?,
            clip: ClipTextModel::load(&files.clip, clip, dtype, device)?,
            t5_tokenizer,
            clip_tokenizer,
            t5_length,
            device: device.clone(),
        })
    }

    /// The encoders, for callers that keep them (`into_parts`) or free them (drop).
    pub fn into_parts(self) -> (T5Encoder<B>, ClipTextModel<B>) {
        (self.t5, self.clip)
    }

    /// Tokenizes `prompt` (T5: `t5_length`, CLIP: 77) and encodes it.
    pub fn encode(&self, prompt: &str) -> Result<EncodedPrompt<B>, PipelineError> {
        let t5_tokens = self.t5_tokenizer.encode(prompt, self.t5_length)?;
        let clip_tokens = self.clip_tokenizer.encode(prompt, CLIP_MAX_LENGTH)?;
        let ids = |t: &Tokens| {
            let data = TensorData::new(t.ids_i64(), [1, t.ids.len()]);
            Tensor::<B, 2, Int>::from_data(data, &self.device)
        };
        let t5 = self.t5.forward(ids(&t5_tokens))?.cast(DType::F32);
        let pooled = self
            .clip
            .forward(ids(&clip_tokens))?
            .pooled
            .cast(DType::F32);
        Ok(EncodedPrompt {
            conditioning: FluxConditioning { t5, pooled },
            t5_tokens,
            clip_tokens,
        })
    }
}
