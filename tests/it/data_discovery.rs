//! Dataset discovery on tiny MVTec-layout folders built in a tempdir: the ok case, class order,
//! stray files, and every error case (each error must name the offending path).

use std::path::{Path, PathBuf};

use cras::data::discover;

fn png(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb([9, 99, 199]))
        .save(path)
        .unwrap();
}

fn mask(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(w, h, image::Luma([255]))
        .save(path)
        .unwrap();
}

/// A class with 2 train images, 1 good test, 2 "crack" defects (masks `<stem>_mask.png` and
/// `<stem>.png`), plus stray files.
fn make_class(root: &Path, name: &str) -> PathBuf {
    let c = root.join(name);
    png(&c.join("train/good/001.png"), 8, 6);
    png(&c.join("train/good/000.png"), 8, 6);
    png(&c.join("test/good/000.png"), 8, 6);
    png(&c.join("test/crack/000.png"), 8, 6);
    png(&c.join("test/crack/001.png"), 8, 6);
    mask(&c.join("ground_truth/crack/000_mask.png"), 8, 6);
    mask(&c.join("ground_truth/crack/001.png"), 8, 6);
    std::fs::write(c.join("train/good/.DS_Store"), b"junk").unwrap();
    std::fs::write(c.join("train/good/Thumbs.db"), b"junk").unwrap();
    std::fs::write(c.join("test/crack/notes.txt"), b"junk").unwrap();
    c
}

fn err_of(root: &Path, classes: Option<&[String]>) -> String {
    discover(root, classes).unwrap_err().to_string()
}

#[test]
fn discovers_layout_pairs_masks_and_skips_stray_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    make_class(root, "zeta");
    make_class(root, "alpha");
    let ds = discover(root, None).unwrap();
    assert_eq!(ds.class_names(), vec!["alpha", "zeta"]);
    let c = &ds.classes[0];
    assert_eq!(
        c.train,
        vec![
            root.join("alpha/train/good/000.png"),
            root.join("alpha/train/good/001.png")
        ]
    );
    assert_eq!(c.test.len(), 3);
    let crack: Vec<_> = c.test.iter().filter(|t| t.is_anomalous()).collect();
    assert_eq!(crack.len(), 2);
    assert_eq!(
        crack[0].mask.as_deref(),
        Some(root.join("alpha/ground_truth/crack/000_mask.png").as_path())
    );
    assert_eq!(
        crack[1].mask.as_deref(),
        Some(root.join("alpha/ground_truth/crack/001.png").as_path())
    );
    let good: Vec<_> = c.test.iter().filter(|t| !t.is_anomalous()).collect();
    assert_eq!(good.len(), 1);
    assert_eq!(good[0].defect, "good");
    assert!(good[0].mask.is_none());
    assert_eq!(c.defect_types(), vec!["crack"]);
}

#[test]
fn user_class_list_sets_order_and_unknown_class_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for n in ["a", "b", "c"] {
        make_class(root, n);
    }
    let list = vec!["c".to_string(), "a".to_string()];
    assert_eq!(
        discover(root, Some(&list)).unwrap().class_names(),
        vec!["c", "a"]
    );
    let msg = err_of(root, Some(&["a".to_string(), "nope".to_string()]));
    assert!(
        msg.contains("nope") && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(msg.contains("a, b, c"), "lists available classes: {msg}");
    let msg = err_of(&root.join("missing_root"), None);
    assert!(msg.contains("missing_root"), "{msg}");
}

#[test]
fn missing_train_good_and_empty_class_are_errors_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("bare/test/good")).unwrap();
    let msg = err_of(root, None);
    assert!(
        msg.contains(&*root.join("bare/train/good").to_string_lossy()),
        "{msg}"
    );
    assert!(msg.contains("missing train/good"), "{msg}");

    std::fs::create_dir_all(root.join("bare/train/good")).unwrap();
    std::fs::write(root.join("bare/train/good/readme.txt"), b"x").unwrap();
    let msg = err_of(root, None);
    assert!(msg.contains("empty") && msg.contains("bare"), "{msg}");
}

#[test]
fn defect_image_without_mask_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = make_class(dir.path(), "k");
    std::fs::remove_file(c.join("ground_truth/crack/001.png")).unwrap();
    let msg = err_of(dir.path(), None);
    assert!(
        msg.contains(&*c.join("test/crack/001.png").to_string_lossy()),
        "{msg}"
    );
    assert!(
        msg.contains("no mask") && msg.contains("001_mask.png"),
        "{msg}"
    );
}

#[test]
fn mask_without_image_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = make_class(dir.path(), "k");
    mask(&c.join("ground_truth/crack/007_mask.png"), 8, 6);
    let msg = err_of(dir.path(), None);
    assert!(
        msg.contains("007_mask.png") && msg.contains("no test image"),
        "{msg}"
    );

    // A whole defect type with masks but no test folder.
    let dir = tempfile::tempdir().unwrap();
    let c = make_class(dir.path(), "k");
    mask(&c.join("ground_truth/hole/000_mask.png"), 8, 6);
    let msg = err_of(dir.path(), None);
    assert!(
        msg.contains("hole") && msg.contains("no test image"),
        "{msg}"
    );
}

#[test]
fn mask_of_another_size_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = make_class(dir.path(), "k");
    mask(&c.join("ground_truth/crack/000_mask.png"), 6, 8);
    let msg = err_of(dir.path(), None);
    assert!(msg.contains("000_mask.png"), "{msg}");
    assert!(msg.contains("6x8") && msg.contains("8x6"), "{msg}");
}

#[test]
fn undecodable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = make_class(dir.path(), "k");
    std::fs::write(c.join("train/good/002.png"), b"not a png at all").unwrap();
    let msg = err_of(dir.path(), None);
    assert!(
        msg.contains("002.png") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn a_non_utf8_class_or_defect_folder_is_named_not_reported_missing() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
    // A class folder.
    let dir = tempfile::tempdir().unwrap();
    make_class(dir.path(), "ok");
    make_class(&dir.path().join(bad), "x");
    let msg = err_of(dir.path(), None);
    assert!(msg.contains("not valid UTF-8"), "{msg}");
    assert!(!msg.contains("missing"), "{msg}");
    // A defect folder.
    let dir = tempfile::tempdir().unwrap();
    let c = make_class(dir.path(), "ok");
    png(&c.join("test").join(bad).join("000.png"), 8, 6);
    let msg = err_of(dir.path(), None);
    assert!(msg.contains("not valid UTF-8"), "{msg}");
}
