//! `cras serve`: an HTTP inference service over one trained model (axum + tokio).
//!
//! Routes: `POST /v1/predict` (see [`predict`]), `GET /v1/health`, `GET /v1/model` (the model's
//! metadata), `GET /metrics` (Prometheus text, [`metrics`]) and `GET /v1/openapi.json`
//! ([`openapi`]). Every error is JSON `{"error", "status"}` ([`api_error`]). The inspection
//! page ([`page`]) is served at `/` with `GET /v1/recent` ([`recent`]) and
//! `GET|PUT|DELETE /v1/thresholds` ([`thresholds`]: saved threshold sets, applied to decisions;
//! the file is watched, [`thresholds_watch`], so replicas sharing it decide alike). The Open
//! Inference Protocol (KServe v2, Triton's HTTP API) is served beside `/v1` under `/v2`
//! ([`v2`]). Every answer names the model generation and threshold set in force ([`provenance`]).
//!
//! Requests are decoded on blocking threads, then scored by ONE worker thread with dynamic
//! batching ([`batcher`]). Limits: body size (413), body read time (408), decoded pixels (413),
//! queue length (503 with `Retry-After`), per-request time (504); open connections, request
//! head read time and the shutdown grace period ([`conn`]). The server binds loopback addresses only unless
//! `allow_remote`; with a token file every route except `/v1/health` (and the v2 health probes) needs
//! `Authorization: Bearer <token>` (401 otherwise; the page's files stay open too). No request names a server file. The model
//! can be swapped at run time ([`ServerHandle::reload`], called on SIGHUP by the CLI); shutdown
//! is graceful: in-flight requests finish, then the worker is joined.

pub mod api_error;
pub mod batcher;
pub mod budget;
pub mod conn;
pub mod metrics;
pub mod model_slot;
pub mod openapi;
pub mod page;
pub mod predict;
pub mod provenance;
pub mod recent;
pub mod thresholds;
pub mod thresholds_watch;
pub mod v2;

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use api_error::ApiError;
use batcher::{BatchConfig, Batcher};
use metrics::Metrics;
use model_slot::ModelSlot;

use crate::{Error, Result};

/// Everything `cras serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Model file written by `cras train`.
    pub model: PathBuf,
    /// Address to bind (`host:port`; port 0 picks a free one).
    pub addr: String,
    /// Device: auto, cpu, cuda or cuda:N.
    pub device: String,
    /// Scoring engine and precision (built once per model generation).
    pub engine: crate::infer::engine::EngineOptions,
    /// Most images per worker batch.
    pub max_batch: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    pub max_wait_ms: u64,
    /// Most requests waiting for the worker.
    pub queue: usize,
    /// Per-request time limit, in milliseconds.
    pub timeout_ms: u64,
    /// Largest request body, in MiB.
    pub max_body_mb: u64,
    /// Largest decoded image, in pixels.
    pub max_pixels: u64,
    /// Most decoded pixels held at once across all requests (413 above, 503 when busy).
    pub max_inflight_pixels: u64,
    /// File holding the bearer token clients must send.
    pub token_file: Option<PathBuf>,
    /// Allow binding a non-loopback address.
    pub allow_remote: bool,
    /// Most connections open at once (keep it under the process's file-descriptor limit).
    pub max_connections: usize,
    /// Longest wait for a request head, in milliseconds (idle connections are closed then).
    pub header_timeout_ms: u64,
    /// Longest wait for a request body, in milliseconds (408 after).
    pub body_timeout_ms: u64,
    /// Longest wait for open connections after a shutdown signal, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// The model's name under `/v2/models/` (None: the model file's stem, see
    /// [`v2::default_model_name`]).
    pub model_name: Option<String>,
    /// The saved threshold set's file, watched for changes (None: beside the model,
    /// [`thresholds::path_for`]).
    pub thresholds_file: Option<PathBuf>,
    /// Refuse `PUT` / `DELETE /v1/thresholds` with 409 (the file is managed elsewhere).
    pub thresholds_read_only: bool,
    /// How often the threshold file is looked at, in milliseconds.
    pub thresholds_poll_ms: u64,
}

