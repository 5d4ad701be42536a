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

/// Adds the page's routes and schemas to the OpenAPI document of [`super::openapi`], for a
/// model of `classes` (the keys `PUT /v1/thresholds` takes in `per_class`).
pub fn document_routes(doc: &mut Value, classes: &[String]) {
    use super::openapi::threshold_schema;
    let error = json!({"$ref": "#/components/responses/Error"});
    let answer = json!({"description": "The thresholds in force.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thresholds"}}}});
    let per_class: serde_json::Map<String, Value> = classes
        .iter()
        .map(|c| (c.clone(), threshold_schema()))
        .collect();
    let mut global = threshold_schema();
    global["nullable"] = true.into();
    global["description"] = "Threshold of every class not in per_class (null: none).".into();
    let saved_unix = json!({"type": "integer", "minimum": 0, "maximum": u64::MAX, "nullable": true,
        "description": "When it was saved (seconds since the Unix epoch); the server sets it."});
    doc["components"]["schemas"]["ThresholdSet"] = json!({
        "type": "object",
        "description": "Thresholds chosen by an operator: at least one (a non-null global or a per_class entry), every value within the f32 range.",
        "additionalProperties": false,
        "properties": {
            "per_class": {"type": "object", "properties": per_class, "additionalProperties": false,
                "description": "Threshold per class name (the model's classes)."},
            "global": global,
            "saved_unix": saved_unix
        },
        "anyOf": [
            {"required": ["global"], "properties": {"global": {"type": "number"}}},
            {"required": ["per_class"], "properties": {"per_class": {"type": "object", "minProperties": 1}}}
        ]
    });
    // A saved set as answered: its per_class may name classes of an earlier model (kept in the
    // file, ignored, listed in unknown_classes).
    doc["components"]["schemas"]["SavedThresholdSet"] = json!({
        "type": "object",
        "properties": {
            "per_class": {"type": "object", "additionalProperties": {"type": "number"}},
            "global": {"type": "number", "nullable": true},
            "saved_unix": saved_unix
        }
    });
    doc["components"]["schemas"]["Thresholds"] = json!({
        "type": "object",
        "required": ["active", "classes", "global"],
        "properties": {
            "active": {"type": "string", "enum": ["saved", "model", "none"]},
            "file": {"type": "string", "nullable": true, "description": "Name of the saved-set file."},
            "saved": {"nullable": true, "allOf": [{"$ref": "#/components/schemas/SavedThresholdSet"}]},
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
    let names: Vec<&str> = ASSETS.iter().map(|(name, _, _)| *name).collect();
    let mut types: Vec<&str> = ASSETS
        .iter()
        .map(|(_, t, _)| t.split(';').next().unwrap_or(t))
        .collect();
    types.sort();
    types.dedup();
    let content: serde_json::Map<String, Value> = types
        .into_iter()
        .map(|t| (t.to_string(), json!({"schema": {"type": "string"}})))
        .collect();
    paths["/assets/{name}"] = json!({"get": {
        "summary": "The page's scripts and styles. Open without a token.",
        "security": [],
        "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string", "enum": names}}],
        "responses": {"200": {"description": "The file.", "content": content}, "404": error.clone()}
    }});
    let count = json!({"type": "integer", "minimum": 0, "maximum": u64::MAX});
    paths["/v1/recent"] = json!({"get": {
        "summary": "The last predictions the service made (any client; at most 200 kept, no images), the defect rate per class and the throughput of the last minute.",
        "parameters": [
            {"name": "since", "in": "query", "schema": count, "description": "Only entries with a larger id."},
            {"name": "limit", "in": "query", "schema": count, "description": "Most entries (the newest; at most 200 are kept)."}
        ],
        "responses": {"200": {"description": "capacity, total, now_unix_ms, items [{id, unix_ms, name, class, score, threshold, decision}] oldest first, per_class [{class, count, defects, defect_rate}], throughput {window_s, images, per_s}.",
            "content": {"application/json": {"schema": {"type": "object"}}}}, "400": error.clone(), "401": error.clone()}
    }});
    paths["/v1/thresholds"] = json!({
        "get": {"summary": "The thresholds in force: the model's stored ones with their held-out normal scores, and the saved set.",
            "responses": {"200": answer.clone(), "401": error.clone()}},
        "put": {"summary": "Save a threshold set (written atomically, watched, re-read on SIGHUP); /v1/predict decides with it unless ?threshold is given.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ThresholdSet"}}}},
            "responses": {"200": answer.clone(), "400": error.clone(), "401": error.clone(), "409": error.clone(),
                "413": error.clone(), "500": error.clone()}},
        "delete": {"summary": "Remove the saved set: decisions go back to the model's stored thresholds.",
            "responses": {"200": answer, "401": error.clone(), "409": error.clone(), "500": error}}
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
    fn the_document_lists_every_asset() {
        let mut doc = json!({"paths": {}, "components": {"schemas": {}}});
        document_routes(&mut doc, &["a".to_string()]);
        let op = &doc["paths"]["/assets/{name}"]["get"];
        let names: Vec<&str> = ASSETS.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(op["parameters"][0]["schema"]["enum"], json!(names));
        let content = op["responses"]["200"]["content"].as_object().unwrap();
        for (name, content_type, _) in ASSETS {
            let main = content_type.split(';').next().unwrap();
            assert!(content.contains_key(main), "{name}: {main}");
        }
    }

    #[test]
    fn only_the_page_is_public() {
        assert!(is_public("/") && is_public("/assets/page.css"));
        assert!(!is_public("/v1/recent") && !is_public("/v1/thresholds"));
    }
}
