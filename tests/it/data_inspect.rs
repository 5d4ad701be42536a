//! `cras data inspect` flags unusable files (header bombs, truncated JPEGs and PNGs) by name and
//! exits non-zero; a JPEG named `.png` is decoded by its content everywhere (a warning in
//! inspect, accepted by discovery); discovery reads only the splits a command uses, in the MVTec
//! AD layout and in rows (a manifest) alike, and inspect audits a manifest's files one by one;
//! broken symbolic links among the images are warned about by name and counted, and a manifest
//! row naming one is an error saying so.

use crate::common::hostile;

use std::path::Path;
use std::process::Command;

use cras::data::layouts::load_splits;
use cras::data::{discover, discover_splits, Splits};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// One valid class "alpha": 2 train, 1 good test, 1 "crack" defect with its mask, all 16x12.
fn valid_class(root: &Path) {
    let c = root.join("alpha");
    for p in [
        "train/good/000.png",
        "train/good/001.png",
        "test/good/000.png",
        "test/crack/000.png",
    ] {
        write(&c.join(p), &hostile::png(16, 12));
    }
    let mask = image::GrayImage::from_pixel(16, 12, image::Luma([255]));
    let mask = hostile::encode(
        &image::DynamicImage::ImageLuma8(mask),
        image::ImageFormat::Png,
    );
    write(&c.join("ground_truth/crack/000_mask.png"), &mask);
}

/// Runs `cras data inspect` with `extra` arguments: (exit success, stdout, stderr).
fn inspect(root: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(["--log", "warn", "data", "inspect"])
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The stdout line naming `file`.
fn line_of<'a>(stdout: &'a str, file: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(file))
        .unwrap_or_else(|| panic!("no line names {file}:\n{stdout}"))
}

#[test]
fn inspect_flags_header_bombs_and_truncated_files_by_name_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    valid_class(root);
    let (ok, stdout, stderr) = inspect(root, &[]);
    assert!(ok, "a clean dataset passes:\n{stdout}{stderr}");
    assert!(stdout.contains("0 unusable, 0 warnings"), "{stdout}");

    let c = root.join("alpha");
    write(
        &c.join("train/good/bomb.png"),
        &hostile::header_bomb_png(50_000, 50_000),
    );
    // Cut inside the scan data: the header reads, the end-of-image marker is missing.
    let jpeg = hostile::jpeg(96, 64);
    write(&c.join("test/good/cut.jpg"), &jpeg[..jpeg.len() - 100]);
    let png = hostile::png(16, 12);
    write(&c.join("train/good/cut.png"), &png[..png.len() - 30]);
    let (ok, stdout, stderr) = inspect(root, &[]);
    assert!(!ok, "unusable files must fail the inspection:\n{stdout}");
    let bomb = line_of(&stdout, "bomb.png");
    assert!(
        bomb.starts_with("  error") && bomb.contains("header bomb") && bomb.contains("50000x50000"),
        "{bomb}"
    );
    let cut_jpg = line_of(&stdout, "cut.jpg");
    assert!(
        cut_jpg.contains("error") && cut_jpg.contains("truncated JPEG"),
        "{cut_jpg}"
    );
    let cut_png = line_of(&stdout, "cut.png");
    assert!(
        cut_png.contains("error") && cut_png.contains("truncated PNG"),
        "{cut_png}"
    );
    assert!(
        stdout.contains("problems in alpha: 3 unusable, 0 warnings"),
        "{stdout}"
    );
    assert!(stdout.contains("checked 8 files"), "{stdout}");
    assert!(stderr.contains("3 unusable files"), "{stderr}");
    // Sizes count only the readable, usable images.
    assert!(stdout.contains("16x12 (4)"), "{stdout}");
}

#[test]
fn inspect_decode_finds_damage_inside_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    valid_class(root);
    // A whole JPEG (header and end marker intact) whose scan data is overwritten with a marker
    // the decoder refuses inside entropy-coded data.
    let mut jpeg = hostile::jpeg(64, 48);
    let sos = jpeg.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let start = sos + 20;
    for b in &mut jpeg[start..start + 8] {
        *b = 0xFF;
    }
    jpeg[start + 8] = 0xC4;
    let file = root.join("alpha/test/good/damaged.jpg");
    write(&file, &jpeg);
    assert!(
        cras::data::decode::decode_rgb(&file).is_err(),
        "the damage must be real"
    );
    let (ok, stdout, _) = inspect(root, &[]);
    assert!(ok, "headers and ends alone cannot see it:\n{stdout}");
    let (ok, stdout, _) = inspect(root, &["--decode"]);
    assert!(!ok, "{stdout}");
    assert!(
        line_of(&stdout, "damaged.jpg").contains("error"),
        "{stdout}"
    );
    assert!(stdout.contains("(decoded)"), "{stdout}");
}

