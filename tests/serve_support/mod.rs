//! Shared helpers of the `serve_*` tests: a tiny model trained once per test binary, a server
//! running on an ephemeral loopback port in its own tokio runtime, and a blocking HTTP client
//! (ureq) that returns every status instead of failing on 4xx/5xx.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::tiny::tiny_train_config;

use cras::data::synth::{generate, SynthConfig};
use cras::serve::{ServeConfig, Server, ServerHandle};
use cras::train::pipeline::train;

/// The tiny trained model and its synthetic data.
pub struct TinyModel {
    _dir: tempfile::TempDir,
    pub model: PathBuf,
    /// Test images (good and defective) of every class, sorted.
    pub images: Vec<PathBuf>,
    pub classes: Vec<String>,
}

/// Trains the tiny model once per test binary.
pub fn tiny_model() -> &'static TinyModel {
    static MODEL: OnceLock<TinyModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let synth = SynthConfig {
            classes: 2,
            train_per_class: 6,
            test_good_per_class: 1,
            test_defect_per_class: 1,
            size: 64,
            defect_px: None,
            seed: 0,
        };
        generate(&synth, &data).expect("synthetic data");
        let cfg = tiny_train_config(&data);
        let model = dir.path().join("model.safetensors");
        let summary = train(&cfg, &model, false, None).expect("training the tiny model");
        let mut images = Vec::new();
        collect_pngs(&data, &mut images);
        images.retain(|p| p.components().any(|c| c.as_os_str() == "test"));
        images.sort();
        assert!(images.len() >= 4, "expected test images, found {images:?}");
        TinyModel {
            _dir: dir,
            model,
            images,
            classes: summary.meta.classes,
        }
    })
}

fn collect_pngs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_pngs(&p, out);
        } else if p.extension().is_some_and(|x| x == "png")
            && !p.to_string_lossy().contains("ground_truth")
        {
            out.push(p);
        }
    }
}

/// A server running in the background on 127.0.0.1:<ephemeral>.
pub struct TestServer {
    pub base: String,
    pub handle: ServerHandle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    finished: Option<std::sync::mpsc::Receiver<cras::Result<()>>>,
    _runtime: tokio::runtime::Runtime,
}

impl TestServer {
    /// Starts a server on the tiny model, with `adjust` applied to the default configuration.
    pub fn start(adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let mut config = ServeConfig::new(&tiny_model().model);
        config.addr = "127.0.0.1:0".into();
        config.device = "cpu".into();
        adjust(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime
            .block_on(Server::bind(&config))
            .expect("server binds");
        let base = format!("http://{}", server.local_addr().expect("address"));
        let handle = server.handle();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let (done, finished) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let result = server
                .run(async move {
                    let _ = stop.await;
                })
                .await;
            let _ = done.send(result);
        });
        TestServer {
            base,
            handle,
            shutdown: Some(shutdown),
            finished: Some(finished),
            _runtime: runtime,
        }
    }

    /// Asks for a graceful shutdown and waits for the server to return.
    pub fn stop(&mut self) -> cras::Result<()> {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        match self.finished.take() {
            Some(rx) => rx
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("server stops in time"),
            None => Ok(()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// The `error` message of a JSON error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Answer {
    let response = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    Answer {
        status: response.status(),
        retry_after: response.header("Retry-After").map(str::to_string),
        content_type: response
            .header("Content-Type")
            .unwrap_or_default()
            .to_string(),
        body: response.into_string().expect("body"),
    }
}

/// GET with optional bearer token.
pub fn get(url: &str, token: Option<&str>) -> Answer {
    let mut req = ureq::get(url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    answer(req.call())
}

/// POST raw bytes with a content type and optional bearer token.
pub fn post(url: &str, content_type: &str, body: &[u8], token: Option<&str>) -> Answer {
    let mut req = ureq::post(url).set("Content-Type", content_type);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    answer(req.send_bytes(body))
}

/// POST a multipart/form-data body with one part per (file name, bytes).
pub fn post_multipart(url: &str, parts: &[(String, Vec<u8>)]) -> Answer {
    let boundary = "cras-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    post(
        url,
        &format!("multipart/form-data; boundary={boundary}"),
        &body,
        None,
    )
}

/// The score of the first prediction of an answer, as f32 bits.
pub fn score_bits(v: &serde_json::Value, i: usize) -> u32 {
    (v["predictions"][i]["score"].as_f64().expect("score") as f32).to_bits()
}
