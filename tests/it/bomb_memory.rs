//! A 1 MB PNG whose ICC profile (iCCP chunk) inflates to 1 GiB, among a tiny dataset: every
//! command that reads it, header reads included (`cras data inspect`, discovery in `cras train`
//! and `cras eval`), and `cras predict` refuse it by name in bounded memory. The memory is the
//! command's own peak RSS, which the `cras` binary logs at its end (`peak_rss_kib`, target
//! `cras::memory`, debug level): each command is a process of its own, so nothing else in this
//! test binary shares the figure. Before: the header reads inflated the profile up to the image
//! crate's default 512 MiB allocation limit (peak 0.5 to 1 GiB), and `cras predict` scored the
//! image without a word.

use crate::common::hostile;
use crate::serve_support::tiny_model;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bound on each command's peak RSS: a few times what a tiny run needs, a fraction of
/// what inflating the profile takes.
const MAX_PEAK_MIB: u64 = 200;

/// What a run of `cras` gave: its exit, its standard output and error, its peak RSS.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    peak_mib: u64,
}

/// Runs `cras ARGS` with the peak-memory line on, and reads it back.
fn cras(args: &[&OsStr]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cras"))
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .args(["--log", "warn,cras::memory=debug"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let peak_kib: u64 = stderr
        .lines()
        .find_map(|l| l.split("peak_rss_kib=").nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no peak_rss_kib in the log:\n{stderr}"));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        peak_mib: peak_kib / 1024,
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Asserts the run failed, names the bomb as a profile bomb, and stayed under the bound.
fn refused_in_bounded_memory(run: &Run, what: &str) {
    eprintln!("{what}: peak RSS {} MiB", run.peak_mib);
    assert!(
        run.peak_mib < MAX_PEAK_MIB,
        "{what}: peak RSS {} MiB (bound {MAX_PEAK_MIB} MiB)",
        run.peak_mib
    );
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(!run.ok, "{what} accepted the bomb:\n{all}");
    let line = all
        .lines()
        .find(|l| l.contains("bomb.png"))
        .unwrap_or_else(|| panic!("{what} does not name bomb.png:\n{all}"));
    assert!(line.contains("ICC profile"), "{what}: {line}");
}

/// One class of 32x32 images in MVTec AD layout (4 train, a good and a defect test image with
/// its mask) under `root`.
fn tiny_dataset(root: &Path) {
    let c = root.join("alpha");
    for p in [
        "train/good/000.png",
        "train/good/001.png",
        "train/good/002.png",
        "train/good/003.png",
        "test/good/000.png",
        "test/crack/000.png",
    ] {
        write(&c.join(p), &hostile::png(32, 32));
    }
    let mask = image::GrayImage::from_pixel(32, 32, image::Luma([255]));
    let mask = hostile::encode(
        &image::DynamicImage::ImageLuma8(mask),
        image::ImageFormat::Png,
    );
    write(&c.join("ground_truth/crack/000_mask.png"), &mask);
}

#[test]
fn data_inspect_names_an_iccp_bomb_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path());
    write(
        &dir.path().join("alpha/train/good/bomb.png"),
        hostile::iccp_bomb_1gib(),
    );
    let run = cras(&["data".as_ref(), "inspect".as_ref(), dir.path().as_os_str()]);
    refused_in_bounded_memory(&run, "cras data inspect");
    assert!(run.stdout.contains("1 unusable"), "{}", run.stdout);
}

#[test]
fn train_names_an_iccp_bomb_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tiny_dataset(&data);
    write(
        &data.join("alpha/train/good/bomb.png"),
        hostile::iccp_bomb_1gib(),
    );
    let model = dir.path().join("m.safetensors");
    let args: Vec<&OsStr> = [
        "train",
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--dims",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ]
    .iter()
    .map(OsStr::new)
    .chain([
        "--data".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        model.as_os_str(),
    ])
    .collect();
    let run = cras(&args);
    refused_in_bounded_memory(&run, "cras train");
    assert!(!model.exists());
}

/// A copy of the tiny model's synthetic dataset (its classes are the model's).
fn copy_of_the_tiny_models_data(to: &Path) -> PathBuf {
    let first = &tiny_model().images[0]; // <root>/<class>/test/<defect>/<file>
    let root = first.ancestors().nth(4).unwrap();
    copy_tree(root, to);
    let class = first.ancestors().nth(3).unwrap().file_name().unwrap();
    to.join(class)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn eval_names_an_iccp_bomb_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let class = copy_of_the_tiny_models_data(&data);
    write(&class.join("test/good/bomb.png"), hostile::iccp_bomb_1gib());
    let run = cras(&[
        "eval".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--model".as_ref(),
        tiny_model().model.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        dir.path().join("report").as_os_str(),
    ]);
    refused_in_bounded_memory(&run, "cras eval");
}

#[test]
fn predict_names_an_iccp_bomb_in_bounded_memory_and_scores_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.png");
    write(&bomb, hostile::iccp_bomb_1gib());
    let good = &tiny_model().images[0];
    let run = cras(&[
        "predict".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--model".as_ref(),
        tiny_model().model.as_os_str(),
        bomb.as_os_str(),
        good.as_os_str(),
    ]);
    refused_in_bounded_memory(&run, "cras predict");
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(lines[0]["path"], bomb.display().to_string());
    assert!(
        lines[0]["error"].as_str().unwrap().contains("ICC profile"),
        "{}",
        lines[0]
    );
    assert!(lines[1]["score"].is_number(), "{}", lines[1]);
}
