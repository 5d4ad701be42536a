//! `cras serve`: an HTTP inference service over one trained model (axum + tokio).
//!
//! Routes: `POST /v1/predict` (see [`predict`]), `GET /v1/health`, `GET /v1/model` (the model's
//! metadata), `GET /metrics` (Prometheus text, [`metrics`]) and `GET /v1/openapi.json`
//! ([`openapi`], built from the model in force). Every error is JSON `{"error", "status"}`
//! ([`api_error`]). The inspection page ([`page`]) is served at `/` with `GET /v1/recent`
//! ([`recent`]) and
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
//!
//! Here: the shared [`AppState`], the [`router`] and its small handlers. Beside it:
//! [`ServeConfig`] with the address and token checks (file `config`), the lifecycle
//! ([`Server`], [`ServerHandle`], file `server`) and the middleware every request passes
//! (file `gate`).

pub mod api_error;
pub mod batcher;
pub mod budget;
mod config;
pub mod conn;
mod gate;
pub mod metrics;
pub mod model_slot;
pub mod openapi;
pub mod page;
pub mod predict;
pub mod provenance;
pub mod recent;
mod server;
pub mod thresholds;
pub mod thresholds_watch;
pub mod v2;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use api_error::ApiError;
use batcher::Batcher;
use gate::{buffer_body, count_request, require_token};
use metrics::Metrics;
use model_slot::ModelSlot;

pub use config::{check_addr, read_token, ServeConfig};
pub use server::{Server, ServerHandle};

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

/// The routes with their middleware: metrics outermost, then the token check (an
/// unauthenticated body is read and discarded, never buffered), then body buffering (so that
/// every answer, errors included, reaches a client still sending its body).
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.limits.max_body;
    Router::new()
        .route("/v1/predict", post(predict::predict))
        .route("/v1/health", get(health))
        .route("/v1/model", get(model_info))
        .route("/metrics", get(metrics_text))
        .route("/v1/openapi.json", get(openapi_json))
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

/// The OpenAPI document of the model in force (see [`openapi`]).
async fn openapi_json(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let model = state.slot.current();
    Json(openapi::document_for(
        state.token.is_some(),
        &model.predictor.meta.classes,
    ))
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
