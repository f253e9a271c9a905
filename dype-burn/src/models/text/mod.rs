//! FLUX.1's text side (feature `text`): the T5 v1.1 encoder, the CLIP text transformer and their
//! tokenizers (HuggingFace `tokenizer.json`).

mod clip;
mod t5;
mod tokenizer;

pub use clip::{ClipConfig, ClipOutput, ClipPooling, ClipTextModel};
pub use t5::{T5Config, T5Embeddings, T5Encoder, relative_position_bucket};
pub use tokenizer::{
    CLIP_MAX_LENGTH, ClipTokenizer, T5_MAX_LENGTH, T5Tokenizer, TextError, Tokens,
};
