//! `GET /v1/openapi.json` says what the server accepts, for the model in force: the model's
//! class names as enums (`/v1/predict?class`, the keys of `PUT /v1/thresholds`'s
//! `per_class`), thresholds bounded by the f32 range (and a threshold beyond it refused by
//! `/v1/predict`, `PUT /v1/thresholds` and `/v2`, never rounded), the counts of `/v1/recent`
//! unsigned, a multipart part without a name named by its position; and a reload to a model of
//! other classes changes the document. Schemathesis checks the whole document
//! (`serve_schemathesis`); these pin the cases it found.

use crate::serve_support;

use base64::Engine;
use cras::model::file::{read_raw, write_raw};
use serde_json::{json, Value};
use serve_support::{get, post, tiny_model, TestServer};

/// The smallest f64 above `f32::MAX`: within no f32, rounded to `f32::MAX` by a parse as f32.
fn above_f32_max() -> f64 {
    f64::from_bits((f32::MAX as f64).to_bits() + 1)
}

fn put_json(url: &str, body: &Value) -> (u16, Value) {
    let response = match ureq::put(url)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let text = response.into_string().expect("body");
    (status, serde_json::from_str(&text).expect("JSON answer"))
}

/// A server on the tiny model whose threshold file is its own (not beside the shared model).
fn server(dir: &tempfile::TempDir) -> TestServer {
    let thresholds = dir.path().join("model.thresholds.json");
    TestServer::start(move |c| c.thresholds_file = Some(thresholds))
}

fn document(server: &TestServer) -> Value {
    let a = get(&server.url("/v1/openapi.json"), None);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

/// The schema of query parameter `name` of the operation at `path`, `method`.
fn query_schema(doc: &Value, path: &str, method: &str, name: &str) -> Value {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path} has no parameters"))
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))["schema"]
        .clone()
}

#[test]
fn recent_limits_are_unsigned_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let doc = document(&server);
    for name in ["since", "limit"] {
        let schema = query_schema(&doc, "/v1/recent", "get", name);
        assert_eq!(schema["type"], "integer", "{name}: {schema}");
        assert_eq!(schema["minimum"], 0, "{name} must be unsigned: {schema}");
        assert_eq!(schema["maximum"], u64::MAX, "{name}: {schema}");
        // The server refuses what the document forbids and takes what it allows.
        let below = get(&server.url(&format!("/v1/recent?{name}=-34440")), None);
        assert_eq!(below.status, 400, "{name}=-34440: {}", below.body);
        let top = get(
            &server.url(&format!("/v1/recent?{name}={}", u64::MAX)),
            None,
        );
        assert_eq!(top.status, 200, "{name}={}: {}", u64::MAX, top.body);
        let above = get(
            &server.url(&format!("/v1/recent?{name}=18446744073709551616")),
            None,
        );
        assert_eq!(above.status, 400, "{name} above u64: {}", above.body);
    }
}

#[test]
fn predict_names_the_models_classes_and_bounds_the_threshold() {
    let m = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let doc = document(&server);
    let class = query_schema(&doc, "/v1/predict", "post", "class");
    assert_eq!(class["enum"], json!(m.classes), "{class}");
    let prediction = &doc["components"]["schemas"]["Prediction"]["properties"]["class"];
    assert_eq!(prediction["enum"], json!(m.classes), "{prediction}");
    let threshold = query_schema(&doc, "/v1/predict", "post", "threshold");
    assert_eq!(threshold["maximum"], json!(f32::MAX as f64), "{threshold}");
    assert_eq!(
        threshold["minimum"],
        json!(-(f32::MAX as f64)),
        "{threshold}"
    );

    let image = std::fs::read(&m.images[0]).unwrap();
    let predict = |query: &str| {
        post(
            &server.url(&format!("/v1/predict?{query}")),
            "image/png",
            &image,
            None,
        )
    };
    // `class=` (an empty name) is no class of the model: refused, and outside the enum.
    let empty = predict("class=");
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert!(empty.error().contains("unknown class"), "{}", empty.body);
    let named = predict(&format!("class={}", m.classes[1]));
    assert_eq!(named.status, 200, "{}", named.body);
    // The bounds themselves are taken; one step beyond is refused, not rounded to f32::MAX.
    for t in [f32::MAX as f64, -(f32::MAX as f64)] {
        let a = predict(&format!("threshold={t:e}"));
        assert_eq!(a.status, 200, "threshold={t:e}: {}", a.body);
        assert_eq!(
            a.json()["predictions"][0]["threshold"],
            json!(t as f32 as f64)
        );
    }
    for t in [above_f32_max(), -above_f32_max(), 1e39] {
        let a = predict(&format!("threshold={t:e}"));
        assert_eq!(a.status, 400, "threshold={t:e}: {}", a.body);
        assert!(
            a.error().contains("not a finite number within"),
            "{}",
            a.body
        );
    }
}

