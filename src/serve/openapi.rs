//! The OpenAPI 3.0 document of the service, served at `GET /v1/openapi.json` (the page's
//! routes are added by [`super::page::document_routes`]). Written here, except the schema of a
//! prediction, which comes from the record type itself
//! ([`PredictionRecord::json_schema`]).

use serde_json::{json, Value};

use crate::infer::{PredictionRecord, Surface};

/// The document for a server running with a bearer token (`auth`) or without: without one, no
/// security scheme is declared and no route answers 401.
pub fn document_for(auth: bool) -> Value {
    let mut doc = document();
    if !auth {
        if let Some(o) = doc.as_object_mut() {
            o.remove("security");
        }
        if let Some(c) = doc["components"].as_object_mut() {
            c.remove("securitySchemes");
        }
        if let Some(paths) = doc["paths"].as_object_mut() {
            for op in paths.values_mut().filter_map(|p| p.as_object_mut()) {
                for method in op.values_mut().filter_map(|m| m.as_object_mut()) {
                    method.remove("security");
                    if let Some(r) = method.get_mut("responses").and_then(|r| r.as_object_mut()) {
                        r.remove("401");
                    }
                }
            }
        }
    }
    doc
}

/// The OpenAPI 3.0.3 document describing every route, parameter and answer, for a server
/// running with a bearer token (see [`document_for`]).
pub fn document() -> Value {
    let error = json!({"$ref": "#/components/responses/Error"});
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "cras serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Multi-class visual anomaly detection (CRAS): score images with one trained model."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "Required on every route except /v1/health when the server runs with --token-file."}},
            "schemas": {
                "Prediction": PredictionRecord::json_schema(Surface::Service),
                "PredictResponse": {
                    "type": "object",
                    "required": ["model_generation", "predictions"],
                    "properties": {
                        "model_generation": {"type": "integer", "description": "1 at start, +1 per reload."},
                        "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "status"],
                    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}
                }
            },
            "responses": {
                "Error": {"description": "What is wrong.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/predict": {"post": {
                "summary": "Score one image (raw body) or several (multipart/form-data, one image per part).",
                "parameters": [
                    {"name": "class", "in": "query", "schema": {"type": "string"}, "description": "The images' class: skip the global match."},
                    {"name": "threshold", "in": "query", "schema": {"type": "number"}, "description": "Decision threshold overriding the stored one."},
                    {"name": "map", "in": "query", "schema": {"type": "string", "enum": ["png"]}, "description": "Add anomaly maps."}
                ],
                "requestBody": {"required": true, "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {"schema": {"type": "object", "additionalProperties": {"type": "string", "format": "binary"}}}
                }},
                "responses": {
                    "200": {"description": "One prediction per image, in request order.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
                    "400": error.clone(), "401": error.clone(), "413": error.clone(), "415": error.clone(),
                    "500": error.clone(),
                    "503": {"description": "Queue full; retry after the Retry-After header's seconds.",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "504": error.clone()
                }
            }},
            "/v1/health": {"get": {
                "summary": "Liveness; open even with a token.",
                "security": [],
                "responses": {"200": {"description": "status, model_generation, queue_depth, uptime_s",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}
            }},
            "/v1/model": {"get": {
                "summary": "The model: classes, backbone, preprocessing, thresholds, format version, training config, test_selected.",
                "responses": {"200": {"description": "Model metadata.", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": error.clone()}
            }},
            "/metrics": {"get": {
                "summary": "Prometheus text: requests by route and status, latency histogram, batch sizes, queue depth.",
                "responses": {"200": {"description": "Prometheus exposition format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": error.clone()}
            }},
            "/v1/openapi.json": {"get": {
                "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.0.3.", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": error}
            }}
        }
    });
    super::page::document_routes(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys the service's prediction schema lists.
    fn schema_keys() -> Vec<String> {
        let doc = document();
        let props = doc["components"]["schemas"]["Prediction"]["properties"]
            .as_object()
            .expect("the Prediction schema has properties");
        props.keys().cloned().collect()
    }

    #[test]
    fn the_prediction_schema_is_the_record_the_service_writes() {
        let record = PredictionRecord {
            name: Some("body".into()),
            map: Some("iVBORw0KGgo=".into()),
            ..serde_json::from_value(json!({
                "class": "a", "class_similarity": 0.5, "decision": "ok", "is_anomalous": false,
                "ms": 1.0, "score": 0.25, "threshold": 0.5,
            }))
            .unwrap()
        };
        let written = serde_json::to_value(&record).unwrap();
        let keys: Vec<String> = written.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, schema_keys());
    }

    #[test]
    fn docs_serve_md_describes_every_key_of_the_record() {
        let doc = include_str!("../../docs/serve.md");
        for key in crate::infer::RECORD_FIELDS.map(|f| f.key) {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "docs/serve.md has no table row for the prediction key `{key}`"
            );
        }
    }
}
