//! Backend selection and the non-panicking usability probe.
#![cfg(feature = "cpu")]

use dype_burn::backend::{BackendError, BackendKind, Cpu, check_backend};

#[test]
fn parse_and_display() {
    for (s, k) in [
        ("cpu", BackendKind::Cpu),
        ("FLEX", BackendKind::Cpu),
        (" Wgpu ", BackendKind::Wgpu),
        ("cuda", BackendKind::Cuda),
    ] {
        assert_eq!(s.parse::<BackendKind>().unwrap(), k);
    }
    for k in BackendKind::ALL {
        assert_eq!(k.to_string().parse::<BackendKind>().unwrap(), k);
    }
    let err = "metal".parse::<BackendKind>().unwrap_err();
    assert!(err.to_string().contains("metal"));
}

#[test]
fn cpu_backend_is_usable() {
    assert!(BackendKind::Cpu.is_compiled());
    assert!(BackendKind::compiled().contains(&BackendKind::Cpu));
    check_backend::<Cpu>(&Default::default()).unwrap();
    BackendKind::Cpu.check().unwrap();
}

#[test]
fn missing_features_are_reported_not_panicked() {
    for kind in BackendKind::ALL {
        if !kind.is_compiled() {
            assert_eq!(kind.check(), Err(BackendError::NotCompiled { kind }));
        }
    }
}