#[test]
fn thresholds_keys_are_the_models_classes() {
    let m = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let doc = document(&server);
    let set = &doc["components"]["schemas"]["ThresholdSet"];
    let per_class = &set["properties"]["per_class"];
    let keys: Vec<&String> = per_class["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("per_class names no class: {per_class}"))
        .keys()
        .collect();
    assert_eq!(keys, m.classes.iter().collect::<Vec<_>>());
    assert_eq!(per_class["additionalProperties"], false, "{per_class}");
    assert_eq!(set["additionalProperties"], false, "{set}");
    assert_eq!(
        set["properties"]["global"]["maximum"],
        json!(f32::MAX as f64)
    );

    let url = server.url("/v1/thresholds");
    let (status, answer) = put_json(&url, &json!({"per_class": {"no-such-class": 0.5}}));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("no-such-class"),
        "{answer}"
    );
    let (status, answer) = put_json(&url, &json!({"per_class": {&m.classes[0]: f32::MAX}}));
    assert_eq!(status, 200, "{answer}");
    for body in [
        json!({"per_class": {&m.classes[0]: above_f32_max()}}),
        json!({"global": -above_f32_max()}),
    ] {
        let (status, answer) = put_json(&url, &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("not a finite number within"),
            "{answer}"
        );
    }
}

#[test]
fn v2_refuses_a_threshold_beyond_f32() {
    let m = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let image =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&m.images[0]).unwrap());
    let infer = |t: f64| {
        let body = json!({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
            "data": [image]}], "parameters": {"threshold": t}});
        post(
            &server.url("/v2/models/model/infer"),
            "application/json",
            body.to_string().as_bytes(),
            None,
        )
    };
    let a = infer(f32::MAX as f64);
    assert_eq!(a.status, 200, "{}", a.body);
    let a = infer(above_f32_max());
    let head: String = a.body.chars().take(300).collect();
    assert_eq!(a.status, 400, "{head}");
    assert!(a.body.contains("not a finite number within"), "{}", a.body);
}

#[test]
fn a_multipart_part_without_a_name_is_named_by_its_position() {
    let m = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let doc = document(&server);
    let multipart = &doc["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
        ["multipart/form-data"]["schema"];
    let parts = &multipart["properties"]["image"];
    assert_eq!(parts["minItems"], 1, "{multipart}");
    assert_eq!(parts["maxItems"], 256, "{multipart}");

    let image = std::fs::read(&m.images[0]).unwrap();
    let boundary = "cras-openapi-boundary";
    let mut body = Vec::new();
    for disposition in [
        "form-data; name=\"\"",
        "form-data; name=\"a\"; filename=\"\"",
    ] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(&image);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let a = post(
        &server.url("/v1/predict"),
        &format!("multipart/form-data; boundary={boundary}"),
        &body,
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["predictions"][0]["name"], "part0", "{v}");
    assert_eq!(v["predictions"][1]["name"], "a", "{v}");
}

#[test]
fn a_reload_to_other_classes_changes_the_document() {
    let m = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir);
    let renamed: Vec<String> = m.classes.iter().map(|c| format!("{c}-v2")).collect();
    let raw = read_raw(&m.model).unwrap();
    let mut meta = raw.meta;
    meta["classes"] = json!(renamed);
    let tensors: Vec<_> = raw.tensors.into_iter().collect();
    let other = dir.path().join("renamed.safetensors");
    write_raw(&other, &meta, &tensors).unwrap();
    assert_eq!(server.handle.reload_from(&other).unwrap(), 2);
    let doc = document(&server);
    assert_eq!(
        query_schema(&doc, "/v1/predict", "post", "class")["enum"],
        json!(renamed)
    );
    let keys: Vec<&String> = doc["components"]["schemas"]["ThresholdSet"]["properties"]
        ["per_class"]["properties"]
        .as_object()
        .expect("per_class properties")
        .keys()
        .collect();
    assert_eq!(keys, renamed.iter().collect::<Vec<_>>());
}
