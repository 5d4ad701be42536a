//! Every dataset layout read as published, on tiny generated trees: the format is detected,
//! the rows (class, split, label, defect, image, masks) are the expected ones, and a manifest
//! written from them reads back to the same rows.

use crate::common;

use std::path::{Path, PathBuf};

use cras::data::layouts::{detect, samples};
use cras::data::manifest::{read_manifest, samples_of, write_manifest, Split};
use cras::data::{discover, load, Format, Label, Preprocess, Sample};

fn png(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(8, 6, image::Rgb([9, 99, 199]))
        .save(path)
        .unwrap();
}

/// A mask with defect value `v` in its left half.
fn mask(path: &Path, v: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(8, 6, |x, _| image::Luma([if x < 4 { v } else { 0 }]))
        .save(path)
        .unwrap();
}

/// (class, split, label, defect, image relative to `root`, masks relative to `root`).
type Row = (String, Split, Label, String, String, Vec<String>);

fn rows(root: &Path, s: &[Sample]) -> Vec<Row> {
    let rel = |p: &PathBuf| p.strip_prefix(root).unwrap().display().to_string();
    s.iter()
        .map(|s| {
            (
                s.class.clone(),
                s.split,
                s.label,
                s.defect.clone(),
                rel(&s.image),
                s.masks.iter().map(rel).collect(),
            )
        })
        .collect()
}

fn row(c: &str, split: Split, label: Label, d: &str, img: &str, masks: &[&str]) -> Row {
    (
        c.into(),
        split,
        label,
        d.into(),
        img.into(),
        masks.iter().map(|m| m.to_string()).collect(),
    )
}

/// Both manifest formats written from `s` read back to the same rows.
fn assert_manifest_roundtrip(dir: &Path, s: &[Sample]) {
    for name in ["rows.csv", "rows.jsonl"] {
        let file = dir.join(name);
        write_manifest(&file, s).unwrap();
        assert_eq!(read_manifest(&file).unwrap(), s, "{name}");
        std::fs::remove_file(&file).unwrap();
    }
}

#[test]
fn own_folders_without_masks_several_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    png(&root.join("bolt/good/b.png"));
    png(&root.join("bolt/good/a.png"));
    png(&root.join("bolt/test/good/g.png"));
    png(&root.join("bolt/test/scratch/s.png"));
    png(&root.join("nut/good/n.png"));
    assert_eq!(detect(root).unwrap(), Format::Folders);
    let s = samples(root, None, None).unwrap();
    use {Label::*, Split::*};
    assert_eq!(
        rows(root, &s),
        vec![
            row("bolt", Train, Normal, "good", "bolt/good/a.png", &[]),
            row("bolt", Train, Normal, "good", "bolt/good/b.png", &[]),
            row("bolt", Test, Normal, "good", "bolt/test/good/g.png", &[]),
            row(
                "bolt",
                Test,
                Anomalous,
                "scratch",
                "bolt/test/scratch/s.png",
                &[]
            ),
            row("nut", Train, Normal, "good", "nut/good/n.png", &[]),
        ]
    );
    let ds = load(root, None, Some(&["nut".into(), "bolt".into()])).unwrap();
    assert_eq!(ds.class_names(), vec!["nut", "bolt"]);
    assert_eq!(ds.classes[1].defect_types(), vec!["scratch"]);
    assert!(ds.classes[1].test[1].mask.is_none());
    assert_manifest_roundtrip(root, &s);
}

#[test]
fn own_folders_one_product_with_an_optional_mask() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("widget");
    png(&root.join("good/0.png"));
    png(&root.join("test/dent/0.png"));
    png(&root.join("test/dent/1.png"));
    mask(&root.join("ground_truth/dent/1_mask.png"), 255);
    assert_eq!(detect(&root).unwrap(), Format::Folders);
    let s = samples(&root, Some(Format::Folders), None).unwrap();
    use {Label::*, Split::*};
    assert_eq!(
        rows(&root, &s),
        vec![
            row("widget", Train, Normal, "good", "good/0.png", &[]),
            row("widget", Test, Anomalous, "dent", "test/dent/0.png", &[]),
            row(
                "widget",
                Test,
                Anomalous,
                "dent",
                "test/dent/1.png",
                &["ground_truth/dent/1_mask.png"]
            ),
        ]
    );
    // A mask without its image is named.
    mask(&root.join("ground_truth/dent/7_mask.png"), 255);
    let err = samples(&root, None, None).unwrap_err().to_string();
    assert!(
        err.contains("7_mask.png") && err.contains("no test image"),
        "{err}"
    );
}