#[test]
fn a_jpeg_named_png_is_decoded_by_its_content_everywhere_and_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    valid_class(root);
    let misnamed = root.join("alpha/train/good/002.png");
    write(&misnamed, &hostile::jpeg(16, 12));
    write(
        &root.join("alpha/test/good/001.png"),
        &hostile::jpeg(16, 12),
    );
    // Discovery (train, eval) takes it as predict and serve do: by its content.
    let ds = discover(root, None).expect("a JPEG named .png is a usable image");
    assert!(ds.classes[0].train.contains(&misnamed));
    let img = cras::data::decode::decode_rgb(&misnamed).unwrap();
    assert_eq!(img.dimensions(), (16, 12));
    let (ok, stdout, stderr) = inspect(root, &[]);
    assert!(ok, "a warning alone passes:\n{stdout}{stderr}");
    let line = line_of(&stdout, "002.png");
    assert!(
        line.starts_with("  warning") && line.contains("Jpeg") && line.contains(".jpg"),
        "{line}"
    );
    assert!(stdout.contains("0 unusable, 2 warnings"), "{stdout}");
}

#[test]
fn training_reads_only_the_train_split_and_evaluation_only_the_test_split() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    valid_class(root);
    // Test-split problems: a defect image without a mask, a truncated good test image.
    write(&root.join("alpha/test/hole/000.png"), &hostile::png(16, 12));
    write(&root.join("alpha/test/good/bad.png"), b"not an image");
    let train = discover_splits(root, None, Splits::Train).expect("train ignores the test split");
    assert_eq!(train.classes[0].train.len(), 2);
    assert!(train.classes[0].test.is_empty());
    let cfg = cras::train::pipeline::TrainConfig::paper(root.to_path_buf());
    let split = cras::train::pipeline::split(&cfg).expect("cras train's discovery");
    assert_eq!(
        split.train.len() + split.holdout.iter().map(Vec::len).sum::<usize>(),
        2
    );
    let msg = discover_splits(root, None, Splits::Test)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("hole") && msg.contains("no mask"), "{msg}");
    std::fs::remove_dir_all(root.join("alpha/test/hole")).unwrap();
    let msg = discover_splits(root, None, Splits::Test)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bad.png"), "{msg}");
    std::fs::remove_file(root.join("alpha/test/good/bad.png")).unwrap();

    // Train-split problems do not stop evaluation; they stop training.
    write(
        &root.join("alpha/train/good/bomb.png"),
        &hostile::header_bomb_png(50_000, 50_000),
    );
    let msg = discover_splits(root, None, Splits::Train)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("bomb.png") && msg.contains("above the limit"),
        "{msg}"
    );
    let test = discover_splits(root, None, Splits::Test).expect("eval ignores the train split");
    assert_eq!(test.classes[0].test.len(), 2);
    std::fs::remove_dir_all(root.join("alpha/train")).unwrap();
    let test = discover_splits(root, None, Splits::Test).expect("eval needs no train/good");
    assert!(test.classes[0].train.is_empty());
}

