//! `cras weights` and `cras embed` end to end through the binary (small inputs, resnet18).

use cras::backbone::read_state_dict;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cras(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run cras")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backbone")
        .join(name)
}

/// Parses a `.npy` v1 f32 file written by `cras embed`: (shape, values).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "header aligned to 64 bytes");
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.ends_with('\n'),
        "{header}"
    );
    let inner = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = inner
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

#[test]
fn weights_info_and_convert() {
    let out = cras(&[
        "weights",
        "info",
        fixture("net.legacy.pth").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("legacy") && text.contains("tensors:    144"),
        "{text}"
    );
    let sha = cras::backbone::sha256_file(&fixture("net.legacy.pth")).unwrap();
    assert!(text.contains(&sha));

    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("net.safetensors");
    let out = cras(&[
        "weights",
        "convert",
        fixture("net.legacy.pth").to_str().unwrap(),
        dst.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = read_state_dict(&fixture("net.legacy.pth")).unwrap();
    let b = read_state_dict(&dst).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        let d: f32 = (v - &b[k])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0, "{k}");
    }
    let bad = cras(&["weights", "info", fixture("meta.json").to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("meta.json"));
}

#[test]
fn embed_writes_npy_and_safetensors_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img.png");
    let pixels = image::RgbImage::from_fn(40, 40, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 6) as u8, ((x + y) * 3) as u8])
    });
    pixels.save(&img).unwrap();
    let npy = dir.path().join("d.npy");
    let st = dir.path().join("d.safetensors");
    let common = [
        "embed",
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--dims",
        "64",
        "--device",
        "cpu",
        "--image",
        img.to_str().unwrap(),
    ];
    let run = |out: &Path| {
        let mut args = common.to_vec();
        args.extend(["--write-layers", "--out", out.to_str().unwrap()]);
        let o = cras(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("random"),
            "random backbone announced"
        );
    };
    run(&npy);
    run(&st);
    let (shape, values) = read_npy(&npy);
    assert_eq!(shape, vec![16, 64]); // (32/8)^2 positions
    let (l3_shape, _) = read_npy(&dir.path().join("d.layer3.npy"));
    assert_eq!(l3_shape, vec![256, 2, 2]);
    let tensors = read_state_dict(&st).unwrap();
    assert_eq!(tensors["layer2"].dims(), &[128, 4, 4]);
    let from_st: Vec<f32> = tensors["descriptors"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(values, from_st, "same seed, same descriptors");
    assert!(values.iter().any(|v| *v != 0.0));

    let mut args = common.to_vec();
    args.extend(["--out", "x.txt"]);
    let o = cras(&args);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(".npy or .safetensors"));
}
