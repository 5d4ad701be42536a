//! `cras predict` over awkward file trees: symbolic-link loops end (each image once), a folder
//! reached twice is listed once, heatmaps of images sharing a stem in different folders do not
//! overwrite each other, a missing path among the arguments is reported while the others are
//! scored, a broken link named like an image gets an error line, `--threshold NaN` is refused,
//! a path that is not UTF-8 comes back with its bytes (`path_bytes`) on scored and error lines
//! alike.
//! The lines are the library's `PredictionRecord`; logs written to a pipe carry no colour
//! codes.

use crate::serve_support;

use std::path::Path;
use std::process::{Command, Output};

use serve_support::tiny_model;

fn predict(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(["predict", "--device", "cpu", "--model"])
        .arg(&tiny_model().model)
        .args(args)
        .output()
        .unwrap()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn copy_image(to: &Path, which: usize) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(&tiny_model().images[which], to).unwrap();
}

#[test]
fn symlink_loops_end_and_list_each_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    copy_image(&root.join("a.png"), 0);
    std::os::unix::fs::symlink(".", root.join("self1")).unwrap();
    std::os::unix::fs::symlink(".", root.join("self2")).unwrap();
    std::os::unix::fs::symlink("..", root.join("up")).unwrap();
    let out = predict(&[root.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = lines(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0]["score"].is_number());
}

#[test]
fn heatmaps_of_images_with_the_same_stem_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    copy_image(&root.join("x/img.png"), 0);
    copy_image(&root.join("y/img.png"), 2);
    let maps = dir.path().join("maps");
    let out = predict(&["--heatmaps".as_ref(), maps.as_os_str(), root.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = lines(&out);
    assert_eq!(found.len(), 2);
    let a = std::fs::read(found[0]["heatmap"].as_str().unwrap()).unwrap();
    let b = std::fs::read(found[1]["heatmap"].as_str().unwrap()).unwrap();
    assert_ne!(found[0]["heatmap"], found[1]["heatmap"]);
    assert_ne!(a, b, "each line's heatmap is its own image's map");
}

#[test]
fn a_missing_path_is_reported_and_the_others_are_scored() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.png");
    let good = &tiny_model().images[0];
    let out = predict(&[missing.as_os_str(), good.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failure is still an error exit"
    );
    let found = lines(&out);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0]["path"].as_str().unwrap().ends_with("missing.png"));
    assert!(found[0]["error"].as_str().unwrap().contains("no such file"));
    assert!(found[1]["score"].is_number(), "{found:?}");
}

