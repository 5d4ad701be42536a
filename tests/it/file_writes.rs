//! Files cras writes: a temporary file left by a killed write is removed by the next write of
//! the same path, a model is readable by others under the usual umask (the permissions of the
//! file it replaces, else 0666 less the umask, not 0600), and a full disk under the training log
//! names the log file.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use cras::fsio::write_atomic;

#[test]
fn leftovers_of_a_killed_write_are_removed_and_permissions_follow_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    // What a write killed between create and rename leaves.
    let leftover = dir.path().join(".model.safetensors.4242.0.cras-tmp");
    std::fs::write(&leftover, vec![0u8; 1000]).unwrap();
    let other = dir.path().join(".other.safetensors.4242.0.cras-tmp");
    std::fs::write(&other, b"x").unwrap();
    write_atomic(&path, b"new").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
    assert!(
        !leftover.exists(),
        "the leftover of the same path is removed"
    );
    assert!(
        other.exists(),
        "another path's temporary file is left alone"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // New file: 0666 less the umask (the test runner's umask is 022 or 002: group/other read).
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o044, 0o044, "readable by others: {mode:o}");
    // Replaced file: keeps the old permissions.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    write_atomic(&path, b"newer").unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn a_full_disk_under_the_training_log_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cras = env!("CARGO_BIN_EXE_cras");
    let data = dir.path().join("data");
    let ok = Command::new(cras)
        .args([
            "synth",
            "--classes",
            "1",
            "--train",
            "4",
            "--test-good",
            "1",
        ])
        .args(["--test-defect", "1", "--size", "32", "--out"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = Command::new(cras)
        .args([
            "train",
            "--backbone",
            "resnet18",
            "--image-size",
            "32",
            "--dims",
            "16",
        ])
        .args([
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--quiet",
        ])
        .args(["--train-log", "/dev/full", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("m.safetensors"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/dev/full"), "{stderr}");
}