#[test]
fn rows_are_read_only_for_the_splits_used_and_inspect_audits_every_row_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let m = |name: &str| root.join("m").join(name);
    for f in ["t0.png", "t1.png", "v0.png", "good.png", "bad.png"] {
        write(&m(f), &hostile::png(16, 12));
    }
    let mask = |w, h| {
        let img = image::GrayImage::from_pixel(w, h, image::Luma([255]));
        hostile::encode(
            &image::DynamicImage::ImageLuma8(img),
            image::ImageFormat::Png,
        )
    };
    write(&m("a.png"), &mask(16, 12));
    write(&m("b.png"), &mask(16, 12));
    let rows = root.join("rows.csv");
    write(
        &rows,
        b"class,split,label,defect,image,mask\n\
          alpha,train,normal,,m/t0.png,\n\
          alpha,train,normal,,m/t1.png,\n\
          alpha,val,normal,,m/v0.png,\n\
          alpha,test,normal,,m/good.png,\n\
          alpha,test,anomalous,dent,m/bad.png,m/a.png;m/b.png\n",
    );
    let (ok, stdout, stderr) = inspect(&rows, &[]);
    assert!(ok, "{stdout}{stderr}");
    let fields: Vec<&str> = line_of(&stdout, "alpha ").split_whitespace().collect();
    assert_eq!(fields[..6], ["alpha", "2", "1", "1", "1", "0"], "{stdout}");
    // 5 images and both masks of the defect image.
    assert!(stdout.contains("checked 7 files"), "{stdout}");

    // A broken test image stops evaluation, not training (which calibrates on the val row).
    write(&m("good.png"), b"not an image");
    let train = load_splits(&rows, None, None, Splits::Train).expect("train ignores test rows");
    assert_eq!(
        (train.classes[0].train.len(), train.classes[0].val.len()),
        (2, 1)
    );
    assert!(train.classes[0].test.is_empty());
    let cfg = cras::train::pipeline::TrainConfig::paper(&rows);
    let split = cras::train::pipeline::split(&cfg).expect("cras train's reading");
    assert_eq!(split.train.len(), 2);
    assert_eq!(split.holdout, vec![vec![m("v0.png")]]);
    let msg = load_splits(&rows, None, None, Splits::Test)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("good.png"), "{msg}");
    write(&m("good.png"), &hostile::png(16, 12));

    // A header bomb among the val rows stops training, not evaluation; inspect names it.
    write(&m("v0.png"), &hostile::header_bomb_png(50_000, 50_000));
    let test = load_splits(&rows, None, None, Splits::Test).expect("eval ignores train/val rows");
    assert_eq!(test.classes[0].test.len(), 2);
    assert_eq!(test.classes[0].train.len(), 2, "listed for the report");
    let msg = load_splits(&rows, None, None, Splits::Train)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("v0.png") && msg.contains("above the limit"),
        "{msg}"
    );
    let (ok, stdout, _) = inspect(&rows, &[]);
    assert!(!ok, "{stdout}");
    assert!(
        line_of(&stdout, "v0.png").contains("header bomb"),
        "{stdout}"
    );
    write(&m("v0.png"), &hostile::png(16, 12));

    // The second mask of an image (LOCO-style union) is checked like the first.
    write(&m("b.png"), &mask(8, 8));
    load_splits(&rows, None, None, Splits::Train).expect("masks are test-side");
    let msg = load_splits(&rows, None, None, Splits::Test)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("b.png") && msg.contains("8x8"), "{msg}");
    let (ok, stdout, _) = inspect(&rows, &[]);
    assert!(!ok, "{stdout}");
    assert!(
        line_of(&stdout, "b.png").contains("mask is 8x8"),
        "{stdout}"
    );
}

#[test]
fn broken_symbolic_links_among_the_images_are_warned_about_and_counted() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    valid_class(root);
    let c = root.join("alpha");
    symlink("gone.png", c.join("train/good/dangling.png")).unwrap();
    symlink("loop_b.png", c.join("test/good/loop_a.png")).unwrap();
    symlink("loop_a.png", c.join("test/good/loop_b.png")).unwrap();
    symlink("gone.txt", c.join("train/good/notes.txt")).unwrap(); // not an image: not counted
    let (ok, stdout, stderr) = inspect(root, &[]);
    assert!(
        ok,
        "skipped links are warnings, not errors:\n{stdout}{stderr}"
    );
    assert!(
        stdout.contains("3 broken symbolic links skipped"),
        "{stdout}"
    );
    assert!(
        line_of(&stdout, "dangling.png").contains("gone.png does not exist"),
        "{stdout}"
    );
    for name in ["loop_a.png", "loop_b.png"] {
        assert!(line_of(&stdout, name).contains("loop"), "{stdout}");
    }
    assert!(!stdout.contains("notes.txt"), "{stdout}");
    // The images that are there are counted as before; each skip is a warning in the log too.
    let fields: Vec<&str> = line_of(&stdout, "alpha ").split_whitespace().collect();
    assert_eq!(fields[..5], ["alpha", "2", "0", "1", "1"], "{stdout}");
    for name in ["dangling.png", "loop_a.png", "loop_b.png"] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("WARN") && l.contains(name)),
            "{name}:\n{stderr}"
        );
    }
    // Discovery for training skips the link as inspect does.
    let ds = discover_splits(root, None, Splits::Train).unwrap();
    assert_eq!(ds.classes[0].train.len(), 2);
}

#[test]
fn a_manifest_row_naming_a_broken_link_is_an_error_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("m/t0.png"), &hostile::png(16, 12));
    std::os::unix::fs::symlink("gone.png", root.join("m/t1.png")).unwrap();
    let rows = root.join("rows.csv");
    write(
        &rows,
        b"class,split,label,image\n\
          alpha,train,normal,m/t0.png\n\
          alpha,train,normal,m/t1.png\n",
    );
    let (ok, stdout, stderr) = inspect(&rows, &[]);
    assert!(!ok, "{stdout}{stderr}");
    assert!(
        stderr.contains("line 3")
            && stderr.contains("t1.png")
            && stderr.contains("broken symbolic link")
            && stderr.contains("gone.png does not exist"),
        "{stderr}"
    );
    let msg = load_splits(&rows, None, None, Splits::Train)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("t1.png") && msg.contains("broken symbolic link"),
        "{msg}"
    );
}