impl ServeConfig {
    /// The defaults of `cras serve` for `model`.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            addr: "127.0.0.1:8080".into(),
            device: "auto".into(),
            engine: crate::infer::engine::EngineOptions::default(),
            max_batch: 8,
            max_wait_ms: 5,
            queue: 64,
            timeout_ms: 10_000,
            max_body_mb: 32,
            max_pixels: 40_000_000,
            max_inflight_pixels: 160_000_000,
            token_file: None,
            allow_remote: false,
            max_connections: 256,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            shutdown_grace_ms: 15_000,
            model_name: None,
            thresholds_file: None,
            thresholds_read_only: false,
            thresholds_poll_ms: 1000,
        }
    }

    /// The model's name under `/v2/models/`: `model_name`, else the model file's stem.
    pub fn served_name(&self) -> Result<String> {
        match &self.model_name {
            Some(name) => v2::check_model_name(name).map(|_| name.clone()),
            None => Ok(v2::default_model_name(&self.model)),
        }
    }

    /// The saved threshold set's file: `thresholds_file`, else beside the model.
    pub fn thresholds_path(&self) -> PathBuf {
        self.thresholds_file
            .clone()
            .unwrap_or_else(|| thresholds::path_for(&self.model))
    }

    /// Checks the numeric limits.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("max-batch", self.max_batch as u64),
            ("queue", self.queue as u64),
            ("timeout-ms", self.timeout_ms),
            ("max-body-mb", self.max_body_mb),
            ("max-pixels", self.max_pixels),
            ("max-inflight-pixels", self.max_inflight_pixels),
            ("max-connections", self.max_connections as u64),
            ("header-timeout-ms", self.header_timeout_ms),
            ("body-timeout-ms", self.body_timeout_ms),
            ("thresholds-poll-ms", self.thresholds_poll_ms),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::config(name, v, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Request limits applied by the handlers.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest decoded image, in pixels.
    pub max_pixels: u64,
    /// Per-request time limit.
    pub timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Longest wait for the whole request body.
    pub body_timeout: Duration,
}

/// State shared by the handlers.
pub struct AppState {
    /// The served model.
    pub slot: Arc<ModelSlot>,
    /// The inference queue and worker.
    pub batcher: Batcher,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Request limits.
    pub limits: Limits,
    /// The bearer token, when one is required.
    pub token: Option<String>,
    /// Decoded pixels in flight across requests.
    pub budget: budget::PixelBudget,
    /// When the server started.
    pub started: Instant,
    /// The model path reloads read by default.
    pub model_path: PathBuf,
    /// The last predictions, for the page's line view.
    pub recent: recent::Recent,
    /// The operator's saved thresholds.
    pub thresholds: thresholds::ThresholdStore,
    /// The model's name under `/v2/models/`.
    pub model_name: String,
    /// How often the threshold file is looked at.
    pub thresholds_poll: Duration,
}

/// Refuses a non-loopback `addr` unless `allow_remote`; returns the resolved addresses.
pub fn check_addr(addr: &str, allow_remote: bool) -> Result<Vec<SocketAddr>> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| Error::config("addr", addr, format!("not a host:port address ({e})")))?
        .collect();
    if resolved.is_empty() {
        return Err(Error::config("addr", addr, "resolves to no address"));
    }
    if !allow_remote {
        if let Some(remote) = resolved.iter().find(|a| !a.ip().is_loopback()) {
            return Err(Error::config(
                "addr",
                addr,
                format!("{remote} is not a loopback address; pass --allow-remote to serve other machines"),
            ));
        }
    }
    Ok(resolved)
}

/// Reads the bearer token from `path` (surrounding whitespace removed; must not be empty).
pub fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let token = text.trim().to_string();
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return Err(Error::config(
            "token-file",
            path.display(),
            "must hold one token without spaces",
        ));
    }
    Ok(token)
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    conn: conn::ConnLimits,
}

/// A handle to a running server: reloads, pause, counters.
#[derive(Clone)]
pub struct ServerHandle {
    state: Arc<AppState>,
}

