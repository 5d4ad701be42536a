//! Manifests (`--data rows.csv` / `rows.jsonl`): a good manifest becomes the dataset it
//! lists (val rows, several masks, defect types), and every bad row is an error naming the
//! manifest, the line and the value or file at fault.

use std::path::Path;

use cras::data::layouts::detect;
use cras::data::{load, Format};

fn png(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(8, 6, image::Rgb([9, 99, 199]))
        .save(path)
        .unwrap();
}

/// A folder with images `img/0.png` .. `img/4.png` and masks `m/0.png`, `m/1.png`.
fn files() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..5 {
        png(&tmp.path().join(format!("img/{i}.png")));
    }
    png(&tmp.path().join("m/0.png"));
    png(&tmp.path().join("m/1.png"));
    tmp
}

const HEADER: &str = "class,split,label,image,mask,defect\n";
const GOOD_ROWS: &str = "bolt,train,normal,img/0.png,,\n\
                         bolt,val,normal,img/1.png,,\n\
                         bolt,test,good,img/2.png,,\n\
                         bolt,test,anomalous,img/3.png,m/0.png;m/1.png,scratch\n\
                         bolt,test,anomaly,img/4.png,,\n";

/// Writes `text` as `name` in `dir` and returns the load error.
fn err_of(dir: &Path, name: &str, text: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let e = load(&file, None, None).unwrap_err().to_string();
    assert!(e.contains(name), "the error names the manifest: {e}");
    e
}

#[test]
fn csv_manifest_lists_val_rows_masks_and_defects() {
    let tmp = files();
    let file = tmp.path().join("rows.csv");
    std::fs::write(&file, format!("{HEADER}{GOOD_ROWS}")).unwrap();
    assert_eq!(detect(&file).unwrap(), Format::Manifest);
    let ds = load(&file, None, None).unwrap();
    let c = &ds.classes[0];
    assert_eq!(c.name, "bolt");
    assert_eq!(c.train, vec![tmp.path().join("img/0.png")]);
    assert_eq!(c.val, vec![tmp.path().join("img/1.png")]);
    let t = &c.test;
    assert_eq!((t[0].defect.as_str(), t[0].is_anomalous()), ("good", false));
    assert_eq!(t[1].defect, "scratch");
    assert_eq!(
        t[1].masks().cloned().collect::<Vec<_>>(),
        vec![tmp.path().join("m/0.png"), tmp.path().join("m/1.png")]
    );
    assert_eq!(
        (t[2].defect.as_str(), t[2].mask.is_none()),
        ("anomalous", true)
    );
}

#[test]
fn jsonl_manifest_reads_the_same_dataset() {
    let tmp = files();
    let lines = [
        r#"{"class":"bolt","split":"train","label":"normal","image":"img/0.png"}"#,
        r#"{"class":"bolt","split":"val","label":"normal","image":"img/1.png"}"#,
        r#"{"class":"bolt","split":"test","label":"normal","image":"img/2.png"}"#,
        r#"{"class":"bolt","split":"test","label":"anomalous","image":"img/3.png","mask":["m/0.png","m/1.png"],"defect":"scratch"}"#,
        "",
        r#"{"class":"bolt","split":"test","label":"anomalous","image":"img/4.png","mask":null}"#,
    ];
    let jsonl = tmp.path().join("rows.jsonl");
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let csv = tmp.path().join("rows.csv");
    std::fs::write(&csv, format!("{HEADER}{GOOD_ROWS}")).unwrap();
    assert_eq!(
        load(&jsonl, None, None).unwrap().classes,
        load(&csv, None, None).unwrap().classes
    );
}

#[test]
fn missing_image_or_mask_names_line_and_file() {
    let tmp = files();
    let e = err_of(
        tmp.path(),
        "a.csv",
        &format!("{HEADER}bolt,train,normal,img/0.png,,\nbolt,train,normal,img/nope.png,,\n"),
    );
    assert!(
        e.contains("line 3") && e.contains("nope.png") && e.contains("not found"),
        "{e}"
    );
    let e = err_of(
        tmp.path(),
        "b.csv",
        &format!(
            "{HEADER}bolt,train,normal,img/0.png,,\nbolt,test,anomalous,img/1.png,m/gone.png,\n"
        ),
    );
    assert!(
        e.contains("line 3") && e.contains("mask") && e.contains("gone.png"),
        "{e}"
    );
}

#[test]
fn unknown_split_or_label_names_line_and_value() {
    let tmp = files();
    let e = err_of(
        tmp.path(),
        "a.csv",
        &format!("{HEADER}bolt,trian,normal,img/0.png,,\n"),
    );
    assert!(
        e.contains("line 2") && e.contains("unknown split 'trian'"),
        "{e}"
    );
    let e = err_of(
        tmp.path(),
        "b.jsonl",
        "{\"class\":\"bolt\",\"split\":\"train\",\"label\":\"normal\",\"image\":\"img/0.png\"}\n\
         {\"class\":\"bolt\",\"split\":\"test\",\"label\":\"broken\",\"image\":\"img/1.png\"}\n",
    );
    assert!(
        e.contains("line 2") && e.contains("unknown label 'broken'"),
        "{e}"
    );
}

#[test]
fn mask_on_a_normal_image_names_line_and_files() {
    let tmp = files();
    let e = err_of(
        tmp.path(),
        "a.csv",
        &format!("{HEADER}bolt,train,normal,img/0.png,,\nbolt,test,normal,img/1.png,m/0.png,\n"),
    );
    assert!(
        e.contains("line 3")
            && e.contains("1.png")
            && e.contains("0.png")
            && e.contains("has a mask"),
        "{e}"
    );
}

#[test]
fn anomalous_training_image_is_an_error() {
    let tmp = files();
    let e = err_of(
        tmp.path(),
        "a.csv",
        &format!("{HEADER}bolt,train,anomalous,img/0.png,,\n"),
    );
    assert!(
        e.contains("line 2") && e.contains("normal images only"),
        "{e}"
    );
}

#[test]
fn class_without_training_images_is_named() {
    let tmp = files();
    let e = err_of(
        tmp.path(),
        "a.csv",
        &format!("{HEADER}bolt,train,normal,img/0.png,,\nnut,test,normal,img/1.png,,\n"),
    );
    assert!(e.contains("class 'nut' has no training images"), "{e}");
}

#[test]
fn bad_header_and_bad_json_are_named() {
    let tmp = files();
    let e = err_of(
        tmp.path(),
        "a.csv",
        "class,split,label,picture\nbolt,train,normal,x\n",
    );
    assert!(
        e.contains("line 1") && e.contains("unknown column 'picture'"),
        "{e}"
    );
    let e = err_of(
        tmp.path(),
        "b.csv",
        "class,split,label\nbolt,train,normal\n",
    );
    assert!(e.contains("no 'image' column"), "{e}");
    let e = err_of(tmp.path(), "c.csv", &format!("{HEADER}bolt,train,normal\n"));
    assert!(e.contains("line 2"), "{e}");
    let e = err_of(tmp.path(), "d.jsonl", "{\"class\":\"bolt\",\n");
    assert!(e.contains("line 1"), "{e}");
}
