//! Strict checkpoint reader: one test per failure mode, dtype casts, layouts and formats.

use std::path::{Path, PathBuf};

use burn::tensor::{DType, FloatDType, Tensor, bf16, f16};
use dype_burn::weights::{Checkpoint, CheckpointFormat, KeyMap, WeightDType, WeightsError};

type B = dype_burn::backend::Cpu;

/// One tensor to write: name, safetensors dtype name, shape, raw little-endian bytes.
struct Raw {
    name: &'static str,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32s(name: &'static str, shape: &[usize], v: &[f32]) -> Raw {
    Raw {
        name,
        dtype: "F32",
        shape: shape.to_vec(),
        bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn seq(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 * 0.25 - 1.0).collect()
}

/// Header JSON and data of a safetensors file (tensors stored in the given order).
fn st_bytes(tensors: &[Raw]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let start = data.len();
        data.extend_from_slice(&t.bytes);
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            r#""{}":{{"dtype":"{}","shape":{:?},"data_offsets":[{},{}]}}"#,
            t.name,
            t.dtype,
            t.shape,
            start,
            data.len()
        ));
    }
    header.push('}');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write test file");
    p
}

/// A small "model": fc Linear(2→3) with bias, a norm(3), plus an encoder tensor.
fn model_file(dir: &Path) -> PathBuf {
    let bytes = st_bytes(&[
        f32s("fc.weight", &[3, 2], &seq(6)),
        f32s("fc.bias", &[3], &[0.5, 0.25, 0.125]),
        f32s("norm.weight", &[3], &[1.0, 2.0, 3.0]),
        f32s("norm.bias", &[3], &[0.0, 0.0, 0.0]),
        f32s("encoder.x", &[2], &[9.0, 9.0]),
    ]);
    write(dir, "model.safetensors", &bytes)
}

fn model_map() -> KeyMap {
    let mut m = KeyMap::new();
    m.linear("fc", 2, 3, true)
        .norm("norm", 3)
        .ignore_prefix("encoder.");
    m
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data")
}

#[test]
fn strict_load_succeeds_and_transposes_linear() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path());
    let ckpt = Checkpoint::open(&path).unwrap();
    assert_eq!(ckpt.format(), CheckpointFormat::Safetensors);
    assert_eq!(ckpt.len(), 5);
    assert_eq!(ckpt.info("fc.weight").unwrap().dtype, WeightDType::F32);
    let map = model_map();
    let device = Default::default();
    let w = ckpt.load::<B>(&map, FloatDType::F32, &device).unwrap();
    let fc = w.linear("fc", true).unwrap();
    assert_eq!(fc.weight.dims(), [2, 3]);
    // PyTorch [out=3, in=2] row-major = seq(6); burn [in, out]: w[i][o] = pt[o][i]
    let pt = seq(6);
    let expect: Vec<f32> = (0..2)
        .flat_map(|i| (0..3).map(move |o| (i, o)))
        .map(|(i, o)| pt[o * 2 + i])
        .collect();
    assert_eq!(values(fc.weight.val()), expect);
    // y = x W^T + b for x = [1, 0]
    let x = Tensor::<B, 2>::from_data([[1.0f32, 0.0]], &device);
    let y = values(fc.forward(x));
    assert_eq!(y, vec![pt[0] + 0.5, pt[2] + 0.25, pt[4] + 0.125]);
    let norm = w.group_norm("norm", 1, 1e-6).unwrap();
    assert_eq!(values(norm.gamma.unwrap().val()), vec![1.0, 2.0, 3.0]);
}

#[test]
fn missing_key_is_reported_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path());
    let ckpt = Checkpoint::open(&path).unwrap();
    let mut map = model_map();
    map.tensor("extra.scale", &[3]);
    match ckpt.validate(&map) {
        Err(WeightsError::MissingKeys { file, keys }) => {
            assert_eq!(file, path);
            assert_eq!(keys, vec!["extra.scale".to_string()]);
        }
        other => panic!("expected MissingKeys, got {other:?}"),
    }
    let msg = ckpt.validate(&map).unwrap_err().to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("extra.scale"),
        "{msg}"
    );
}

