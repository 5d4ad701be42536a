//! Every answer names the model generation and the threshold set in force: response headers
//! `X-Cras-Model-Generation: <n>` and `X-Cras-Thresholds: source=<saved|model>;
//! version=<hex|model>` (see [`super::thresholds::ThresholdsTag`]).
//!
//! Handlers that score ([`with_headers`]: `POST /v1/predict`, `POST /v2/models/{name}/infer`)
//! set them to what decided the answer: the model that scored it and the set read when the
//! request arrived. [`add_headers`] (middleware) fills them on every other answer with what is
//! in force when the answer leaves.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::thresholds::ThresholdsTag;
use super::AppState;

/// The model generation header.
pub const MODEL_GENERATION: HeaderName = HeaderName::from_static("x-cras-model-generation");
/// The threshold set header.
pub const THRESHOLDS: HeaderName = HeaderName::from_static("x-cras-thresholds");

/// Sets both headers on `headers`.
pub fn set(headers: &mut HeaderMap, generation: u64, tag: &ThresholdsTag) {
    headers.insert(MODEL_GENERATION, HeaderValue::from(generation));
    if let Ok(v) = HeaderValue::from_str(&tag.header_value()) {
        headers.insert(THRESHOLDS, v);
    }
}

/// `response` with both headers set.
pub fn with_headers(mut response: Response, generation: u64, tag: &ThresholdsTag) -> Response {
    set(response.headers_mut(), generation, tag);
    response
}

/// Middleware: adds the headers the handler did not set, from what is in force now.
pub async fn add_headers(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if !response.headers().contains_key(&MODEL_GENERATION) {
        let generation = state.slot.current().generation;
        set(response.headers_mut(), generation, &state.thresholds.tag());
    }
    response
}
