//! The Open Inference Protocol (KServe v2; the HTTP API of NVIDIA Triton and OpenVINO Model
//! Server) beside `/v1`, on the same server, batcher, limits, token and metrics.
//!
//! Routes: `GET /v2` (server metadata: name `cras`, version, extensions
//! `["binary_tensor_data"]`), `GET /v2/health/live`, `GET /v2/health/ready` (both open without
//! the token, for probes), `GET /v2/models/{name}[/versions/1]` (model metadata: inputs and
//! outputs with datatypes and shapes, -1 for the batch),
//! `GET /v2/models/{name}[/versions/1]/ready` and `POST /v2/models/{name}[/versions/1]/infer`
//! ([`infer`]). The served model has ONE name (`--model-name`, default the model file's stem,
//! [`default_model_name`]) and ONE version, `1`; any other name or version answers 404. Errors
//! are JSON `{"error": "<message>", "status": <code>}`.

pub mod infer;
pub mod outputs;
pub mod tensor;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::api_error::ApiError;
use super::AppState;
use crate::{Error, Result};

/// The only model version served.
pub const VERSION: &str = "1";
/// Input: encoded image files (PNG, JPEG, BMP, TIFF), BYTES `[B]` or `[B, 1]`.
pub const IMAGE_FILES: &str = "image_bytes";
/// Input: preprocessed images, FP32 `[B, 3, S, S]`, as the exported graph's `image`.
pub const IMAGE_TENSOR: &str = "image";
/// Input: each image's class by name, BYTES `[B]` (empty: global match).
pub const CLASS_NAME: &str = "class_name";
/// Input: each image's class by index, INT64 `[B]` (negative: global match), as the exported
/// graph's `stated_class`.
pub const CLASS_INDEX: &str = "stated_class";

/// The v2 routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({"live": true})) }),
        )
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready),
        )
        .route("/v2/models/{name}/infer", post(infer::infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer::infer),
        )
}

/// Routes open without the bearer token (the health probes).
pub fn is_public(path: &str) -> bool {
    path == "/v2/health/live" || path == "/v2/health/ready"
}

/// The model name used when `--model-name` is not given: the model file's stem, with every
/// character outside `A-Za-z0-9_.-` replaced by `_` (`model` when there is no stem).
pub fn default_model_name(model: &Path) -> String {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        format!("model{name}")
    } else {
        name
    }
}

/// Checks a `--model-name`: 1 to 128 of `A-Za-z0-9_.-`, not starting with a dot.
pub fn check_model_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "model-name",
            name,
            "must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.'",
        ))
    }
}

/// 404 unless the path names the served model (and version `1` when it names a version).
pub(crate) fn check_model(
    state: &AppState,
    path: &HashMap<String, String>,
) -> std::result::Result<(), ApiError> {
    let name = path.get("name").map(String::as_str).unwrap_or_default();
    if name != state.model_name {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown model '{name}'; this server serves '{}'",
                state.model_name
            ),
        ));
    }
    if let Some(v) = path.get("version").filter(|v| v.as_str() != VERSION) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model '{name}' has no version '{v}'; it serves version {VERSION}"),
        ));
    }
    Ok(())
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "cras",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

/// Ready: a model is loaded (the server listens only after loading it) and the worker accepts
/// jobs.
async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let ready = state.batcher.accepting();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready})))
}

async fn model_ready(
    State(state): State<Arc<AppState>>,
    UrlPath(path): UrlPath<HashMap<String, String>>,
) -> std::result::Result<(StatusCode, Json<Value>), ApiError> {
    check_model(&state, &path)?;
    let (status, Json(body)) = ready(State(state.clone())).await;
    Ok((
        status,
        Json(json!({"name": state.model_name, "ready": body["ready"]})),
    ))
}

/// The model metadata: inputs (the FP32 tensor only for untiled models) and outputs.
async fn model_metadata(
    State(state): State<Arc<AppState>>,
    UrlPath(path): UrlPath<HashMap<String, String>>,
) -> std::result::Result<Json<Value>, ApiError> {
    check_model(&state, &path)?;
    let model = state.slot.current();
    let predictor = &model.predictor;
    let s = predictor.input_size() as i64;
    let m = predictor.map_size() as i64;
    let mut inputs = vec![json!({"name": IMAGE_FILES, "datatype": "BYTES", "shape": [-1]})];
    if predictor.meta.preprocess.tiling.is_none() {
        inputs.push(json!({"name": IMAGE_TENSOR, "datatype": "FP32", "shape": [-1, 3, s, s]}));
    }
    inputs.push(json!({"name": CLASS_NAME, "datatype": "BYTES", "shape": [-1]}));
    inputs.push(json!({"name": CLASS_INDEX, "datatype": "INT64", "shape": [-1]}));
    let outputs: Vec<Value> = outputs::OUTPUTS
        .iter()
        .map(|(name, datatype, dims)| {
            let mut shape = vec![-1i64];
            shape.extend(dims.iter().map(|_| m));
            json!({"name": name, "datatype": datatype, "shape": shape})
        })
        .collect();
    Ok(Json(json!({
        "name": state.model_name,
        "versions": [VERSION],
        "platform": "cras",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {
            "classes": predictor.meta.classes,
            "model_generation": model.generation,
            "input_size": s,
            "map_size": m,
            "engine": predictor.engine().name(),
            "tiled": predictor.meta.preprocess.tiling.is_some(),
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_default_to_a_clean_stem() {
        assert_eq!(
            default_model_name(Path::new("/m/line 3.safetensors")),
            "line_3"
        );
        assert_eq!(default_model_name(Path::new("model.safetensors")), "model");
        assert_eq!(default_model_name(Path::new(".hidden")), "model.hidden");
        assert!(check_model_name("line_3.v2-a").is_ok());
        for bad in ["", "a/b", ".x", "a b", "é"] {
            let err = check_model_name(bad).unwrap_err().to_string();
            assert!(err.contains("model-name"), "{err}");
        }
    }
}
