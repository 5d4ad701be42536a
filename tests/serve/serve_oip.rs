//! The Open Inference Protocol (`/v2`) of `cras serve` on the tiny model.
//!
//! - Through NVIDIA's own client, `tritonclient.http` (`tests/oip/check_oip.py`, run with the
//!   python of `VIRTUAL_ENV`, else `python3`): readiness, metadata as the client parses it, and
//!   inference with the image files as BYTES (binary and JSON), the preprocessed FP32 tensor,
//!   the class by name and by index, outputs as binary data: scores equal `cras predict`'s and
//!   the library `Predictor`'s bit for bit, classes, decisions and maps equal. Without
//!   tritonclient the test says why and passes; `CRAS_REQUIRE_TRITONCLIENT=1` (set by
//!   `.ci/run`) makes that a failure.
//! - Over plain HTTP: the binary tensor data extension both ways, the protocol's errors (400 for
//!   a wrong datatype, shape, missing input, bad base64, binary lengths that do not add up; 404
//!   for an unknown model or version), the token, metrics and the provenance headers.

use crate::serve_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use cras::data::decode::decode_rgb;
use cras::infer::ClassChoice;
use cras::infer::{Prediction, Predictor};
use serde_json::{json, Value};
use serve_support::{get, tiny_model, TestServer};
use sha2::{Digest, Sha256};

const NAME: &str = "tiny-line";

fn predictor() -> Predictor {
    Predictor::load(&tiny_model().model, &candle_core::Device::Cpu).expect("model loads")
}

/// The library's predictions for the test images, one image at a time.
fn direct(choice: impl Fn(usize) -> ClassChoice) -> Vec<Prediction> {
    let p = predictor();
    tiny_model()
        .images
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let im = decode_rgb(path).expect("decodes");
            p.predict_images(&[im], &choice(i))
                .expect("predicts")
                .remove(0)
        })
        .collect()
}

fn score_bits(preds: &[Prediction]) -> Vec<u64> {
    preds.iter().map(|p| p.score.to_bits() as u64).collect()
}

fn map_hashes(preds: &[Prediction]) -> Vec<String> {
    let p = predictor();
    preds
        .iter()
        .map(|pred| {
            let bytes: Vec<u8> = p
                .anomaly_map(pred)
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect()
}

/// The python of `VIRTUAL_ENV` (else `python3`) when it imports tritonclient.http.
fn python_with_tritonclient() -> Option<PathBuf> {
    let python = std::env::var_os("VIRTUAL_ENV")
        .map(|v| PathBuf::from(v).join("bin/python"))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = Command::new(&python)
        .args(["-c", "import numpy, tritonclient.http"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let why = format!(
        "tritonclient[http] is not importable by {} (set VIRTUAL_ENV to a virtualenv with it)",
        python.display()
    );
    if std::env::var("CRAS_REQUIRE_TRITONCLIENT").is_ok_and(|v| v == "1") {
        panic!("{why}; required by CRAS_REQUIRE_TRITONCLIENT=1");
    }
    eprintln!("skipped: {why}");
    None
}

/// Writes `values` [n, 3, s, s] as a little-endian float32 .npy file.
fn write_npy(path: &Path, values: &[f32], shape: [usize; 4]) {
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}, {}), }}",
        shape[0], shape[1], shape[2], shape[3]
    );
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut f = std::fs::File::create(path).expect("npy file");
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(&header).unwrap();
    for v in values {
        f.write_all(&v.to_le_bytes()).unwrap();
    }
}

