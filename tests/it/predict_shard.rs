//! `cras predict --manifest LIST --shard K/N --out DIR`: the shards cover every row exactly
//! once and their lines equal an unsharded `cras predict` of the same files; a resume after an
//! interruption skips the rows already done and ends with the same file; a failed row is
//! retried by a rerun; `--class-from-manifest`; bad specs, an empty list and an unwritable
//! folder are named before any image is scored.

use crate::serve_support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use serve_support::tiny_model;

fn cras(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(["predict", "--device", "cpu", "--model"])
        .arg(&tiny_model().model)
        .args(args)
        .output()
        .unwrap()
}

fn shard(list: &Path, spec: &str, out: &Path, more: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec![
        "--manifest".as_ref(),
        list.as_os_str(),
        "--shard".as_ref(),
        spec.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(more.iter().map(OsStr::new));
    cras(&args)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A line without the fields that differ from run to run (`ms`) or from `cras predict`
/// (`row`).
fn comparable(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    o.remove("ms");
    o.remove("row");
    v
}

/// Seven image files (copies of the tiny model's test images) and a text list of them, one
/// path per line, relative to the list.
fn seven_images(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let images = &tiny_model().images;
    let mut files = Vec::new();
    for i in 0..7 {
        let p = dir.join(format!("img/{i}.png"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(&images[i % images.len()], &p).unwrap();
        files.push(p);
    }
    let list = dir.join("list.txt");
    let text: String = (0..7).map(|i| format!("img/{i}.png\n")).collect();
    std::fs::write(&list, text).unwrap();
    (list, files)
}

#[test]
fn shards_cover_every_row_once_and_equal_an_unsharded_predict() {
    let dir = tempfile::tempdir().unwrap();
    let (list, files) = seven_images(dir.path());
    let out = dir.path().join("out");
    let mut by_row = BTreeMap::new();
    for k in 0..3 {
        ok(&shard(
            &list,
            &format!("{k}/3"),
            &out,
            &["--batch-size", "2"],
        ));
        let file = out.join(format!("shard-{k}-of-3.jsonl"));
        for line in json_lines(&std::fs::read_to_string(&file).unwrap()) {
            let row = line["row"].as_u64().unwrap() as usize;
            assert_eq!(row % 3, k, "row {row} in shard {k}");
            assert!(by_row.insert(row, line).is_none(), "row {row} twice");
        }
    }
    assert_eq!(
        by_row.keys().copied().collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "only the final files are left: {names:?}");
    // The same files through plain `cras predict`, line for line (paths as the list joins them).
    let args: Vec<&OsStr> = files.iter().map(|f| f.as_os_str()).collect();
    let plain = cras(&args);
    ok(&plain);
    let plain = json_lines(&String::from_utf8_lossy(&plain.stdout));
    assert_eq!(plain.len(), 7);
    for (row, line) in &by_row {
        assert_eq!(
            comparable(line.clone()),
            comparable(plain[*row].clone()),
            "row {row}"
        );
    }
    // Without --shard: one shard of everything.
    ok(&shard(&list, "0/1", &dir.path().join("all"), &[]));
    let all = std::fs::read_to_string(dir.path().join("all/shard-0-of-1.jsonl")).unwrap();
    let all: Vec<Value> = json_lines(&all).into_iter().map(comparable).collect();
    assert_eq!(all, plain.into_iter().map(comparable).collect::<Vec<_>>());
}

#[test]
fn a_resume_skips_the_rows_done_and_ends_with_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let (list, _) = seven_images(dir.path());
    let out = dir.path().join("out");
    ok(&shard(&list, "1/2", &out, &[]));
    let fin = out.join("shard-1-of-2.jsonl");
    let full = json_lines(&std::fs::read_to_string(&fin).unwrap());
    assert_eq!(full.len(), 3, "rows 1, 3, 5");
    // Interrupted after two rows, the second line's time marked, the third torn mid-write.
    let mut kept = full[..2].to_vec();
    kept[1]["ms"] = (-1.0).into();
    let mut partial: String = kept.iter().map(|l| format!("{l}\n")).collect();
    partial.push_str(&full[2].to_string()[..20]);
    std::fs::remove_file(&fin).unwrap();
    std::fs::write(out.join("shard-1-of-2.jsonl.partial"), partial).unwrap();
    let again = shard(&list, "1/2", &out, &[]);
    ok(&again);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("2 kept from an earlier run, 1 scored now"),
        "{err}"
    );
    let resumed = json_lines(&std::fs::read_to_string(&fin).unwrap());
    assert_eq!(resumed[1]["ms"], -1.0, "the kept row was not scored again");
    let strip = |v: &[Value]| v.iter().cloned().map(comparable).collect::<Vec<_>>();
    assert_eq!(strip(&resumed), strip(&full));
    assert!(!out.join("shard-1-of-2.jsonl.partial").exists());
}

#[test]
fn a_failed_row_is_retried_by_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let (list, files) = seven_images(dir.path());
    let moved = dir.path().join("away.png");
    std::fs::rename(&files[4], &moved).unwrap();
    let out = dir.path().join("out");
    let first = shard(&list, "0/1", &out, &[]);
    assert_eq!(first.status.code(), Some(1));
    let fin = out.join("shard-0-of-1.jsonl");
    let lines = json_lines(&std::fs::read_to_string(&fin).unwrap());
    assert_eq!(
        lines.len(),
        7,
        "every row has a line, the failed one its error"
    );
    assert!(lines[4]["error"].is_string() && lines[4].get("score").is_none());
    std::fs::rename(&moved, &files[4]).unwrap();
    let second = shard(&list, "0/1", &out, &[]);
    ok(&second);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("6 kept from an earlier run, 1 scored now"),
        "{err}"
    );
    let lines = json_lines(&std::fs::read_to_string(&fin).unwrap());
    assert!(lines.iter().all(|l| l["score"].is_number()), "{lines:?}");
}

