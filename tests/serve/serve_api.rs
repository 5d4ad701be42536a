//! `cras serve` end to end on a tiny model: scores served under concurrent load with dynamic
//! batching are bit-identical to direct `Predictor` calls on single images and to what
//! `cras predict` prints; multipart, maps, metadata, metrics, OpenAPI, reload, graceful stop.

use crate::serve_support;

use std::collections::HashMap;
use std::io::Cursor;

use base64::Engine;
use cras::data::decode::decode_rgb;
use cras::infer::ClassChoice;
use cras::infer::Predictor;
use serve_support::{get, post, post_multipart, score_bits, tiny_model, TestServer};

/// Direct single-image scores (bits) by file, the reference of every served score.
fn direct_scores() -> HashMap<String, u32> {
    let m = tiny_model();
    let predictor = Predictor::load(&m.model, &candle_core::Device::Cpu).expect("model loads");
    m.images
        .iter()
        .map(|p| {
            let im = decode_rgb(p).expect("decodes");
            let pred = predictor
                .predict_images(&[im], &ClassChoice::Match)
                .expect("predicts");
            (p.display().to_string(), pred[0].score.to_bits())
        })
        .collect()
}

#[test]
fn concurrent_batched_scores_equal_single_image_scores_and_cras_predict() {
    let m = tiny_model();
    let direct = direct_scores();
    // A long batching window so that concurrent requests really share batches.
    let server = TestServer::start(|c| {
        c.max_batch = 8;
        c.max_wait_ms = 40;
    });
    let url = server.url("/v1/predict");
    let clients: Vec<_> = (0..8)
        .map(|t| {
            let url = url.clone();
            let images = m.images.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for round in 0..3 {
                    let path = &images[(t + round) % images.len()];
                    let bytes = std::fs::read(path).expect("image");
                    let a = post(&url, "image/png", &bytes, None);
                    assert_eq!(a.status, 200, "{}", a.body);
                    got.push((path.display().to_string(), score_bits(&a.json(), 0)));
                }
                got
            })
        })
        .collect();
    for c in clients {
        for (path, bits) in c.join().expect("client thread") {
            assert_eq!(
                bits, direct[&path],
                "served score of {path} differs from the direct single-image score"
            );
        }
    }
    // Batching happened: some batch held more than one image.
    let metrics = get(&server.url("/metrics"), None).body;
    let line = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing in {metrics}"))
    };
    let batches = line("cras_batch_size_count");
    let single = line("cras_batch_size_bucket{le=\"1\"}");
    assert!(
        single < batches,
        "no batch held two images ({single} of {batches} were single)"
    );
    assert_eq!(
        line("cras_requests_total{path=\"/v1/predict\",status=\"200\"}"),
        24.0
    );
    assert_eq!(line("cras_batch_size_sum"), 24.0);

    // `cras predict` prints the same numbers.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cras"))
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
    let mut lines = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let path = v["path"].as_str().expect("path").to_string();
        assert_eq!(
            (v["score"].as_f64().expect("score") as f32).to_bits(),
            direct[&path],
            "{path}"
        );
        lines += 1;
    }
    assert_eq!(lines, m.images.len());
}