#[test]
fn visa_split_csv_read_as_published_with_0_1_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    png(&root.join("candle/Data/Images/Normal/0000.JPG"));
    png(&root.join("candle/Data/Images/Normal/0001.JPG"));
    png(&root.join("candle/Data/Images/Anomaly/000.JPG"));
    mask(&root.join("candle/Data/Masks/Anomaly/000.png"), 1);
    std::fs::create_dir_all(root.join("split_csv")).unwrap();
    std::fs::write(
        root.join("split_csv/1cls.csv"),
        "object,split,label,image,mask\n\
         candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n\
         candle,test,normal,candle/Data/Images/Normal/0001.JPG,\n\
         candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n",
    )
    .unwrap();
    assert_eq!(detect(root).unwrap(), Format::Visa);
    let s = samples(root, None, None).unwrap();
    use {Label::*, Split::*};
    assert_eq!(
        rows(root, &s),
        vec![
            row(
                "candle",
                Train,
                Normal,
                "good",
                "candle/Data/Images/Normal/0000.JPG",
                &[]
            ),
            row(
                "candle",
                Test,
                Normal,
                "good",
                "candle/Data/Images/Normal/0001.JPG",
                &[]
            ),
            row(
                "candle",
                Test,
                Anomalous,
                "anomalous",
                "candle/Data/Images/Anomaly/000.JPG",
                &["candle/Data/Masks/Anomaly/000.png"]
            ),
        ]
    );
    // The 0/1 mask marks its left half as defective (nonzero = defect).
    let pre = Preprocess {
        resize: 8,
        crop: 8,
        mode: cras::data::ResizeMode::Square,
        mask_mode: cras::data::MaskMode::Binarize,
        tiling: None,
    };
    let m = pre.load_mask(&s[2].masks[0]).unwrap();
    assert_eq!(m.iter().filter(|&&v| v == 1).count(), 32);
    assert_manifest_roundtrip(root, &s);
}

#[test]
fn mvtec_ad2_validation_rows_and_bad_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let c = root.join("can");
    png(&c.join("train/good/000.png"));
    png(&c.join("validation/good/000.png"));
    png(&c.join("test_public/good/000.png"));
    png(&c.join("test_public/bad/000.png"));
    mask(&c.join("test_public/ground_truth/bad/000_mask.png"), 255);
    png(&c.join("test_private/000.png"));
    assert_eq!(detect(root).unwrap(), Format::MvtecAd2);
    let s = samples(root, None, None).unwrap();
    use {Label::*, Split::*};
    assert_eq!(
        rows(root, &s),
        vec![
            row("can", Train, Normal, "good", "can/train/good/000.png", &[]),
            row(
                "can",
                Val,
                Normal,
                "good",
                "can/validation/good/000.png",
                &[]
            ),
            row(
                "can",
                Test,
                Normal,
                "good",
                "can/test_public/good/000.png",
                &[]
            ),
            row(
                "can",
                Test,
                Anomalous,
                "bad",
                "can/test_public/bad/000.png",
                &["can/test_public/ground_truth/bad/000_mask.png"]
            ),
        ]
    );
    let ds = load(root, None, None).unwrap();
    assert_eq!(ds.classes[0].val, vec![c.join("validation/good/000.png")]);
    assert_manifest_roundtrip(root, &s);
}

#[test]
fn loco_several_masks_per_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let c = root.join("juice_bottle");
    png(&c.join("train/good/000.png"));
    png(&c.join("validation/good/000.png"));
    png(&c.join("test/good/000.png"));
    png(&c.join("test/logical_anomalies/000.png"));
    mask(&c.join("ground_truth/logical_anomalies/000/000.png"), 255);
    mask(&c.join("ground_truth/logical_anomalies/000/001.png"), 255);
    png(&c.join("test/structural_anomalies/003.png"));
    mask(
        &c.join("ground_truth/structural_anomalies/003/000.png"),
        255,
    );
    assert_eq!(detect(root).unwrap(), Format::Loco);
    let s = samples(root, None, None).unwrap();
    use {Label::*, Split::*};
    let gt = "juice_bottle/ground_truth";
    assert_eq!(
        rows(root, &s),
        vec![
            row(
                "juice_bottle",
                Train,
                Normal,
                "good",
                "juice_bottle/train/good/000.png",
                &[]
            ),
            row(
                "juice_bottle",
                Val,
                Normal,
                "good",
                "juice_bottle/validation/good/000.png",
                &[]
            ),
            row(
                "juice_bottle",
                Test,
                Normal,
                "good",
                "juice_bottle/test/good/000.png",
                &[]
            ),
            row(
                "juice_bottle",
                Test,
                Anomalous,
                "logical_anomalies",
                "juice_bottle/test/logical_anomalies/000.png",
                &[
                    &format!("{gt}/logical_anomalies/000/000.png"),
                    &format!("{gt}/logical_anomalies/000/001.png")
                ]
            ),
            row(
                "juice_bottle",
                Test,
                Anomalous,
                "structural_anomalies",
                "juice_bottle/test/structural_anomalies/003.png",
                &[&format!("{gt}/structural_anomalies/003/000.png")]
            ),
        ]
    );
    let ds = load(root, None, None).unwrap();
    assert_eq!(ds.classes[0].test[1].masks().count(), 2);
    assert_manifest_roundtrip(root, &s);
}