#[test]
fn class_from_manifest_states_each_rows_class() {
    let dir = tempfile::tempdir().unwrap();
    let (list, files) = seven_images(dir.path());
    let classes = &tiny_model().classes;
    let mut csv = String::from("class,split,label,image\n");
    for (i, f) in files.iter().enumerate() {
        csv.push_str(&format!("{},test,normal,{}\n", classes[i % 2], f.display()));
    }
    let manifest = dir.path().join("rows.csv");
    std::fs::write(&manifest, csv).unwrap();
    let out = dir.path().join("out");
    ok(&shard(&manifest, "0/1", &out, &["--class-from-manifest"]));
    let lines = json_lines(&std::fs::read_to_string(out.join("shard-0-of-1.jsonl")).unwrap());
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["class"], classes[i % 2].as_str(), "{l}");
    }
    // A plain list has no class column.
    let e = shard(
        &list,
        "0/1",
        &dir.path().join("x"),
        &["--class-from-manifest"],
    );
    assert_eq!(e.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&e.stderr).contains("class column"));
}

#[test]
fn bad_specs_lists_and_folders_are_named_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let (list, _) = seven_images(dir.path());
    let out = dir.path().join("out");
    for spec in ["3/2", "0/0", "a/b", "-1/2", "1"] {
        let o = cras(&[
            "--manifest".as_ref(),
            list.as_os_str(),
            format!("--shard={spec}").as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{spec}: {err}");
        assert!(
            err.contains("--shard") && err.contains(spec),
            "{spec}: {err}"
        );
        assert!(!out.exists(), "{spec}: the output folder was made");
    }
    // Shard flags with PATHs instead of a list.
    let o = cras(&["--out".as_ref(), out.as_os_str(), list.as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("'--out <DIR>' cannot be used"));
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "# no images\n").unwrap();
    let o = shard(&empty, "0/1", &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("empty.txt") && err.contains("no images"),
        "{err}"
    );
    assert!(!out.exists());
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = shard(&list, "0/1", &file, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("a-file") && err.contains("output folder"),
        "{err}"
    );
}