#[test]
fn multipart_answers_in_order_with_maps_and_stated_class() {
    let m = tiny_model();
    let direct = direct_scores();
    let server = TestServer::start(|_| {});
    let parts: Vec<(String, Vec<u8>)> = m
        .images
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    let a = post_multipart(&server.url("/v1/predict?map=png&threshold=0.25"), &parts);
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let preds = v["predictions"].as_array().expect("predictions");
    assert_eq!(preds.len(), m.images.len());
    for (i, path) in m.images.iter().enumerate() {
        assert_eq!(preds[i]["name"], parts[i].0);
        assert_eq!(score_bits(&v, i), direct[&path.display().to_string()]);
        let score = preds[i]["score"].as_f64().unwrap() as f32;
        assert_eq!(preds[i]["threshold"].as_f64().unwrap() as f32, 0.25);
        assert_eq!(
            preds[i]["is_anomalous"],
            serde_json::Value::Bool(score >= 0.25)
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(preds[i]["map"].as_str().expect("map"))
            .expect("base64");
        let map = image::load(Cursor::new(png), image::ImageFormat::Png)
            .expect("PNG")
            .to_luma8();
        assert_eq!(map.dimensions(), (32, 32));
    }
    // Stating the class skips the match: the answer carries the stated class.
    let class = &m.classes[1];
    let bytes = std::fs::read(&m.images[0]).unwrap();
    let a = post(
        &server.url(&format!("/v1/predict?class={class}")),
        "image/png",
        &bytes,
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.json()["predictions"][0]["class"],
        serde_json::json!(class)
    );
}

#[test]
fn info_routes_describe_the_model_and_service() {
    let m = tiny_model();
    let server = TestServer::start(|_| {});
    let health = get(&server.url("/v1/health"), None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let model = get(&server.url("/v1/model"), None).json();
    assert_eq!(model["classes"], serde_json::json!(m.classes));
    assert_eq!(
        model["format_version"],
        serde_json::json!(cras::model::FORMAT_VERSION)
    );
    assert_eq!(model["input_size"], 32);
    assert_eq!(model["preprocessing"]["crop"], 32);
    assert!(model["training_config"].is_object());
    assert!(model["test_selected"].is_boolean());
    let api = get(&server.url("/v1/openapi.json"), None).json();
    assert!(api["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/predict",
        "/v1/health",
        "/v1/model",
        "/metrics",
        "/v1/openapi.json",
    ] {
        assert!(
            api["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let metrics = get(&server.url("/metrics"), None);
    assert!(metrics.content_type.starts_with("text/plain"));
    assert!(metrics
        .body
        .contains("cras_requests_total{path=\"/v1/health\",status=\"200\"} 1"));
    assert!(metrics.body.contains("cras_queue_depth 0"));
}

#[test]
fn reload_swaps_the_model_and_a_failed_reload_keeps_the_old_one() {
    let m = tiny_model();
    let server = TestServer::start(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.safetensors");
    std::fs::write(&broken, b"not a model").unwrap();
    assert!(server.handle.reload_from(&broken).is_err());
    assert_eq!(server.handle.generation(), 1);
    let bytes = std::fs::read(&m.images[0]).unwrap();
    let before = post(&server.url("/v1/predict"), "image/png", &bytes, None);
    assert_eq!(before.status, 200, "{}", before.body);
    assert!(get(&server.url("/metrics"), None)
        .body
        .contains("cras_model_reload_failures_total 1"));

    // A second model: the same network with other stored thresholds.
    let mut predictor = Predictor::load(&m.model, &candle_core::Device::Cpu).unwrap();
    let t = predictor
        .meta
        .thresholds
        .as_mut()
        .expect("the tiny model is calibrated");
    t.global = 0.123;
    t.per_class.iter_mut().for_each(|x| *x = 0.123);
    let other = dir.path().join("other.safetensors");
    predictor.save(&other).unwrap();
    assert_eq!(server.handle.reload_from(&other).unwrap(), 2);
    let after = post(&server.url("/v1/predict"), "image/png", &bytes, None).json();
    assert_eq!(after["model_generation"], 2);
    assert_eq!(
        after["predictions"][0]["threshold"].as_f64().unwrap() as f32,
        0.123
    );
    assert_eq!(score_bits(&after, 0), score_bits(&before.json(), 0));
    assert_eq!(
        get(&server.url("/v1/model"), None).json()["thresholds"]["global"]
            .as_f64()
            .unwrap() as f32,
        0.123
    );
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let m = tiny_model();
    let mut server = TestServer::start(|_| {});
    let url = server.url("/v1/predict");
    let bytes = std::fs::read(&m.images[0]).unwrap();
    let pause = server.handle.clone();
    let guard = pause.pause();
    let client = std::thread::spawn(move || post(&url, "image/png", &bytes, None));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Ask for shutdown while the request waits on the paused worker, then let the worker go.
    let stopped = std::thread::scope(|s| {
        let stop = s.spawn(|| server.stop());
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(guard);
        stop.join().expect("stop thread")
    });
    assert!(stopped.is_ok(), "{stopped:?}");
    let a = client.join().expect("client");
    assert_eq!(a.status, 200, "{}", a.body);
}