#[test]
fn realiad_json_records_as_single_images() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let img = root.join("realiad_1024/audiojack");
    png(&img.join("OK/S0001/audiojack_0001_OK_C1.jpg"));
    png(&img.join("OK/S0002/audiojack_0002_OK_C1.jpg"));
    png(&img.join("NG/QS/S0003/audiojack_0003_NG_QS_C1.jpg"));
    mask(&img.join("NG/QS/S0003/audiojack_0003_NG_QS_C1.png"), 255);
    std::fs::create_dir_all(root.join("realiad_jsons/realiad_jsons")).unwrap();
    let rec = |class: &str, image: &str, mask: Option<&str>| {
        serde_json::json!({"category": "audiojack", "anomaly_class": class,
                           "image_path": image, "mask_path": mask})
    };
    let json = serde_json::json!({
        "meta": {"prefix": "", "normal_class": "OK"},
        "train": [rec("OK", "OK/S0001/audiojack_0001_OK_C1.jpg", None)],
        "test": [
            rec("OK", "OK/S0002/audiojack_0002_OK_C1.jpg", None),
            rec("QS", "NG/QS/S0003/audiojack_0003_NG_QS_C1.jpg",
                Some("NG/QS/S0003/audiojack_0003_NG_QS_C1.png")),
        ],
    });
    let file = root.join("realiad_jsons/realiad_jsons/audiojack.json");
    std::fs::write(&file, json.to_string()).unwrap();
    assert_eq!(detect(root).unwrap(), Format::Realiad);
    let s = samples(root, None, None).unwrap();
    use {Label::*, Split::*};
    let p = "realiad_1024/audiojack";
    assert_eq!(
        rows(root, &s),
        vec![
            row(
                "audiojack",
                Train,
                Normal,
                "good",
                &format!("{p}/OK/S0001/audiojack_0001_OK_C1.jpg"),
                &[]
            ),
            row(
                "audiojack",
                Test,
                Normal,
                "good",
                &format!("{p}/OK/S0002/audiojack_0002_OK_C1.jpg"),
                &[]
            ),
            row(
                "audiojack",
                Test,
                Anomalous,
                "QS",
                &format!("{p}/NG/QS/S0003/audiojack_0003_NG_QS_C1.jpg"),
                &[&format!("{p}/NG/QS/S0003/audiojack_0003_NG_QS_C1.png")]
            ),
        ]
    );
    assert_manifest_roundtrip(root, &s);
    // A record whose image is missing is named by file and position.
    let mut broken = json.clone();
    broken["test"][1]["image_path"] = "NG/QS/S0003/missing.jpg".into();
    std::fs::write(&file, broken.to_string()).unwrap();
    let err = samples(root, None, None).unwrap_err().to_string();
    assert!(
        err.contains("audiojack.json")
            && err.contains("test record 1")
            && err.contains("missing.jpg"),
        "{err}"
    );
}

#[test]
fn mvtec_layout_reads_as_discovery_did() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for class in ["b", "a"] {
        png(&root.join(format!("{class}/train/good/1.png")));
        png(&root.join(format!("{class}/train/good/0.png")));
        png(&root.join(format!("{class}/test/good/0.png")));
        png(&root.join(format!("{class}/test/crack/0.png")));
        mask(
            &root.join(format!("{class}/ground_truth/crack/0_mask.png")),
            255,
        );
    }
    assert_eq!(detect(root).unwrap(), Format::Mvtec);
    assert_eq!(
        load(root, None, None).unwrap(),
        discover(root, None).unwrap()
    );
    let list = ["b".to_string()];
    assert_eq!(
        load(root, Some(Format::Mvtec), Some(&list)).unwrap(),
        discover(root, Some(&list)).unwrap()
    );
    let s = samples_of(&discover(root, None).unwrap());
    assert_eq!(s.len(), 8);
    assert_manifest_roundtrip(root, &s);
    // A manifest of the dataset loads to the same classes, images and masks.
    let file = root.join("all.csv");
    write_manifest(&file, &s).unwrap();
    let from_manifest = load(&file, None, None).unwrap();
    assert_eq!(from_manifest.classes, discover(root, None).unwrap().classes);
}

#[test]
fn cli_writes_the_manifest_it_read_and_inspects_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    png(&root.join("bolt/good/0.png"));
    png(&root.join("bolt/good/1.png"));
    png(&root.join("bolt/test/good/0.png"));
    png(&root.join("bolt/test/scratch/0.png"));
    let file = root.join("rows.csv");
    let out = common::cras(&[
        "data",
        "manifest",
        root.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.contains("4 rows, 1 classes"), "{out}");
    assert_eq!(
        read_manifest(&file).unwrap(),
        samples(root, None, None).unwrap()
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("bolt,test,anomalous,scratch,bolt/test/scratch/0.png,"),
        "{text}"
    );
    let out = common::cras(&["data", "inspect", file.to_str().unwrap()]);
    let line = out.lines().find(|l| l.starts_with("bolt")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    // class, train, val, test good, test defect, defect images without a mask.
    assert_eq!(fields[..6], ["bolt", "2", "0", "1", "1", "1"], "{out}");
}