impl Server {
    /// Loads the model, starts the worker and binds the address (checked by [`check_addr`]).
    pub async fn bind(config: &ServeConfig) -> Result<Self> {
        config.validate()?;
        let addrs = check_addr(&config.addr, config.allow_remote)?;
        let token = config.token_file.as_deref().map(read_token).transpose()?;
        let model_name = config.served_name()?;
        let saved = thresholds::ThresholdStore::open_with(
            config.thresholds_path(),
            config.thresholds_read_only,
        )?;
        let device = crate::device::select(&config.device)?;
        let path = config.model.clone();
        let engine = config.engine;
        let slot = tokio::task::spawn_blocking(move || ModelSlot::load(&path, &device, &engine))
            .await
            .map_err(|e| Error::Other(format!("loading the model failed unexpectedly: {e}")))??;
        let slot = Arc::new(slot);
        let metrics = Arc::new(Metrics::default());
        let batch = BatchConfig {
            max_batch: config.max_batch,
            max_wait: Duration::from_millis(config.max_wait_ms),
            queue: config.queue,
        };
        let batcher = Batcher::start(slot.clone(), batch, metrics.clone())
            .map_err(|e| Error::Other(format!("cannot start the inference worker: {e}")))?;
        let listener = tokio::net::TcpListener::bind(&addrs[..])
            .await
            .map_err(|e| Error::config("addr", &config.addr, format!("cannot bind: {e}")))?;
        let max_body =
            usize::try_from(config.max_body_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let state = Arc::new(AppState {
            slot,
            batcher,
            metrics,
            limits: Limits {
                max_pixels: config.max_pixels,
                timeout: Duration::from_millis(config.timeout_ms),
                max_body,
                body_timeout: Duration::from_millis(config.body_timeout_ms),
            },
            token,
            budget: budget::PixelBudget::new(config.max_inflight_pixels),
            started: Instant::now(),
            model_path: config.model.clone(),
            recent: recent::Recent::default(),
            thresholds: saved,
            model_name,
            thresholds_poll: Duration::from_millis(config.thresholds_poll_ms),
        });
        let conn = conn::ConnLimits {
            max_connections: config.max_connections,
            header_timeout: Duration::from_millis(config.header_timeout_ms),
            shutdown_grace: Duration::from_millis(config.shutdown_grace_ms),
        };
        Ok(Self {
            listener,
            state,
            conn,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::Other(format!("bound address: {e}")))
    }

    /// A handle for reloads and counters.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            state: self.state.clone(),
        }
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and stops the worker.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let app = router(self.state.clone());
        let watcher = tokio::spawn(thresholds_watch::watch(
            self.state.clone(),
            self.state.thresholds_poll,
        ));
        conn::serve(self.listener, app, self.conn, shutdown).await;
        watcher.abort();
        let state = self.state;
        tokio::task::spawn_blocking(move || state.batcher.shutdown())
            .await
            .map_err(|e| Error::Other(format!("stopping the worker: {e}")))
    }
}

impl ServerHandle {
    /// Reloads the model from the configured path; see [`ServerHandle::reload_from`].
    /// The saved threshold set is re-read first (a damaged file keeps the set in force).
    pub fn reload(&self) -> Result<u64> {
        if let Err(e) = self.state.thresholds.reload() {
            tracing::error!("threshold set not reloaded, keeping the one in force: {e}");
        }
        let path = self.state.model_path.clone();
        self.reload_from(&path)
    }

    /// Loads the model at `path` beside the current one and swaps it in (new generation
    /// returned). On failure the current model keeps serving and the failure is counted.
    pub fn reload_from(&self, path: &Path) -> Result<u64> {
        match self.state.slot.reload(path) {
            Ok(generation) => {
                tracing::info!(
                    "reloaded {} (model generation {generation})",
                    path.display()
                );
                Ok(generation)
            }
            Err(e) => {
                self.state.metrics.observe_reload_failure();
                tracing::error!("reload failed, keeping the current model: {e}");
                Err(e)
            }
        }
    }

    /// The generation of the model serving now.
    pub fn generation(&self) -> u64 {
        self.state.slot.current().generation
    }

    /// Holds the worker before its next batch until the guard drops (see [`Batcher::pause`]).
    pub fn pause(&self) -> std::sync::MutexGuard<'_, ()> {
        self.state.batcher.pause()
    }
}

