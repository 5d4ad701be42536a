//! `cras serve` on a bf16 engine decides as the candle engine does: the batcher hands each
//! request's thresholds (its `threshold` parameter, else the saved set, else the model's) to the
//! engine, which re-scores at f32 the images near them. Needs OpenVINO (found as
//! `tests/it/engine_parity.rs` finds it); skipped with the reason printed when it is absent, a
//! failure with `CRAS_REQUIRE_RUNTIMES=1`.

use crate::serve_support;
use serve_support::{get, post_multipart, tiny_model, TestServer};

use candle_core::Device;
use cras::infer::engine::{EngineChoice, EngineKind, EngineOptions, Precision};
use cras::infer::Predictor;

fn bf16() -> EngineOptions {
    EngineOptions {
        choice: EngineChoice::Kind(EngineKind::OpenVino),
        precision: Precision::Bf16,
        threads: Some(2),
        ..EngineOptions::default()
    }
}

fn predictions(server: &TestServer, query: &str, parts: &[(String, Vec<u8>)]) -> serde_json::Value {
    let a = post_multipart(&server.url(&format!("/v1/predict{query}")), parts);
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["predictions"].clone()
}

#[test]
fn a_bf16_service_decides_as_candle_at_every_threshold_source() {
    let model = tiny_model();
    if let Err(e) = Predictor::load_with(&model.model, &Device::Cpu, &bf16()) {
        crate::common::engine_unavailable("openvino bf16", true, &e);
        return;
    }
    let parts: Vec<(String, Vec<u8>)> = model
        .images
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
        .collect();
    let candle = TestServer::start(|_| {});
    let engine = TestServer::start(|c| c.engine = bf16());
    let info = get(&engine.url("/v1/model"), None).json();
    assert_eq!(info["precision"], "bf16", "{info}");

    // The model's thresholds, then one given per request: just below the first image's exact
    // score, so that image is near its threshold and the engine must re-score it at f32 (a
    // bf16 score could fall on either side).
    let want = predictions(&candle, "", &parts);
    let got = predictions(&engine, "", &parts);
    let first = want[0]["score"].as_f64().unwrap();
    let query = format!("?threshold={}", first * (1.0 - 1e-4));
    let want_at = predictions(&candle, &query, &parts);
    let got_at = predictions(&engine, &query, &parts);
    for (w, g) in [(&want, &got), (&want_at, &got_at)] {
        let (w, g) = (w.as_array().unwrap(), g.as_array().unwrap());
        assert_eq!(w.len(), g.len());
        for (a, b) in w.iter().zip(g) {
            assert_eq!(a["class"], b["class"], "{a} vs {b}");
            assert_eq!(a["threshold"], b["threshold"], "{a} vs {b}");
            assert_eq!(a["decision"], b["decision"], "{a} vs {b}");
        }
    }
    let (a, b) = (
        want_at[0]["score"].as_f64().unwrap(),
        got_at[0]["score"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-5, "{a} vs {b}");
    assert_eq!(got_at[0]["decision"], "defect");
    let counts = &get(&engine.url("/v1/model"), None).json()["confirmed_at_f32"];
    let n = 2 * parts.len() as u64;
    assert_eq!(counts["scored"], n, "{counts}");
    let rescored = counts["rescored"].as_u64().unwrap();
    assert!((1..=n).contains(&rescored), "{counts}");
}
