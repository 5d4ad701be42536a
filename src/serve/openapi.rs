//! The hand-written OpenAPI 3.0 document of the service, served at `GET /v1/openapi.json`
//! (the page's routes are added by [`super::page::document_routes`]).

use serde_json::{json, Value};

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
                "Prediction": {
                    "type": "object",
                    "required": ["name", "class", "class_similarity", "score", "threshold", "is_anomalous", "decision", "ms"],
                    "properties": {
                        "name": {"type": "string", "description": "Multipart file name or part name; 'body' for a raw body."},
                        "class": {"type": "string", "description": "Class used: matched globally, or the one stated in ?class."},
                        "class_similarity": {"type": "number", "description": "Cosine similarity with the matched class's center map."},
                        "score": {"type": "number", "description": "Image anomaly score (max patch score), identical to `cras predict`."},
                        "threshold": {"type": "number", "nullable": true, "description": "?threshold, else the model's stored threshold for the class."},
                        "is_anomalous": {"type": "boolean", "nullable": true, "description": "score >= threshold; null without a threshold."},
                        "decision": {"type": "string", "enum": ["defect", "ok", "no threshold"]},
                        "ms": {"type": "number", "description": "Server time for the whole request, in milliseconds."},
                        "map": {"type": "string", "format": "byte", "description": "With ?map=png: the anomaly map as a base64 grayscale PNG of the model input size (0..1 mapped to 0..255)."}
                    }
                },
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