/// `cras predict` on the test images, as JSON lines in a file.
fn cras_predict(dir: &Path) -> PathBuf {
    let m = tiny_model();
    let out = Command::new(env!("CARGO_BIN_EXE_cras"))
        .args(["predict", "--device", "cpu", "--model"])
        .arg(&m.model)
        .args(&m.images)
        .output()
        .expect("cras predict runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("predict.jsonl");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn as_u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_u64().expect("integer"))
        .collect()
}

fn as_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

/// Asserts one run of the script equals `want` (scores bit for bit, classes, decisions, maps).
fn assert_run(run: &Value, label: &str, want: &[Prediction]) {
    let m = tiny_model();
    let p = predictor();
    assert_eq!(
        as_u64s(&run["image_score_bits"]),
        score_bits(want),
        "{label}: scores"
    );
    let sims: Vec<u64> = want
        .iter()
        .map(|p| p.class_similarity.to_bits() as u64)
        .collect();
    assert_eq!(
        as_u64s(&run["class_similarity_bits"]),
        sims,
        "{label}: similarity"
    );
    let classes: Vec<String> = want.iter().map(|w| m.classes[w.class].clone()).collect();
    assert_eq!(as_strings(&run["class_name"]), classes, "{label}: classes");
    let index: Vec<u64> = want.iter().map(|w| w.class as u64).collect();
    assert_eq!(as_u64s(&run["class_index"]), index, "{label}: class index");
    let decisions: Vec<String> = want
        .iter()
        .map(|w| {
            cras::infer::decide(w.score, p.threshold(w.class))
                .as_str()
                .to_string()
        })
        .collect();
    assert_eq!(
        as_strings(&run["decision"]),
        decisions,
        "{label}: decisions"
    );
    let thresholds: Vec<u64> = want
        .iter()
        .map(|w| p.threshold(w.class).unwrap_or(f32::NAN).to_bits() as u64)
        .collect();
    assert_eq!(
        as_u64s(&run["threshold_bits"]),
        thresholds,
        "{label}: thresholds"
    );
    let s = p.map_size() as u64;
    assert_eq!(
        as_u64s(&run["anomaly_map_shape"]),
        vec![want.len() as u64, s, s],
        "{label}: map shape"
    );
    assert_eq!(
        as_strings(&run["anomaly_map_sha256"]),
        map_hashes(want),
        "{label}: maps"
    );
    assert_eq!(run["parameters"]["thresholds_source"], "model", "{label}");
    assert_eq!(run["parameters"]["model_generation"], 1, "{label}");
}

fn assert_metadata(report: &Value) {
    let m = tiny_model();
    let s = predictor().input_size() as i64;
    assert_eq!(report["live"], true);
    assert_eq!(report["ready"], true);
    assert_eq!(report["model_ready"], true);
    assert_eq!(report["server_metadata"]["name"], "cras");
    assert_eq!(
        report["server_metadata"]["extensions"],
        json!(["binary_tensor_data"])
    );
    let meta = &report["metadata"];
    assert_eq!(meta["name"], NAME);
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(meta["parameters"]["classes"], json!(m.classes));
    let inputs: Vec<(String, String, Value)> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().into(),
                i["datatype"].as_str().unwrap().into(),
                i["shape"].clone(),
            )
        })
        .collect();
    assert_eq!(
        inputs,
        vec![
            ("image_bytes".into(), "BYTES".into(), json!([-1])),
            ("image".into(), "FP32".into(), json!([-1, 3, s, s])),
            ("class_name".into(), "BYTES".into(), json!([-1])),
            ("stated_class".into(), "INT64".into(), json!([-1])),
        ]
    );
    let outputs: Vec<(&str, &str)> = meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap(), o["datatype"].as_str().unwrap()))
        .collect();
    assert!(outputs.contains(&("image_score", "FP32")), "{outputs:?}");
    assert!(outputs.contains(&("anomaly_map", "FP32")), "{outputs:?}");
    assert!(outputs.contains(&("decision", "BYTES")), "{outputs:?}");
    assert!(outputs.contains(&("is_anomalous", "INT8")), "{outputs:?}");
    let map = meta["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "anomaly_map")
        .unwrap();
    assert_eq!(map["shape"], json!([-1, s, s]));
}

