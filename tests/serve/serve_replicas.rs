//! Replicas decide alike: two servers pointing at ONE threshold file (`--thresholds-file`, as a
//! shared volume or ConfigMap would give them). A is in this process and writes the file
//! (`PUT`/`DELETE /v1/thresholds`); B is a `cras serve` process with `--thresholds-read-only`
//! and `--model-name`, as a deployment runs it. Through A a set is saved: within a bounded wait
//! B reports the same threshold version and decides every image as A does (over `/v1` and
//! `/v2`); a damaged file keeps the set in force on both and is counted; B refuses writes with
//! 409; a DELETE through A takes both back to the model's thresholds.

use crate::serve_support;
use crate::soak;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use serve_support::{get, post, tiny_model, TestServer};
use soak::ServerProcess;

/// Waits (at most 60 s, polling) until `probe` holds; the panic names `what`.
fn wait_until(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !probe() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn version(base: &str) -> String {
    get(&format!("{base}/v1/thresholds"), None).json()["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Every test image's (score, decision) and the thresholds tag, through `/v1/predict`.
fn decide_v1(base: &str) -> (Vec<(f64, String)>, Vec<Value>) {
    let mut out = Vec::new();
    let mut tags = Vec::new();
    for path in &tiny_model().images {
        let a = post(
            &format!("{base}/v1/predict"),
            "image/png",
            &std::fs::read(path).unwrap(),
            None,
        );
        assert_eq!(a.status, 200, "{}", a.body);
        let v = a.json();
        let p = &v["predictions"][0];
        out.push((
            p["score"].as_f64().unwrap(),
            p["decision"].as_str().unwrap().to_string(),
        ));
        tags.push(v["thresholds"].clone());
    }
    (out, tags)
}

/// Every test image's decision and the answer's parameters, through `/v2/.../infer` (JSON).
fn decide_v2(base: &str, name: &str) -> (Vec<String>, Value) {
    let data: Vec<String> = tiny_model()
        .images
        .iter()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap()))
        .collect();
    let request = json!({
        "inputs": [{"name": "image_bytes", "shape": [data.len()], "datatype": "BYTES", "data": data}],
        "outputs": [{"name": "decision"}]
    });
    let a = post(
        &format!("{base}/v2/models/{name}/infer"),
        "application/json",
        request.to_string().as_bytes(),
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let decisions = v["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    (decisions, v["parameters"].clone())
}

fn metric(base: &str, name: &str) -> f64 {
    let text = get(&format!("{base}/metrics"), None).body;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
}

fn send(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let req = ureq::request(method, url);
    let r = match body {
        Some(b) => req
            .set("Content-Type", "application/json")
            .send_string(&b.to_string()),
        None => req.call(),
    };
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    (
        r.status(),
        serde_json::from_str(&r.into_string().unwrap()).unwrap(),
    )
}

/// A global threshold that flips at least one of the model's decisions.
fn flipping_threshold(model: &[(f64, String)]) -> f64 {
    let scores = model.iter().map(|(s, _)| *s);
    if model.iter().any(|(_, d)| d == "ok") {
        scores.fold(f64::INFINITY, f64::min)
    } else {
        scores.fold(f64::NEG_INFINITY, f64::max) + 1.0
    }
}

#[test]
fn replicas_sharing_a_threshold_file_decide_alike() {
    let m = tiny_model();
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("line.thresholds.json");
    let a = TestServer::start(|c| {
        c.thresholds_file = Some(shared.clone());
        c.thresholds_poll_ms = 100;
    });
    let args: Vec<String> = [
        "--model",
        &m.model.to_string_lossy(),
        "--device",
        "cpu",
        "--thresholds-file",
        &shared.to_string_lossy(),
        "--thresholds-read-only",
        "--model-name",
        "line",
    ]
    .map(String::from)
    .to_vec();
    let b_process = ServerProcess::start(std::path::Path::new(env!("CARGO_BIN_EXE_cras")), &args);
    let b = format!("http://{}", b_process.addr);
    let log = || b_process.stderr.lock().unwrap().clone();

    assert_eq!(version(&a.base), "model");
    assert_eq!(version(&b), "model");
    let (model_a, _) = decide_v1(&a.base);
    let (model_b, tags) = decide_v1(&b);
    assert_eq!(model_a, model_b, "same model, same decisions");
    assert_eq!(tags[0], json!({"source": "model", "version": "model"}));

    // Save a set through A; B follows within a bounded wait.
    let t = flipping_threshold(&model_a);
    let (status, saved) = send("PUT", &a.url("/v1/thresholds"), Some(&json!({"global": t})));
    assert_eq!(status, 200, "{saved}");
    let v = saved["version"].as_str().unwrap().to_string();
    assert_eq!(v.len(), 16, "{saved}");
    wait_until("B reports A's threshold version", || version(&b) == v);
    let (on_a, tags_a) = decide_v1(&a.base);
    let (on_b, tags_b) = decide_v1(&b);
    assert_eq!(on_a, on_b, "A and B decide alike\n{}", log());
    assert_ne!(on_a, model_a, "the saved set changed some decision");
    for (score, decision) in &on_b {
        let want = if *score as f32 >= t as f32 {
            "defect"
        } else {
            "ok"
        };
        assert_eq!(decision, want, "score {score} at threshold {t}");
    }
    let tag = json!({"source": "saved", "version": v});
    assert!(
        tags_a.iter().chain(&tags_b).all(|x| *x == tag),
        "{tags_a:?} {tags_b:?}"
    );
    let (v2_decisions, parameters) = decide_v2(&b, "line");
    let v1_decisions: Vec<String> = on_b.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(v2_decisions, v1_decisions);
    assert_eq!(parameters["thresholds_version"], json!(v));
    assert_eq!(parameters["thresholds_source"], "saved");

    // B is read-only: writes answer 409 and leave the file alone.
    for (method, body) in [("PUT", Some(json!({"global": 0.5}))), ("DELETE", None)] {
        let (status, answer) = send(method, &format!("{b}/v1/thresholds"), body.as_ref());
        assert_eq!(status, 409, "{method}: {answer}");
        let e = answer["error"].as_str().unwrap();
        assert!(e.contains("--thresholds-read-only"), "{e}");
    }
    assert_eq!(version(&b), v);

    // A damaged file keeps the set in force on both, and is counted.
    std::fs::write(&shared, "{\"global\": ").unwrap();
    wait_until("B counts the damaged file", || {
        metric(&b, "cras_thresholds_reload_failures_total") >= 1.0
    });
    wait_until("A counts the damaged file", || {
        metric(&a.base, "cras_thresholds_reload_failures_total") >= 1.0
    });
    assert_eq!(version(&a.base), v);
    assert_eq!(version(&b), v);
    assert_eq!(decide_v1(&b).0, on_a);
    assert!(metric(&b, "cras_thresholds_reloads_total") >= 1.0);

    // DELETE through A: both back to the model's thresholds.
    let (status, answer) = send("DELETE", &a.url("/v1/thresholds"), None);
    assert_eq!(status, 200, "{answer}");
    assert!(!shared.exists());
    wait_until("B is back on the model's thresholds", || {
        version(&b) == "model"
    });
    assert_eq!(decide_v1(&a.base).0, model_a);
    assert_eq!(decide_v1(&b).0, model_a);
}
