//! The inspection page served at `/`, and the routes it adds to the API.
//!
//! The page is plain HTML, CSS and JavaScript (no framework, no build step), every file
//! embedded in the binary with `include_str!` and served from `/` and `/assets/<name>`; it
//! fetches nothing from another origin (the answers carry a `Content-Security-Policy` limiting
//! every source to `'self'`, plus `data:`/`blob:` images). It has four views: Inspect (score
//! dropped, picked or pasted images through `POST /v1/predict?map=png`), Thresholds (per-class
//! and global sliders re-deciding the shown images in the browser, histograms of the held-out
//! normal scores, saving through `PUT /v1/thresholds`), Line (polls `GET /v1/recent` every
//! second) and Model (`GET /v1/model`). The bearer token, when the server wants one, is typed
//! into the page and kept in a JavaScript variable only (never stored).
//!
//! `/` and `/assets/*` are open even with a token ([`is_public`]): they hold no data, only the
//! page; every API call the page makes carries the token.
//!
//! Routes added here: `GET /`, `GET /assets/{name}`, `GET /v1/recent` ([`super::recent`]),
//! `GET|PUT|DELETE /v1/thresholds` ([`super::thresholds`]).

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::api_error::ApiError;
use super::{recent, thresholds, AppState};

/// The page's files: (name, content type, text).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "page.css",
        "text/css; charset=utf-8",
        include_str!("assets/page.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/common.js"),
    ),
    (
        "inspect.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/inspect.js"),
    ),
    (
        "thresholds.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/thresholds.js"),
    ),
    (
        "line.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/line.js"),
    ),
    (
        "model.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/model.js"),
    ),
];

/// The page itself.
const INDEX: &str = include_str!("assets/index.html");

/// Only this origin; images may also be `data:` (anomaly maps) or `blob:` (uploads).
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// True for the paths that need no token: the page and its assets.
pub fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/")
}

/// The page's routes and the API routes it needs.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/",
            get(|| async { asset_response("text/html; charset=utf-8", INDEX) }),
        )
        .route("/assets/{name}", get(asset))
        .route("/v1/recent", get(recent::recent))
        .route(
            "/v1/thresholds",
            get(thresholds::get_thresholds)
                .put(thresholds::put_thresholds)
                .delete(thresholds::delete_thresholds),
        )
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, text)) => asset_response(content_type, text),
        None => ApiError::new(StatusCode::NOT_FOUND, format!("no asset '{name}'")).into_response(),
    }
}

fn asset_response(content_type: &'static str, text: &'static str) -> Response {
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Adds the page's routes and schemas to the OpenAPI document of [`super::openapi`].
pub fn document_routes(doc: &mut Value) {
    let error = json!({"$ref": "#/components/responses/Error"});
    let answer = json!({"description": "The thresholds in force.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thresholds"}}}});
    doc["components"]["schemas"]["ThresholdSet"] = json!({
        "type": "object",
        "description": "Thresholds chosen by an operator; at least one, every value finite.",
        "properties": {
            "per_class": {"type": "object", "additionalProperties": {"type": "number"},
                "description": "Threshold per class name (names the model knows)."},
            "global": {"type": "number", "description": "Threshold of every class not in per_class."},
            "saved_unix": {"type": "integer", "readOnly": true, "description": "When it was saved (set by the server)."}
        }
    });
    doc["components"]["schemas"]["Thresholds"] = json!({
        "type": "object",
        "required": ["active", "classes", "global"],
        "properties": {
            "active": {"type": "string", "enum": ["saved", "model", "none"]},
            "file": {"type": "string", "nullable": true, "description": "Name of the saved-set file beside the model."},
            "saved": {"nullable": true, "allOf": [{"$ref": "#/components/schemas/ThresholdSet"}]},
            "method": {"type": "string", "nullable": true, "description": "How the model's stored thresholds were chosen."},
            "global": {"type": "object", "description": "model, saved, effective (numbers or null)."},
            "classes": {"type": "array", "items": {"type": "object",
                "description": "name, model, saved, effective (numbers or null) and holdout_scores (the held-out normal scores behind the stored threshold)."}},
            "unknown_classes": {"type": "array", "items": {"type": "string"}},
            "model_generation": {"type": "integer"}
        }
    });
    let paths = &mut doc["paths"];
    paths["/"] = json!({"get": {
        "summary": "The inspection page (HTML; its scripts and styles are under /assets/). Open without a token.",
        "security": [],
        "responses": {"200": {"description": "HTML.", "content": {"text/html": {"schema": {"type": "string"}}}}}
    }});
    paths["/v1/recent"] = json!({"get": {
        "summary": "The last predictions the service made (any client; at most 200 kept, no images), the defect rate per class and the throughput of the last minute.",
        "parameters": [
            {"name": "since", "in": "query", "schema": {"type": "integer"}, "description": "Only entries with a larger id."},
            {"name": "limit", "in": "query", "schema": {"type": "integer"}, "description": "Most entries (the newest)."}
        ],
        "responses": {"200": {"description": "capacity, total, now_unix_ms, items [{id, unix_ms, name, class, score, threshold, decision}] oldest first, per_class [{class, count, defects, defect_rate}], throughput {window_s, images, per_s}.",
            "content": {"application/json": {"schema": {"type": "object"}}}}, "400": error.clone(), "401": error.clone()}
    }});
    paths["/v1/thresholds"] = json!({
        "get": {"summary": "The thresholds in force: the model's stored ones with their held-out normal scores, and the saved set.",
            "responses": {"200": answer.clone(), "401": error.clone()}},
        "put": {"summary": "Save a threshold set (written atomically beside the model, re-read on SIGHUP); /v1/predict decides with it unless ?threshold is given.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ThresholdSet"}}}},
            "responses": {"200": answer.clone(), "400": error.clone(), "401": error.clone(), "500": error.clone()}},
        "delete": {"summary": "Remove the saved set: decisions go back to the model's stored thresholds.",
            "responses": {"200": answer, "401": error.clone(), "500": error}}
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_and_style_the_page_names_is_embedded() {
        for (name, _, text) in ASSETS {
            assert!(
                INDEX.contains(&format!("/assets/{name}")),
                "{name} not linked"
            );
            assert!(!text.is_empty());
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name} links out"
            );
        }
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
    }

    #[test]
    fn only_the_page_is_public() {
        assert!(is_public("/") && is_public("/assets/page.css"));
        assert!(!is_public("/v1/recent") && !is_public("/v1/thresholds"));
    }
}