#[test]
fn tritonclient_scores_equal_cras_predict_bit_for_bit() {
    let Some(python) = python_with_tritonclient() else {
        return;
    };
    let m = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let expect = cras_predict(dir.path());
    let p = predictor();
    let images: Vec<_> = m.images.iter().map(|f| decode_rgb(f).unwrap()).collect();
    let tensor = p.preprocess(&images).unwrap();
    let s = p.input_size();
    let values: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
    let npy = dir.path().join("batch.npy");
    write_npy(&npy, &values, [images.len(), 3, s, s]);
    let server = TestServer::start(|c| {
        c.model_name = Some(NAME.into());
        c.max_wait_ms = 20;
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oip/check_oip.py");
    let class = m.classes[1].clone();
    let out = Command::new(&python)
        .arg(&script)
        .args(["--url", &server.base, "--model", NAME, "--class", &class])
        .arg("--tensor")
        .arg(&npy)
        .arg("--expect")
        .arg(&expect)
        .args(&m.images)
        .output()
        .expect("the check script runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    assert!(
        out.status.success(),
        "problems: {}\n{stderr}",
        report["problems"]
    );
    assert_eq!(report["problems"], json!([]));
    assert_metadata(&report);
    let matched = direct(|_| ClassChoice::Match);
    for run in ["binary", "json", "all_outputs", "tensor"] {
        assert_run(&report["runs"][run], run, &matched);
    }
    let k = m.classes.iter().position(|c| *c == class).unwrap();
    let stated = direct(|_| ClassChoice::Stated(vec![k]));
    assert_run(&report["runs"]["class_name"], "class_name", &stated);
    assert_run(&report["runs"]["stated_class"], "stated_class", &stated);
    assert_eq!(report["unknown_model"]["status"], "404");
    assert!(report["unknown_model"]["message"]
        .as_str()
        .unwrap()
        .contains(NAME));
}

/// An answer with its headers and raw body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        let n = self
            .header("inference-header-content-length")
            .map_or(self.body.len(), |v| v.parse().unwrap());
        serde_json::from_slice(&self.body[..n])
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// POSTs `json` followed by `binary` (with the extension's header when `binary` is Some).
fn infer_raw(url: &str, json: &Value, binary: Option<&[u8]>, token: Option<&str>) -> Raw {
    let text = json.to_string();
    let mut req = ureq::post(url);
    let mut body = text.clone().into_bytes();
    if let Some(b) = binary {
        req = req.set("Inference-Header-Content-Length", &text.len().to_string());
        body.extend_from_slice(b);
    }
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let response = match req.send_bytes(&body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let headers = response
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = response.header(&n).unwrap_or_default().to_string();
            (n, v)
        })
        .collect();
    let status = response.status();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
    Raw {
        status,
        headers,
        body,
    }
}

/// BYTES elements serialized for binary data: a 4-byte little-endian length before each.
fn length_prefixed(items: &[Vec<u8>]) -> Vec<u8> {
    items
        .iter()
        .flat_map(|b| {
            (b.len() as u32)
                .to_le_bytes()
                .into_iter()
                .chain(b.iter().copied())
        })
        .collect()
}

fn image_files() -> Vec<Vec<u8>> {
    tiny_model()
        .images
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

#[test]
fn binary_tensor_data_both_ways_and_headers() {
    let server = TestServer::start(|c| c.model_name = Some(NAME.into()));
    let url = server.url(&format!("/v2/models/{NAME}/infer"));
    let files = image_files();
    let data = length_prefixed(&files);
    let request = json!({
        "id": "r1",
        "inputs": [{"name": "image_bytes", "shape": [files.len(), 1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": data.len()}}],
        "outputs": [{"name": "image_score", "parameters": {"binary_data": true}},
                    {"name": "class_name", "parameters": {"binary_data": true}},
                    {"name": "decision"}]
    });
    let a = infer_raw(&url, &request, Some(&data), None);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    assert_eq!(a.header("x-cras-model-generation"), Some("1"));
    assert_eq!(
        a.header("x-cras-thresholds"),
        Some("source=model; version=model")
    );
    let head = a.json();
    assert_eq!(head["model_name"], NAME);
    assert_eq!(head["id"], "r1");
    assert_eq!(head["parameters"]["thresholds_version"], "model");
    let outputs = head["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 3, "only the outputs asked for: {head}");
    let n: usize = a
        .header("inference-header-content-length")
        .unwrap()
        .parse()
        .unwrap();
    let raw = &a.body[n..];
    let score_len = outputs[0]["parameters"]["binary_data_size"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(score_len, 4 * files.len());
    assert_eq!(outputs[0]["shape"], json!([files.len()]));
    let scores: Vec<u64> = raw[..score_len]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as u64)
        .collect();
    let want = direct(|_| ClassChoice::Match);
    assert_eq!(
        scores,
        score_bits(&want),
        "binary scores equal the library's"
    );
    // BYTES output: each class name after its 4-byte length.
    let mut names = Vec::new();
    let mut at = score_len;
    while at < raw.len() {
        let len = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap()) as usize;
        names.push(String::from_utf8(raw[at + 4..at + 4 + len].to_vec()).unwrap());
        at += 4 + len;
    }
    let classes: Vec<String> = want
        .iter()
        .map(|p| tiny_model().classes[p.class].clone())
        .collect();
    assert_eq!(names, classes);
    assert_eq!(outputs[2]["datatype"], "BYTES");
    assert_eq!(outputs[2]["data"].as_array().unwrap().len(), files.len());

    // JSON only: base64 strings in, JSON data out, with a request threshold.
    let b64: Vec<String> = files
        .iter()
        .map(|f| base64::engine::general_purpose::STANDARD.encode(f))
        .collect();
    let request = json!({
        "inputs": [{"name": "image_bytes", "shape": [files.len()], "datatype": "BYTES", "data": b64}],
        "parameters": {"threshold": 0.0},
        "outputs": [{"name": "image_score"}, {"name": "is_anomalous"}, {"name": "threshold"}]
    });
    let a = infer_raw(&url, &request, None, None);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert!(a.header("inference-header-content-length").is_none());
    let head = a.json();
    let json_scores: Vec<u64> = head["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v.as_f64().unwrap() as f32).to_bits() as u64)
        .collect();
    assert_eq!(json_scores, score_bits(&want));
    assert_eq!(
        head["outputs"][1]["data"],
        json!(vec![1; files.len()]),
        "threshold 0: all defects"
    );
    assert_eq!(head["outputs"][2]["data"], json!(vec![0.0; files.len()]));

    // /v1/predict carries the same provenance, in the body and the headers.
    let v1 = ureq::post(&server.url("/v1/predict"))
        .set("Content-Type", "image/png")
        .send_bytes(&files[0])
        .unwrap();
    assert_eq!(
        v1.header("X-Cras-Thresholds"),
        Some("source=model; version=model")
    );
    assert_eq!(v1.header("X-Cras-Model-Generation"), Some("1"));
    let body: Value = serde_json::from_str(&v1.into_string().unwrap()).unwrap();
    assert_eq!(
        body["thresholds"],
        json!({"source": "model", "version": "model"})
    );
    assert_eq!(body["model_generation"], 1);

    // Counted like /v1 (route patterns).
    let metrics = get(&server.url("/metrics"), None).body;
    assert!(
        metrics.contains("cras_requests_total{path=\"/v2/models/{name}/infer\",status=\"200\"} 2"),
        "{metrics}"
    );
}

#[test]
fn protocol_errors_name_what_is_wrong() {
    let server = TestServer::start(|c| c.model_name = Some(NAME.into()));
    let url = server.url(&format!("/v2/models/{NAME}/infer"));
    let files = image_files();
    let one = length_prefixed(&files[..1]);
    let bytes_input = |shape: Value, size: usize| {
        json!({"inputs": [{"name": "image_bytes", "shape": shape, "datatype": "BYTES",
                           "parameters": {"binary_data_size": size}}]})
    };
    let s = predictor().input_size();
    let cases: Vec<(&str, Raw, u16, &str)> = vec![
        (
            "wrong datatype",
            infer_raw(
                &url,
                &json!({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "FP32", "data": [1.0]}]}),
                None,
                None,
            ),
            400,
            "datatype FP32",
        ),
        (
            "wrong shape",
            infer_raw(
                &url,
                &json!({"inputs": [{"name": "image", "shape": [1, 3, 5, 5], "datatype": "FP32", "data": vec![0.0; 75]}]}),
                None,
                None,
            ),
            400,
            "[B, 3, 32, 32]",
        ),
        (
            "wrong element count",
            infer_raw(
                &url,
                &json!({"inputs": [{"name": "image", "shape": [1, 3, s, s], "datatype": "FP32", "data": [0.0]}]}),
                None,
                None,
            ),
            400,
            "holds 1 elements",
        ),
        (
            "missing input",
            infer_raw(
                &url,
                &json!({"inputs": [{"name": "class_name", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}),
                None,
                None,
            ),
            400,
            "missing input",
        ),
        (
            "unknown input",
            infer_raw(
                &url,
                &json!({"inputs": [{"name": "pixels", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}),
                None,
                None,
            ),
            400,
            "unknown input 'pixels'",
        ),
        (
            "bad base64",
            infer_raw(
                &url,
                &json!({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]}]}),
                None,
                None,
            ),
            400,
            "base64",
        ),
        (
            "header length past the body",
            {
                let text = bytes_input(json!([1]), one.len()).to_string();
                let r = ureq::post(&url)
                    .set(
                        "Inference-Header-Content-Length",
                        &(text.len() + one.len() + 1).to_string(),
                    )
                    .send_bytes(&[text.as_bytes(), &one].concat());
                let r = match r {
                    Ok(r) => r,
                    Err(ureq::Error::Status(_, r)) => r,
                    Err(e) => panic!("{e}"),
                };
                Raw {
                    status: r.status(),
                    headers: vec![],
                    body: r.into_string().unwrap().into_bytes(),
                }
            },
            400,
            "Inference-Header-Content-Length",
        ),
        (
            "binary size past the body",
            infer_raw(
                &url,
                &bytes_input(json!([1]), one.len() + 1),
                Some(&one),
                None,
            ),
            400,
            "announces",
        ),
        (
            "unclaimed binary data",
            infer_raw(
                &url,
                &bytes_input(json!([1]), one.len() - 1),
                Some(&one),
                None,
            ),
            400,
            "no input claims",
        ),
        (
            "binary data without the header",
            infer_raw(&url, &bytes_input(json!([1]), one.len()), None, None),
            400,
            "Inference-Header-Content-Length",
        ),
        (
            "batch of classes differs",
            infer_raw(
                &url,
                &json!({"inputs": [
                {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": one.len()}},
                {"name": "stated_class", "shape": [2], "datatype": "INT64", "data": [0, 1]}]}),
                Some(&one),
                None,
            ),
            400,
            "batch 2",
        ),
        (
            "unknown class",
            infer_raw(
                &url,
                &json!({"inputs": [
                {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": one.len()}},
                {"name": "class_name", "shape": [1], "datatype": "BYTES", "data": ["nope"]}]}),
                Some(&one),
                None,
            ),
            400,
            "unknown class 'nope'",
        ),
        (
            "unknown output",
            infer_raw(
                &url,
                &json!({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": one.len()}}],
                                    "outputs": [{"name": "heat"}]}),
                Some(&one),
                None,
            ),
            400,
            "unknown output 'heat'",
        ),
        (
            "undecodable image",
            infer_raw(
                &url,
                &bytes_input(json!([1]), 8),
                Some(&length_prefixed(&[b"garb".to_vec()])),
                None,
            ),
            400,
            "image_bytes[0]",
        ),
        (
            "cut BYTES element",
            infer_raw(
                &url,
                &bytes_input(json!([1]), one.len() - 1),
                Some(&one[..one.len() - 1]),
                None,
            ),
            400,
            "element 0 announces",
        ),
        (
            "not JSON",
            infer_raw(&url, &json!("just a string"), None, None),
            400,
            "not valid JSON",
        ),
        (
            "unknown model",
            infer_raw(
                &server.url("/v2/models/other/infer"),
                &bytes_input(json!([1]), one.len()),
                Some(&one),
                None,
            ),
            404,
            "unknown model 'other'",
        ),
        (
            "unknown version",
            infer_raw(
                &server.url(&format!("/v2/models/{NAME}/versions/7/infer")),
                &bytes_input(json!([1]), one.len()),
                Some(&one),
                None,
            ),
            404,
            "no version '7'",
        ),
    ];
    for (what, answer, status, needle) in cases {
        assert_eq!(
            answer.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let error = answer.error();
        assert!(
            error.contains(needle),
            "{what}: '{error}' does not name '{needle}'"
        );
    }
    // Version 1 is served under its explicit path too; unknown names 404 on every route.
    let ok = infer_raw(
        &server.url(&format!("/v2/models/{NAME}/versions/1/infer")),
        &bytes_input(json!([1]), one.len()),
        Some(&one),
        None,
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(get(&server.url("/v2/models/other"), None).status, 404);
    assert_eq!(get(&server.url("/v2/models/other/ready"), None).status, 404);
    assert_eq!(
        get(&server.url(&format!("/v2/models/{NAME}/versions/2")), None).status,
        404
    );
    assert_eq!(
        get(
            &server.url(&format!("/v2/models/{NAME}/versions/1/ready")),
            None
        )
        .status,
        200
    );
}

#[test]
fn health_probes_stay_open_and_the_rest_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k\n").unwrap();
    let server = TestServer::start(|c| {
        c.token_file = Some(token.clone());
    });
    // The default name: the model file's stem.
    let name = "model";
    assert_eq!(get(&server.url("/v2/health/live"), None).status, 200);
    assert_eq!(
        get(&server.url("/v2/health/ready"), None).json()["ready"],
        true
    );
    assert_eq!(get(&server.url("/v2"), None).status, 401);
    assert_eq!(
        get(&server.url(&format!("/v2/models/{name}")), None).status,
        401
    );
    let meta = get(&server.url(&format!("/v2/models/{name}")), Some("t0k"));
    assert_eq!(meta.status, 200, "{}", meta.body);
    assert_eq!(meta.json()["name"], name);
    let one = length_prefixed(&image_files()[..1]);
    let request = json!({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                      "parameters": {"binary_data_size": one.len()}}]});
    let url = server.url(&format!("/v2/models/{name}/infer"));
    assert_eq!(infer_raw(&url, &request, Some(&one), None).status, 401);
    let a = infer_raw(&url, &request, Some(&one), Some("t0k"));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    // Without `outputs`, every output comes back as JSON data.
    let names: Vec<String> = a.json()["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(names.contains(&"anomaly_map".to_string()));
}

#[test]
fn v2_requests_share_the_limits_of_v1() {
    let files = image_files();
    let one = length_prefixed(&files[..1]);
    let request = json!({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                      "parameters": {"binary_data_size": one.len()}}],
                         "outputs": [{"name": "image_score"}]});
    // Pixels and body size: 413.
    let server = TestServer::start(|c| {
        c.model_name = Some(NAME.into());
        c.max_pixels = 100;
        c.max_body_mb = 1;
        c.timeout_ms = 300;
        c.queue = 1;
        c.max_batch = 1;
    });
    let url = server.url(&format!("/v2/models/{NAME}/infer"));
    let a = infer_raw(&url, &request, Some(&one), None);
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.error().contains("limit of 100 pixels"), "{}", a.error());
    let big = length_prefixed(&[vec![0u8; (1 << 20) + 1]]);
    let big_request = json!({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                          "parameters": {"binary_data_size": big.len()}}]});
    let a = infer_raw(&url, &big_request, Some(&big), None);
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    drop(server);

    // A paused worker: the queue refuses with 503 + Retry-After, a queued request times out (504).
    let server = TestServer::start(|c| {
        c.model_name = Some(NAME.into());
        c.timeout_ms = 3000;
        c.queue = 1;
        c.max_batch = 1;
    });
    let url = server.url(&format!("/v2/models/{NAME}/infer"));
    let guard = server.handle.pause();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (url, request, one) = (url.clone(), request.clone(), one.clone());
            std::thread::spawn(move || infer_raw(&url, &request, Some(&one), None))
        })
        .collect();
    let answers: Vec<Raw> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    drop(guard);
    let refused: Vec<&Raw> = answers.iter().filter(|a| a.status == 503).collect();
    assert!(
        !refused.is_empty(),
        "no request was refused while the worker was paused"
    );
    for r in &refused {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.error().contains("queue is full"), "{}", r.error());
    }
    for a in answers.iter().filter(|a| a.status != 503) {
        assert_eq!(a.status, 504, "{}", String::from_utf8_lossy(&a.body));
    }
    // Once the worker has drained what timed out in the queue (a moment on a busy machine).
    let mut a = infer_raw(&url, &request, Some(&one), None);
    for _ in 0..50 {
        if a.status != 503 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        a = infer_raw(&url, &request, Some(&one), None);
    }
    assert_eq!(
        a.status,
        200,
        "the server serves again: {}",
        String::from_utf8_lossy(&a.body)
    );
}
