//! Parity-runner plumbing shared by the member crates' tests (`dype-core/tests/parity_rope.rs`,
//! `dype-burn/tests/parity_*.rs`, the loaders), included by each with
//! `#[path = "../../tests/support/mod.rs"] mod support;`: fixture resolution (`DYPE_FIXTURES_DIR`),
//! the report line, reference-tensor files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The fixtures root: `$DYPE_FIXTURES_DIR` when set, else the workspace's `tests/fixtures` (the
/// one set of reference files every crate's runners read; found above the crate's manifest).
pub fn fixtures_root() -> PathBuf {
    match std::env::var_os("DYPE_FIXTURES_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|dir| dir.join("tests").join("fixtures"))
            .find(|dir| dir.join("README.md").is_file())
            .expect("the workspace's tests/fixtures (or set DYPE_FIXTURES_DIR)"),
    }
}

/// Reads and parses a fixture JSON (`sub` relative to the root, e.g. `rope/fit_rope.json`).
/// A missing file is a failure, never a skip.
pub fn load_json(sub: &str) -> (PathBuf, serde_json::Value) {
    let path = fixtures_root().join(sub);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse fixture {}: {e}", path.display()));
    (path, value)
}

/// Tally of one parity file or section.
#[derive(Debug)]
pub struct Tally {
    label: String,
    checks: usize,
    failed: usize,
    max_err: f64,
    failures: Vec<String>,
}

impl Tally {
    /// A new tally for `label` (file name or `file#section`).
    pub fn new(label: &str) -> Self {
        Tally {
            label: label.to_string(),
            checks: 0,
            failed: 0,
            max_err: 0.0,
            failures: Vec::new(),
        }
    }

    /// Records one check: `err` in the measure its tolerance `tol` uses.
    pub fn check(&mut self, what: impl FnOnce() -> String, err: f64, tol: f64) {
        self.checks += 1;
        if std::env::var_os("DYPE_PARITY_VERBOSE").is_some() {
            println!("  check {}: err {err:e} (tol {tol:e})", what());
            return self.record(err, tol, String::new);
        }
        self.record(err, tol, what)
    }

    fn record(&mut self, err: f64, tol: f64, what: impl FnOnce() -> String) {
        let err = if err.is_nan() { f64::INFINITY } else { err };
        if err > self.max_err {
            self.max_err = err;
        }
        if err > tol || err.is_nan() {
            self.failed += 1;
            if self.failures.len() < 20 {
                self.failures
                    .push(format!("{}: err {err:e} > tol {tol:e}", what()));
            }
        }
    }

    /// Records a case that could not be computed at all.
    pub fn fail(&mut self, what: String) {
        self.checks += 1;
        self.failed += 1;
        self.max_err = f64::INFINITY;
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }

    /// Prints the report line, then asserts `F == 0` and `N > 0`.
    pub fn finish(self) {
        println!(
            "parity {}: {} cases, {} failed, max err {:e}",
            self.label, self.checks, self.failed, self.max_err
        );
        for f in &self.failures {
            println!("  FAILED {f}");
        }
        assert!(
            self.checks > 0,
            "parity {}: no checks were made",
            self.label
        );
        assert_eq!(
            self.failed, 0,
            "parity {}: {} of {} checks out of tolerance",
            self.label, self.failed, self.checks
        );
    }
}

/// Largest relative error `|a − b| / |b|` (absolute where `|b| < 1e-30`).
pub fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if y.abs() < 1e-30 {
                (x - y).abs()
            } else {
                ((x - y) / y).abs()
            }
        })
        .fold(0.0, f64::max)
}

/// Largest absolute error.
pub fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// JSON array of numbers → Vec<f64> (panics with the key name if malformed: a malformed fixture is a failure).
pub fn f64s(v: &serde_json::Value, key: &str) -> Vec<f64> {
    v.get(key)
        .and_then(|x| x.as_array())
        .unwrap_or_else(|| panic!("fixture field `{key}` missing or not an array"))
        .iter()
        .map(|x| {
            x.as_f64()
                .unwrap_or_else(|| panic!("fixture field `{key}` holds a non-number"))
        })
        .collect()
}

/// Number field.
pub fn num(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key)
        .and_then(|x| x.as_f64())
        .unwrap_or_else(|| panic!("fixture field `{key}` missing or not a number"))
}

/// Optional number field (absent or null → None).
pub fn opt_num(v: &serde_json::Value, key: &str) -> Option<f64> {
    v.get(key).and_then(|x| x.as_f64())
}

/// String field.
pub fn string<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(|x| x.as_str())
        .unwrap_or_else(|| panic!("fixture field `{key}` missing or not a string"))
}

/// Bool field with a default.
pub fn flag(v: &serde_json::Value, key: &str, default: bool) -> bool {
    v.get(key).and_then(|x| x.as_bool()).unwrap_or(default)
}

/// A safetensors file of reference tensors (inputs and outputs of model cases).
pub struct Cases {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Cases {
    /// Reads the file (a missing file is a failure).
    pub fn open(path: &Path) -> Self {
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Cases {
            path: path.to_path_buf(),
            bytes,
        }
    }

    fn raw(&self, key: &str) -> (safetensors::Dtype, Vec<usize>, Vec<u8>) {
        let st = safetensors::SafeTensors::deserialize(&self.bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        let v = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("{}: tensor `{key}`: {e}", self.path.display()));
        (v.dtype(), v.shape().to_vec(), v.data().to_vec())
    }

    /// Whether `key` exists.
    pub fn has(&self, key: &str) -> bool {
        safetensors::SafeTensors::deserialize(&self.bytes)
            .map(|st| st.tensor(key).is_ok())
            .unwrap_or(false)
    }

    /// A float tensor as f32 values and its shape.
    pub fn f32(&self, key: &str) -> (Vec<f32>, Vec<usize>) {
        let (dtype, shape, data) = self.raw(key);
        let vals = match dtype {
            safetensors::Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            d => panic!(
                "{}: tensor `{key}` has dtype {d:?}, expected a float",
                self.path.display()
            ),
        };
        (vals, shape)
    }

    /// An integer tensor as i64 values and its shape.
    pub fn i64(&self, key: &str) -> (Vec<i64>, Vec<usize>) {
        let (dtype, shape, data) = self.raw(key);
        let vals = match dtype {
            safetensors::Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            safetensors::Dtype::I32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
            d => panic!(
                "{}: tensor `{key}` has dtype {d:?}, expected an integer",
                self.path.display()
            ),
        };
        (vals, shape)
    }
}

/// Relative L2 error `‖a − b‖ / ‖b‖`.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

/// Resolves a file named by a fixture JSON relative to that JSON.
pub fn beside(json: &Path, name: &str) -> PathBuf {
    json.parent().unwrap_or(Path::new(".")).join(name)
}

/// Tensors of a safetensors file by key: (dtype, shape, little-endian bytes).
pub type Tensors = std::collections::BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>;

/// Rewrites the checkpoint `src` through `edit` into `dir/name` (loader failure-mode tests).
pub fn rewrite(src: &Path, dir: &Path, name: &str, edit: impl FnOnce(&mut Tensors)) -> PathBuf {
    let bytes = std::fs::read(src).expect("read fixture");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid fixture");
    let mut map: Tensors = st
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut map);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = map
        .iter()
        .map(|(k, (d, s, b))| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view"),
            )
        })
        .collect();
    let out = dir.join(name);
    safetensors::serialize_to_file(views, None, &out).expect("write");
    out
}

/// A fresh per-process, per-tag temporary directory.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dype-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
