//! `cras export --triton DIR`: the repository entry's layout, a config whose inputs and outputs
//! agree with the ONNX graph written beside it (with and without `--class-input`), bad flags
//! named before anything is written, and the config parsed with Triton's own
//! `model_config.proto` by `tests/triton/check_config.py` (tritonclient + onnx from the
//! virtualenv's python; skipped with a message when they are missing, a failure when
//! `CRAS_REQUIRE_TRITONCLIENT=1`). No Triton server runs here.

use crate::serve_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cras::export::onnx_pb as pb;
use prost::Message;
use serve_support::tiny_model;

fn export(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(["export", "--model"])
        .arg(&tiny_model().model)
        .arg("--triton")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text `config.pbtxt` must hold for a graph input or output, derived here from the ONNX
/// value (a table of the two element types the graph uses; the batch dim dropped).
fn expected_entry(v: &pb::ValueInfoProto) -> String {
    use pb::tensor_shape_proto::dimension::Value as D;
    let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_ref().unwrap().value.as_ref()
    else {
        panic!("not a tensor")
    };
    let data_type = match t.elem_type {
        Some(1) => "TYPE_FP32",
        Some(7) => "TYPE_INT64",
        other => panic!("unexpected element type {other:?}"),
    };
    let dims = &t.shape.as_ref().unwrap().dim;
    assert!(matches!(dims[0].value, Some(D::DimParam(_))), "batch first");
    let rest: Vec<String> = dims[1..]
        .iter()
        .map(|d| match d.value {
            Some(D::DimValue(n)) => n.to_string(),
            _ => "-1".into(),
        })
        .collect();
    let dims = if rest.is_empty() {
        "dims: [ 1 ]\n    reshape: { shape: [ ] }".to_string()
    } else {
        format!("dims: [ {} ]", rest.join(", "))
    };
    format!(
        "name: \"{}\"\n    data_type: {data_type}\n    {dims}\n",
        v.name.as_deref().unwrap()
    )
}

/// Checks that every graph input / output appears, in order, in its section of the config.
fn assert_agrees(model_dir: &Path) -> (pb::GraphProto, String) {
    let onnx = std::fs::read(model_dir.join("1/model.onnx")).unwrap();
    let graph = pb::ModelProto::decode(onnx.as_slice())
        .unwrap()
        .graph
        .unwrap();
    let text = std::fs::read_to_string(model_dir.join("config.pbtxt")).unwrap();
    let (inputs, outputs) = text.split_once("\noutput [").expect("an output section");
    for (section, values) in [(inputs, &graph.input), (outputs, &graph.output)] {
        let mut at = 0;
        for v in values {
            let entry = expected_entry(v);
            let found = section[at..]
                .find(&entry)
                .unwrap_or_else(|| panic!("{entry} not in order in\n{text}"));
            at += found + entry.len();
        }
        assert_eq!(
            section.matches("\n    name: ").count(),
            values.len(),
            "one entry per graph value:\n{text}"
        );
    }
    (graph, text)
}

#[test]
fn the_config_agrees_with_the_graph_with_and_without_the_class_input() {
    let dir = tempfile::tempdir().unwrap();
    ok(&export(dir.path(), &["--kind", "cpu"]));
    // Default name: the model file's stem.
    let plain = dir.path().join("model");
    let (graph, text) = assert_agrees(&plain);
    let names: Vec<_> = graph
        .input
        .iter()
        .map(|v| v.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["image"]);
    assert!(text.contains("name: \"model\"\n"), "{text}");
    assert!(text.contains("kind: KIND_CPU"), "{text}");
    assert!(text.contains("platform: \"onnxruntime_onnx\""), "{text}");
    let classes = serde_json::to_string(&tiny_model().classes).unwrap();
    assert!(
        text.contains(&cras::export::triton::quote(&classes)),
        "{text}"
    );
    for c in &tiny_model().classes {
        assert!(text.contains(&format!("key: \"threshold.{c}\"")), "{text}");
    }
    ok(&export(
        dir.path(),
        &[
            "--name",
            "with-class",
            "--class-input",
            "--max-batch",
            "16",
            "--preferred-batch",
            "4,16",
            "--instances",
            "2",
            "--tensorrt",
        ],
    ));
    let (graph, text) = assert_agrees(&dir.path().join("with-class"));
    let names: Vec<_> = graph
        .input
        .iter()
        .map(|v| v.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["image", "stated_class"]);
    assert!(text.contains("max_batch_size: 16\n"), "{text}");
    assert!(text.contains("preferred_batch_size: [ 4, 16 ]"), "{text}");
    assert!(text.contains("count: 2\n    kind: KIND_GPU"), "{text}");
    assert!(text.contains("name: \"tensorrt\""), "{text}");
    // Exported again into the same place: files replaced, no temporary file left.
    ok(&export(dir.path(), &["--kind", "cpu"]));
    let mut left: Vec<_> = walk(dir.path());
    left.sort();
    let rel = |p: &str| dir.path().join(p);
    assert_eq!(
        left,
        [
            rel("model/1/model.onnx"),
            rel("model/config.pbtxt"),
            rel("with-class/1/model.onnx"),
            rel("with-class/config.pbtxt")
        ]
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn bad_flags_are_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    for (args, says) in [
        (&["--max-batch", "0"][..], "--max-batch"),
        (&["--instances", "0"][..], "--instances"),
        (&["--name", "a/b"][..], "--name"),
        (&["--name", ".."][..], "--name"),
        (&["--preferred-batch", "9"][..], "--preferred-batch"),
        (&["--kind", "cpu", "--tensorrt"][..], "--tensorrt"),
    ] {
        let out = export(&repo, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!repo.exists(), "{args:?} wrote something");
    }
    // Triton flags with a plain ONNX export.
    let onnx = dir.path().join("m.onnx");
    let out = Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(["export", "--model"])
        .arg(&tiny_model().model)
        .arg("--out")
        .arg(&onnx)
        .args(["--max-batch", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-batch"));
    assert!(!onnx.exists());
}

/// The python of the active virtualenv (`VIRTUAL_ENV`), else `python3`, when it imports
/// tritonclient's model_config_pb2 and onnx.
fn python() -> Option<PathBuf> {
    let py = std::env::var_os("VIRTUAL_ENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "python3".into());
    let imports = Command::new(&py)
        .args(["-c", "import tritonclient.grpc.model_config_pb2, onnx"])
        .output();
    match imports {
        Ok(o) if o.status.success() => Some(py),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var("CRAS_REQUIRE_TRITONCLIENT").as_deref() != Ok("1"),
                "CRAS_REQUIRE_TRITONCLIENT=1 but {} cannot import tritonclient and onnx: {why}",
                py.display()
            );
            eprintln!(
                "skipped: {} cannot import tritonclient[grpc] and onnx (pip install them in \
                 VIRTUAL_ENV): {why}",
                py.display()
            );
            None
        }
    }
}

fn check_config(py: &Path, model_dir: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/triton/check_config.py");
    Command::new(py)
        .arg(script)
        .arg(model_dir)
        .output()
        .unwrap()
}

#[test]
fn tritons_own_schema_parses_the_config_and_it_matches_the_graph() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    ok(&export(dir.path(), &["--name", "plain", "--kind", "cpu"]));
    ok(&export(
        dir.path(),
        &["--name", "classes", "--class-input", "--tensorrt"],
    ));
    for name in ["plain", "classes"] {
        let out = check_config(&py, &dir.path().join(name));
        ok(&out);
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK: "));
    }
    // The check can fail: an unknown field, a wrong dim and a renamed folder are caught.
    let cfg = dir.path().join("plain/config.pbtxt");
    let good = std::fs::read_to_string(&cfg).unwrap();
    for (bad, says) in [
        (format!("{good}bogus_field: 1\n"), "bogus_field"),
        (
            good.replacen("dims: [ 3, ", "dims: [ 4, ", 1),
            "config TYPE_FP32 [4",
        ),
        (good.replacen("TYPE_INT64", "TYPE_INT32", 1), "TYPE_INT32"),
    ] {
        std::fs::write(&cfg, &bad).unwrap();
        let out = check_config(&py, &dir.path().join("plain"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{says}: {err}");
    }
    std::fs::write(&cfg, &good).unwrap();
    std::fs::rename(dir.path().join("plain"), dir.path().join("other")).unwrap();
    let out = check_config(&py, &dir.path().join("other"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("folder's name"));
}