#[test]
fn unexpected_key_is_reported_unless_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path());
    let ckpt = Checkpoint::open(&path).unwrap();
    // Without the ignore rule, encoder.x is unexpected.
    let mut map = KeyMap::new();
    map.linear("fc", 2, 3, true).norm("norm", 3);
    match ckpt.validate(&map) {
        Err(WeightsError::UnexpectedKeys { file, keys }) => {
            assert_eq!(file, path);
            assert_eq!(keys, vec!["encoder.x".to_string()]);
        }
        other => panic!("expected UnexpectedKeys, got {other:?}"),
    }
    // A model that does not use the norm: norm.* are unexpected, encoder.* ignored.
    let mut map = KeyMap::new();
    map.linear("fc", 2, 3, true).ignore_prefix("encoder.");
    match ckpt.validate(&map) {
        Err(WeightsError::UnexpectedKeys { keys, .. }) => {
            assert_eq!(
                keys,
                vec!["norm.bias".to_string(), "norm.weight".to_string()]
            );
        }
        other => panic!("expected UnexpectedKeys, got {other:?}"),
    }
    assert!(ckpt.validate(&model_map()).is_ok());
}

#[test]
fn wrong_shape_is_reported_with_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path());
    let ckpt = Checkpoint::open(&path).unwrap();
    let mut map = KeyMap::new();
    map.linear("fc", 3, 2, true) // declares [2, 3]; the file has [3, 2]
        .norm("norm", 3)
        .ignore_prefix("encoder.");
    match ckpt.validate(&map) {
        Err(WeightsError::ShapeMismatch {
            file,
            key,
            expected,
            actual,
        }) => {
            assert_eq!(file, path);
            assert_eq!(key, "fc.weight");
            assert_eq!(expected, vec![2, 3]);
            assert_eq!(actual, vec![3, 2]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    // Nothing is built when validation fails.
    let device = Default::default();
    assert!(ckpt.load::<B>(&map, FloatDType::F32, &device).is_err());
}

#[test]
fn unsupported_dtype_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = st_bytes(&[Raw {
        name: "ids",
        dtype: "I32",
        shape: vec![2],
        bytes: [1i32, 2].iter().flat_map(|x| x.to_le_bytes()).collect(),
    }]);
    let path = write(dir.path(), "ints.safetensors", &bytes);
    let ckpt = Checkpoint::open(&path).unwrap();
    let mut map = KeyMap::new();
    map.tensor("ids", &[2]);
    match ckpt.validate(&map) {
        Err(WeightsError::UnsupportedDType { file, key, dtype }) => {
            assert_eq!(file, path);
            assert_eq!(key, "ids");
            assert_eq!(dtype, "I32");
        }
        other => panic!("expected UnsupportedDType, got {other:?}"),
    }
}

#[test]
fn truncated_file_is_rejected_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let full = st_bytes(&[f32s("a", &[4], &[1.0, 2.0, 3.0, 4.0])]);
    // Cut inside the data section.
    let path = write(dir.path(), "cut.safetensors", &full[..full.len() - 3]);
    match Checkpoint::open(&path) {
        Err(WeightsError::Truncated {
            file,
            expected,
            actual,
        }) => {
            assert_eq!(file, path);
            assert_eq!(expected, full.len() as u64);
            assert_eq!(actual, full.len() as u64 - 3);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // Cut inside the header, and inside the length prefix.
    let path = write(dir.path(), "cut2.safetensors", &full[..20]);
    assert!(matches!(
        Checkpoint::open(&path),
        Err(WeightsError::Truncated { .. })
    ));
    let path = write(dir.path(), "cut3.safetensors", &full[..5]);
    assert!(matches!(
        Checkpoint::open(&path),
        Err(WeightsError::Truncated { .. })
    ));
}

#[test]
fn corrupt_header_is_rejected_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let with_header = |h: &str, data: usize| {
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data));
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not_json", with_header("{this is not json", 0)),
        (
            "bad_offsets",
            with_header(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#,
                4,
            ),
        ),
        (
            "gap",
            with_header(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
            ),
        ),
        (
            "unknown_dtype",
            with_header(
                r#"{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}"#,
                1,
            ),
        ),
        ("not_object", with_header("[1, 2, 3]", 0)),
        ("huge_length", {
            let mut b = u64::MAX.to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        ("not_utf8", {
            let mut b = 4u64.to_le_bytes().to_vec();
            b.extend_from_slice(&[0xff, 0xfe, 0xfd, 0xfc]);
            b
        }),
    ];
    for (name, bytes) in cases {
        let path = write(dir.path(), &format!("{name}.safetensors"), &bytes);
        match Checkpoint::open(&path) {
            Err(WeightsError::CorruptHeader { file, reason }) => {
                assert_eq!(file, path, "{name}");
                assert!(!reason.is_empty());
            }
            other => panic!("{name}: expected CorruptHeader, got {other:?}"),
        }
    }
    // Trailing bytes after the last tensor.
    let mut b = st_bytes(&[f32s("a", &[1], &[1.0])]);
    b.extend_from_slice(&[0, 0]);
    let path = write(dir.path(), "trailing.safetensors", &b);
    assert!(matches!(
        Checkpoint::open(&path),
        Err(WeightsError::Corrupt { .. })
    ));
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.safetensors");
    match Checkpoint::open(&path) {
        Err(WeightsError::Io { file, .. }) => assert_eq!(file, path),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn undeclared_and_conflicting_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = model_file(dir.path());
    let ckpt = Checkpoint::open(&path).unwrap();
    let map = model_map();
    let device = Default::default();
    let w = ckpt.load::<B>(&map, FloatDType::F32, &device).unwrap();
    assert!(matches!(
        w.tensor::<1>("encoder.x"),
        Err(WeightsError::NotDeclared { .. })
    ));
    assert!(matches!(
        w.tensor::<2>("fc.bias"),
        Err(WeightsError::RankMismatch { .. })
    ));
    let mut map = model_map();
    map.tensor("fc.bias", &[4]);
    assert!(matches!(
        ckpt.validate(&map),
        Err(WeightsError::ConflictingDeclaration { .. })
    ));
}

#[test]
fn f32_file_casts_to_f16_and_bf16_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let v = [1.0f32, -2.5, 0.1, 2.718_281_7, 65504.0, 1e-3];
    let path = write(
        dir.path(),
        "f32.safetensors",
        &st_bytes(&[f32s("t", &[6], &v)]),
    );
    let ckpt = Checkpoint::open(&path).unwrap();
    let mut map = KeyMap::new();
    map.tensor("t", &[6]);
    let device = Default::default();
    for (dtype, expect) in [
        (FloatDType::F32, v.to_vec()),
        (
            FloatDType::F16,
            v.iter().map(|&x| f16::from_f32(x).to_f32()).collect(),
        ),
        (
            FloatDType::BF16,
            v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect(),
        ),
    ] {
        let w = ckpt.load::<B>(&map, dtype, &device).unwrap();
        let t = w.tensor::<1>("t").unwrap();
        assert_eq!(t.dtype(), DType::from(dtype));
        assert_eq!(values(t), expect, "{dtype:?}");
    }
}

#[test]
fn f16_and_bf16_files_load_exactly_as_f32() {
    let dir = tempfile::tempdir().unwrap();
    let v = [1.0f32, -2.5, 0.099_975_586, 3.140_625, 0.5];
    let h: Vec<u8> = v
        .iter()
        .flat_map(|&x| f16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let b: Vec<u8> = v
        .iter()
        .flat_map(|&x| bf16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let path = write(
        dir.path(),
        "half.safetensors",
        &st_bytes(&[
            Raw {
                name: "h",
                dtype: "F16",
                shape: vec![5],
                bytes: h,
            },
            Raw {
                name: "b",
                dtype: "BF16",
                shape: vec![5],
                bytes: b,
            },
        ]),
    );
    let ckpt = Checkpoint::open(&path).unwrap();
    assert_eq!(ckpt.info("h").unwrap().dtype, WeightDType::F16);
    assert_eq!(ckpt.info("b").unwrap().dtype, WeightDType::BF16);
    let mut map = KeyMap::new();
    map.tensor("h", &[5]).tensor("b", &[5]);
    let device = Default::default();
    let w = ckpt.load::<B>(&map, FloatDType::F32, &device).unwrap();
    let hv = values(w.tensor::<1>("h").unwrap());
    let bv = values(w.tensor::<1>("b").unwrap());
    let h_expect: Vec<f32> = v.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    let b_expect: Vec<f32> = v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    assert_eq!(hv, h_expect);
    assert_eq!(bv, b_expect);
    // bf16 → bf16 keeps the bits; bf16 → f16 → f32 is the f16 rounding of the bf16 value.
    let w = ckpt.load::<B>(&map, FloatDType::BF16, &device).unwrap();
    assert_eq!(values(w.tensor::<1>("b").unwrap()), b_expect);
    let w = ckpt.load::<B>(&map, FloatDType::F16, &device).unwrap();
    let expect: Vec<f32> = b_expect
        .iter()
        .map(|&x| f16::from_f32(x).to_f32())
        .collect();
    assert_eq!(values(w.tensor::<1>("b").unwrap()), expect);
}

#[test]
fn linear_from_1x1_conv_weight_and_transpose_in_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "conv.safetensors",
        &st_bytes(&[f32s("q.weight", &[3, 2, 1, 1], &seq(6))]),
    );
    let ckpt = Checkpoint::open(&path).unwrap();
    let mut strict = KeyMap::new();
    strict.linear("q", 2, 3, false);
    assert!(matches!(
        ckpt.validate(&strict),
        Err(WeightsError::ShapeMismatch { .. })
    ));
    let mut map = KeyMap::new();
    map.linear_or_conv1x1("q", 2, 3, false);
    let device = Default::default();
    let w = ckpt.load::<B>(&map, FloatDType::BF16, &device).unwrap();
    let lin = w.linear("q", false).unwrap();
    assert_eq!(lin.weight.dims(), [2, 3]);
    assert_eq!(lin.weight.val().dtype(), DType::BF16);
    let pt = seq(6);
    let expect: Vec<f32> = vec![pt[0], pt[2], pt[4], pt[1], pt[3], pt[5]];
    assert_eq!(values(lin.weight.val()), expect);
}

#[test]
fn sharded_checkpoint_from_index_or_folder() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m-00001-of-00002.safetensors",
        &st_bytes(&[f32s("a", &[2], &[1.0, 2.0])]),
    );
    write(
        dir.path(),
        "m-00002-of-00002.safetensors",
        &st_bytes(&[f32s("b", &[1], &[3.0])]),
    );
    let index = write(
        dir.path(),
        "m.safetensors.index.json",
        br#"{"metadata":{"total_size":12},"weight_map":{"a":"m-00001-of-00002.safetensors","b":"m-00002-of-00002.safetensors"}}"#,
    );
    for ckpt in [
        Checkpoint::open(&index).unwrap(),
        Checkpoint::open(dir.path()).unwrap(),
    ] {
        assert_eq!(ckpt.format(), CheckpointFormat::ShardedSafetensors);
        assert_eq!(ckpt.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(
            ckpt.file_of("b")
                .unwrap()
                .ends_with("m-00002-of-00002.safetensors")
        );
        assert_eq!(ckpt.read_f32("b").unwrap(), (vec![3.0], vec![1]));
        let mut map = KeyMap::new();
        map.tensor("a", &[3]).tensor("b", &[1]);
        // Shape errors name the shard, not the index.
        match ckpt.validate(&map) {
            Err(WeightsError::ShapeMismatch { file, .. }) => {
                assert!(file.ends_with("m-00001-of-00002.safetensors"))
            }
            other => panic!("expected ShapeMismatch, got {other:?}"),
        }
    }
    // An index naming a key its shard lacks.
    let bad = write(
        dir.path(),
        "bad.safetensors.index.json",
        br#"{"weight_map":{"a":"m-00002-of-00002.safetensors","b":"m-00002-of-00002.safetensors"}}"#,
    );
    assert!(matches!(
        Checkpoint::open(&bad),
        Err(WeightsError::Index { .. })
    ));
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
        .join("models")
}

#[test]
fn pytorch_pickle_matches_safetensors() {
    let pt = Checkpoint::open(fixtures().join("fitv2_tiny.pt")).unwrap();
    let st = Checkpoint::open(fixtures().join("fitv2_tiny.safetensors")).unwrap();
    assert_eq!(pt.format(), CheckpointFormat::Pytorch);
    let pk: Vec<&str> = pt.keys().collect();
    let sk: Vec<&str> = st.keys().collect();
    assert_eq!(pk, sk);
    assert!(!pk.is_empty());
    for k in pk {
        assert_eq!(pt.info(k), st.info(k), "{k}");
        assert_eq!(pt.read_f32(k).unwrap(), st.read_f32(k).unwrap(), "{k}");
    }
}

#[test]
fn corrupt_pickle_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "junk.pt",
        b"PK\x03\x04 this is not a zip archive",
    );
    match Checkpoint::open(&path) {
        Err(WeightsError::Pickle { file, .. }) => assert_eq!(file, path),
        other => panic!("expected Pickle, got {other:?}"),
    }
    let path = write(dir.path(), "junk.bin", b"\x80\x02}q\x00(X");
    assert!(matches!(
        Checkpoint::open(&path),
        Err(WeightsError::Pickle { .. })
    ));
}