/// The routes with their middleware: metrics outermost, then the token check (an
/// unauthenticated body is read and discarded, never buffered), then body buffering (so that
/// every answer, errors included, reaches a client still sending its body).
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.limits.max_body;
    let auth = state.token.is_some();
    Router::new()
        .route("/v1/predict", post(predict::predict))
        .route("/v1/health", get(health))
        .route("/v1/model", get(model_info))
        .route("/metrics", get(metrics_text))
        .route(
            "/v1/openapi.json",
            get(move || async move { Json(openapi::document_for(auth)) }),
        )
        .merge(page::routes())
        .merge(v2::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route; see /v1/openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route; see /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), buffer_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            provenance::add_headers,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let model = state.slot.current();
    Json(json!({
        "status": "ok",
        "model_generation": model.generation,
        "queue_depth": state.batcher.queue_depth(),
        "uptime_s": state.started.elapsed().as_secs_f64(),
    }))
}

async fn model_info(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let model = state.slot.current();
    let meta = &model.predictor.meta;
    Json(json!({
        "classes": meta.classes,
        "backbone": meta.backbone,
        "last_layer": meta.last_layer,
        "preprocessing": meta.preprocess,
        "descriptor": meta.descriptor,
        "input_size": model.predictor.input_size(),
        "engine": model.predictor.engine().name(),
        "precision": model.predictor.precision().to_string(),
        "engine_description": model.predictor.engine_description(),
        "confirmed_at_f32": model.predictor.confirmed_at_f32().map(|(c, n)| json!({"rescored": c, "scored": n})),
        "grid": meta.grid,
        "thresholds": meta.thresholds.as_ref().map(|t| json!({"per_class": t.per_class, "global": t.global, "method": t.method})),
        "format_version": meta.format_version,
        "tool": meta.tool,
        "created_unix": meta.created_unix,
        "training_config": meta.config,
        "training": meta.training,
        "test_selected": meta.test_selected,
        "generation": model.generation,
        "loaded_unix": model.loaded_unix,
    }))
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let text = state
        .metrics
        .render(state.batcher.queue_depth(), state.slot.current().generation);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// 401 without the bearer token (health stays open for probes). The body of a refused request
/// is read and dropped chunk by chunk (up to the body limit and time), so the client reads the
/// 401 instead of a broken pipe, without the server holding the body.
async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let sent = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let path = request.uri().path();
        let open = path == "/v1/health" || page::is_public(path) || v2::is_public(path);
        if !open && !sent.is_some_and(|s| constant_time_eq(s.as_bytes(), token.as_bytes())) {
            let limits = state.limits;
            let _ = tokio::time::timeout(
                limits.body_timeout,
                discard_body(request.into_body(), limits.max_body),
            )
            .await;
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong 'Authorization: Bearer <token>' header",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// Reads `body` to its end or past `limit` bytes, keeping nothing.
async fn discard_body(mut body: axum::body::Body, limit: usize) {
    use axum::body::HttpBody;
    let mut read = 0usize;
    while read <= limit {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
        match frame.await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// Reads the whole body (up to the body limit, else 413) before any handler runs. A server
/// that answers early and closes makes clients still writing fail with a broken pipe instead
/// of reading the answer; buffering first lets every error message reach the client.
async fn buffer_body(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(
        state.limits.body_timeout,
        axum::body::to_bytes(body, state.limits.max_body),
    );
    let Ok(read) = read.await else {
        return ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body was not received within the server's {} ms",
                state.limits.body_timeout.as_millis()
            ),
        )
        .into_response();
    };
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Err(e) => {
            let text = e.to_string();
            let error = if text.contains("length limit") {
                ApiError::too_large(format!(
                    "the request body is above the server's limit of {} bytes",
                    state.limits.max_body
                ))
            } else {
                ApiError::bad_request(format!("reading the request body: {text}"))
            };
            error.into_response()
        }
    }
}

/// The token of an `Authorization` value `<scheme> <token>` whose scheme is `Bearer`, in any
/// case (RFC 9110: the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts every answer by route pattern and status, with its latency.
async fn count_request(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    state.metrics.observe_request(
        &path,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addresses_need_allow_remote() {
        assert!(check_addr("127.0.0.1:0", false).is_ok());
        assert!(check_addr("[::1]:0", false).is_ok());
        let err = check_addr("0.0.0.0:8080", false).unwrap_err().to_string();
        assert!(err.contains("--allow-remote"), "{err}");
        assert!(check_addr("0.0.0.0:8080", true).is_ok());
        assert!(check_addr("not an address", false).is_err());
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut c = ServeConfig::new("m.safetensors");
        assert!(c.validate().is_ok());
        c.queue = 0;
        assert!(c.validate().unwrap_err().to_string().contains("queue"));
    }
}
