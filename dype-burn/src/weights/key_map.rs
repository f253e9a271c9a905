//! [`KeyMap`]: the parameters a model declares and the stored keys it ignores.

use std::collections::HashMap;

#[cfg(doc)]
use super::checkpoint::Checkpoint;

/// How a declared tensor is stored and turned into a burn tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamKind {
    /// Loaded with the stored shape.
    Plain,
    /// A PyTorch `Linear` weight stored `[out, in]`, loaded transposed as burn's `[in, out]`.
    LinearWeight,
    /// Like [`ParamKind::LinearWeight`], but a 1×1 convolution weight `[out, in, 1, 1]` is also
    /// accepted (and squeezed), as in LDM/BFL VAE attention and some old diffusers files.
    LinearWeightOrConv1x1,
}

/// One declared parameter: checkpoint key, expected stored shape, and how to load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Checkpoint key.
    pub key: String,
    /// Expected stored shape (PyTorch layout: a `Linear` weight is `[out, in]`).
    pub shape: Vec<usize>,
    /// Loading rule.
    pub kind: ParamKind,
}

impl ParamSpec {
    /// Whether a stored shape satisfies this spec.
    pub fn accepts(&self, stored: &[usize]) -> bool {
        if stored == self.shape.as_slice() {
            return true;
        }
        self.kind == ParamKind::LinearWeightOrConv1x1
            && stored.len() == 4
            && stored[2] == 1
            && stored[3] == 1
            && stored[..2] == self.shape[..]
    }

    /// The shape of the burn tensor built from it (`[in, out]` for linear weights).
    pub fn burn_shape(&self) -> Vec<usize> {
        match self.kind {
            ParamKind::Plain => self.shape.clone(),
            ParamKind::LinearWeight | ParamKind::LinearWeightOrConv1x1 => {
                self.shape.iter().rev().copied().collect()
            }
        }
    }
}

/// The parameters a model needs from a checkpoint, and the stored keys it deliberately ignores.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    pub(super) specs: Vec<ParamSpec>,
    pub(super) index: HashMap<String, usize>,
    pub(super) conflicts: Vec<(String, Vec<usize>, Vec<usize>)>,
    ignored_prefixes: Vec<String>,
    scope: Option<String>,
}

pub(super) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl KeyMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares one parameter. Declaring the same key again with the same shape and kind is a
    /// no-op; with a different one it is reported by [`Checkpoint::validate`].
    pub fn declare(
        &mut self,
        key: impl Into<String>,
        shape: &[usize],
        kind: ParamKind,
    ) -> &mut Self {
        let key = key.into();
        if let Some(&i) = self.index.get(&key) {
            let prev = &self.specs[i];
            if prev.shape != shape || prev.kind != kind {
                self.conflicts
                    .push((key, prev.shape.clone(), shape.to_vec()));
            }
            return self;
        }
        self.index.insert(key.clone(), self.specs.len());
        self.specs.push(ParamSpec {
            key,
            shape: shape.to_vec(),
            kind,
        });
        self
    }

    /// Declares a tensor loaded with its stored shape.
    pub fn tensor(&mut self, key: impl Into<String>, shape: &[usize]) -> &mut Self {
        self.declare(key, shape, ParamKind::Plain)
    }

    /// Declares `{prefix}.weight` (`[d_out, d_in]`) and, with `bias`, `{prefix}.bias`
    /// (`[d_out]`) of a PyTorch `Linear`.
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> &mut Self {
        self.declare(
            join(prefix, "weight"),
            &[d_out, d_in],
            ParamKind::LinearWeight,
        );
        if bias {
            self.tensor(join(prefix, "bias"), &[d_out]);
        }
        self
    }

    /// Like [`KeyMap::linear`], also accepting a `[d_out, d_in, 1, 1]` 1×1-conv weight.
    pub fn linear_or_conv1x1(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> &mut Self {
        self.declare(
            join(prefix, "weight"),
            &[d_out, d_in],
            ParamKind::LinearWeightOrConv1x1,
        );
        if bias {
            self.tensor(join(prefix, "bias"), &[d_out]);
        }
        self
    }

    /// Declares `{prefix}.weight` (`[c_out, c_in, k0, k1]`) and optionally `{prefix}.bias` of a
    /// `Conv2d` (groups = 1).
    pub fn conv2d(
        &mut self,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        bias: bool,
    ) -> &mut Self {
        self.tensor(join(prefix, "weight"), &[c_out, c_in, kernel[0], kernel[1]]);
        if bias {
            self.tensor(join(prefix, "bias"), &[c_out]);
        }
        self
    }

    /// Declares the affine `{prefix}.weight` and `{prefix}.bias` (`[channels]`) of a
    /// GroupNorm/LayerNorm.
    pub fn norm(&mut self, prefix: &str, channels: usize) -> &mut Self {
        self.tensor(join(prefix, "weight"), &[channels]);
        self.tensor(join(prefix, "bias"), &[channels])
    }

    /// Stored keys starting with `prefix` are ignored (not reported as unexpected), e.g. a
    /// VAE decoder ignores `encoder.` and `quant_conv.`.
    pub fn ignore_prefix(&mut self, prefix: impl Into<String>) -> &mut Self {
        self.ignored_prefixes.push(prefix.into());
        self
    }

    /// Stored keys that do **not** start with `prefix` are ignored: the model lives under
    /// `prefix` in a larger checkpoint (e.g. `first_stage_model.` in an LDM file).
    pub fn only_within(&mut self, prefix: impl Into<String>) -> &mut Self {
        self.scope = Some(prefix.into());
        self
    }

    /// Whether an undeclared stored key is covered by an ignore rule.
    pub fn is_ignored(&self, key: &str) -> bool {
        if let Some(scope) = &self.scope
            && !key.starts_with(scope.as_str())
        {
            return true;
        }
        self.ignored_prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()))
    }

    /// The declaration of `key`.
    pub fn get(&self, key: &str) -> Option<&ParamSpec> {
        self.index.get(key).map(|&i| &self.specs[i])
    }

    /// Every declaration, in declaration order.
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// Number of declared parameters.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}
