//! Prompt tokenizers of FLUX.1's two text encoders, read from HuggingFace `tokenizer.json` files.
//!
//! * [`T5Tokenizer`]: the prompt's pieces, then `</s>`, padded with `<pad>` to a fixed length
//!   (512 for FLUX.1-dev, 256 for schnell); longer prompts keep their first `max_length − 1`
//!   pieces and still end with `</s>`, as `tokenizer(..., truncation=True)` does in diffusers.
//! * [`ClipTokenizer`]: `<|startoftext|> … <|endoftext|>` padded with `<|endoftext|>` to 77 and
//!   truncated the same way.
//!
//! Both return the ids and, when the prompt was cut, the text that was dropped so callers can warn
//! (diffusers logs it and goes on).

use std::path::{Path, PathBuf};

use thiserror::Error;
use tokenizers::Tokenizer;

/// CLIP's context length.
pub const CLIP_MAX_LENGTH: usize = 77;
/// FLUX.1-dev's T5 sequence length.
pub const T5_MAX_LENGTH: usize = 512;

/// Tokenizer errors.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TextError {
    /// The tokenizer file could not be read or parsed.
    #[error("tokenizer {}: {source}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// The tokenizers crate's error.
        #[source]
        source: tokenizers::Error,
    },
    /// A special token the encoder needs is not in the vocabulary.
    #[error("tokenizer {}: special token `{token}` is not in the vocabulary", path.display())]
    MissingToken {
        /// The file.
        path: PathBuf,
        /// The token.
        token: &'static str,
    },
    /// The requested length cannot hold the special tokens.
    #[error("tokenizer: max_length {max_length} is too short (at least {min} tokens)")]
    Length {
        /// Requested length.
        max_length: usize,
        /// The minimum.
        min: usize,
    },
    /// Encoding or decoding failed.
    #[error("tokenizer: {0}")]
    Encode(#[source] tokenizers::Error),
}

/// A tokenized prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Token ids, exactly `max_length` of them (special tokens and padding included).
    pub ids: Vec<u32>,
    /// How many leading ids are not padding (special tokens included).
    pub len: usize,
    /// The text cut off by truncation (`None` when the prompt fit).
    pub dropped: Option<String>,
}

impl Tokens {
    /// The ids as `i64` (the dtype burn's `Int` tensors take from host data).
    pub fn ids_i64(&self) -> Vec<i64> {
        self.ids.iter().map(|&i| i as i64).collect()
    }
}

fn open(path: &Path) -> Result<Tokenizer, TextError> {
    Tokenizer::from_file(path).map_err(|source| TextError::Load {
        path: path.to_path_buf(),
        source,
    })
}

fn special(t: &Tokenizer, path: &Path, token: &'static str) -> Result<u32, TextError> {
    t.token_to_id(token).ok_or_else(|| TextError::MissingToken {
        path: path.to_path_buf(),
        token,
    })
}

/// The prompt's ids without special tokens.
fn content(t: &Tokenizer, prompt: &str) -> Result<Vec<u32>, TextError> {
    let enc = t.encode(prompt, false).map_err(TextError::Encode)?;
    Ok(enc.get_ids().to_vec())
}

/// Keeps the first `room` content ids; decodes the rest as the dropped text.
fn cut(
    t: &Tokenizer,
    mut ids: Vec<u32>,
    room: usize,
) -> Result<(Vec<u32>, Option<String>), TextError> {
    if ids.len() <= room {
        return Ok((ids, None));
    }
    let rest = ids.split_off(room);
    let text = t.decode(&rest, true).map_err(TextError::Encode)?;
    Ok((ids, Some(text)))
}

/// T5 (SentencePiece unigram) tokenizer: `pieces… </s> <pad>…`.
#[derive(Debug, Clone)]
pub struct T5Tokenizer {
    inner: Tokenizer,
    eos: u32,
    pad: u32,
}

impl T5Tokenizer {
    /// Reads a `tokenizer.json` (FLUX's `tokenizer_2/tokenizer.json`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TextError> {
        let path = path.as_ref();
        let inner = open(path)?;
        let eos = special(&inner, path, "</s>")?;
        let pad = special(&inner, path, "<pad>")?;
        Ok(T5Tokenizer { inner, eos, pad })
    }

    /// The `</s>` id.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// The `<pad>` id.
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// Tokenizes `prompt` to exactly `max_length` ids (at least 1).
    pub fn encode(&self, prompt: &str, max_length: usize) -> Result<Tokens, TextError> {
        if max_length < 1 {
            return Err(TextError::Length { max_length, min: 1 });
        }
        let (mut ids, dropped) = cut(&self.inner, content(&self.inner, prompt)?, max_length - 1)?;
        ids.push(self.eos);
        let len = ids.len();
        ids.resize(max_length, self.pad);
        Ok(Tokens { ids, len, dropped })
    }
}

/// CLIP (byte-level BPE) tokenizer: `<|startoftext|> … <|endoftext|> <|endoftext|>…`.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: u32,
    eos: u32,
}

impl ClipTokenizer {
    /// Reads a `tokenizer.json` (FLUX's `tokenizer/tokenizer.json`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TextError> {
        let path = path.as_ref();
        let inner = open(path)?;
        let bos = special(&inner, path, "<|startoftext|>")?;
        let eos = special(&inner, path, "<|endoftext|>")?;
        Ok(ClipTokenizer { inner, bos, eos })
    }

    /// The `<|startoftext|>` id.
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// The `<|endoftext|>` id (also the padding).
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// Tokenizes `prompt` to exactly `max_length` ids (at least 2; [`CLIP_MAX_LENGTH`] for FLUX).
    pub fn encode(&self, prompt: &str, max_length: usize) -> Result<Tokens, TextError> {
        if max_length < 2 {
            return Err(TextError::Length { max_length, min: 2 });
        }
        let (body, dropped) = cut(&self.inner, content(&self.inner, prompt)?, max_length - 2)?;
        let mut ids = Vec::with_capacity(max_length);
        ids.push(self.bos);
        ids.extend(body);
        ids.push(self.eos);
        let len = ids.len();
        ids.resize(max_length, self.eos);
        Ok(Tokens { ids, len, dropped })
    }
}