#[test]
fn a_nan_threshold_is_refused() {
    let good = &tiny_model().images[0];
    let out = predict(&["--threshold".as_ref(), "NaN".as_ref(), good.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("finite"));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_non_utf8_path_comes_back_with_its_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    let path = dir.path().join(name);
    copy_image(&path, 0);
    let out = predict(&[dir.path().as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = lines(&out);
    assert_eq!(found.len(), 1);
    let bytes: Vec<u8> = found[0]["path_bytes"]
        .as_array()
        .expect("path_bytes")
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(bytes, path.as_os_str().as_bytes());
}

/// The bytes of a line's `path_bytes` field.
fn path_bytes_of(line: &serde_json::Value) -> Vec<u8> {
    line["path_bytes"]
        .as_array()
        .unwrap_or_else(|| panic!("no path_bytes: {line}"))
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect()
}

#[test]
fn error_lines_of_non_utf8_paths_come_back_with_their_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    // A folder whose name is not UTF-8: an unreadable image in it, a missing one, a good one.
    let folder = dir.path().join(std::ffi::OsStr::from_bytes(b"lot\xff"));
    let damaged = folder.join("damaged.png");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(&damaged, b"not an image").unwrap();
    let missing = folder.join("missing.png");
    copy_image(&folder.join("good.png"), 0);
    let out = predict(&[damaged.as_os_str(), missing.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let found = lines(&out);
    assert_eq!(found.len(), 2, "{found:?}");
    for line in &found {
        assert!(line["error"].is_string(), "{line}");
        assert!(
            line["path"].as_str().unwrap().contains('\u{fffd}'),
            "{line}"
        );
    }
    // The missing path is reported first (collected), then the damaged one (decoded).
    assert_eq!(path_bytes_of(&found[0]), missing.as_os_str().as_bytes());
    assert_eq!(path_bytes_of(&found[1]), damaged.as_os_str().as_bytes());

    // The same in the shard file of `--manifest`: rows relative to the list's folder.
    std::fs::write(folder.join("list.txt"), "damaged.png\ngood.png\n").unwrap();
    let shards = dir.path().join("shards");
    let out = predict(&[
        "--manifest".as_ref(),
        folder.join("list.txt").as_os_str(),
        "--out".as_ref(),
        shards.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(shards.join("shard-0-of-1.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0]["error"].is_string(), "{text}");
    assert_eq!(path_bytes_of(&rows[0]), damaged.as_os_str().as_bytes());
    assert!(rows[1]["score"].is_number(), "{text}");
    assert_eq!(
        path_bytes_of(&rows[1]),
        folder.join("good.png").as_os_str().as_bytes()
    );
    // A UTF-8 path has no `path_bytes`, on error lines as on scored ones.
    let plain = dir.path().join("plain.png");
    std::fs::write(&plain, b"not an image").unwrap();
    let line = &lines(&predict(&[plain.as_os_str()]))[0];
    assert!(
        line["error"].is_string() && line.get("path_bytes").is_none(),
        "{line}"
    );
}

#[test]
fn a_folder_reached_twice_is_listed_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    copy_image(&root.join("sub/a.png"), 0);
    copy_image(&root.join("b.png"), 1);
    std::os::unix::fs::symlink("sub", root.join("again")).unwrap();
    let sub = root.join("sub");
    let out = predict(&[root.as_os_str(), sub.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = lines(&out);
    assert_eq!(found.len(), 2, "{found:?}");
    let names: Vec<&str> = found.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert!(names[0].ends_with("images/again/a.png"), "{names:?}");
    assert!(names[1].ends_with("images/b.png"), "{names:?}");
}

#[test]
fn a_broken_link_named_like_an_image_gets_an_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    copy_image(&root.join("a.png"), 0);
    std::os::unix::fs::symlink("gone.png", root.join("broken.png")).unwrap();
    std::os::unix::fs::symlink("gone.txt", root.join("broken.txt")).unwrap();
    let out = predict(&[root.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let found = lines(&out);
    assert_eq!(found.len(), 2, "{found:?}");
    // Decoding errors are printed as they happen, before the batch's scores.
    assert!(found[0]["path"].as_str().unwrap().ends_with("broken.png"));
    assert!(found[0]["error"].is_string(), "{found:?}");
    assert!(found[1]["score"].is_number(), "{found:?}");
}

#[test]
fn lines_read_back_as_prediction_records() {
    let good = &tiny_model().images[0];
    let out = predict(&["--threshold".as_ref(), "0.5".as_ref(), good.as_os_str()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().next().unwrap();
    let record: cras::infer::PredictionRecord = serde_json::from_str(line).unwrap();
    assert_eq!(record.threshold, Some(0.5));
    assert_eq!(record.is_anomalous, Some(record.score >= 0.5));
    assert_eq!(
        serde_json::to_string(&record).unwrap(),
        line,
        "written back identically"
    );
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let good = &tiny_model().images[0];
    let out = Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(["predict", "--log", "debug", "--device", "cpu", "--model"])
        .arg(&tiny_model().model)
        .arg(good)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEBUG") || stderr.contains("INFO"),
        "nothing logged: {stderr}"
    );
    assert!(
        !out.stderr.contains(&0x1b),
        "ANSI escape codes in a piped log: {stderr:?}"
    );
}
