//! The OpenAPI 3.0 document of the service, served at `GET /v1/openapi.json`: every request it
//! allows is one the server accepts, every one it forbids is refused (checked by Schemathesis,
//! `tests/serve/serve_schemathesis.rs`). It is built per request from the model in force
//! ([`document_for`]), so a reload changes it: the model's class names are the `enum` of
//! `/v1/predict?class` and of the answers' `class`, and the only keys `PUT /v1/thresholds`
//! takes in `per_class`. Thresholds are bounded by the f32 range (±[`thresholds::LIMIT`]), the
//! counts of `/v1/recent` are unsigned, a raw body is one of the [`IMAGE_TYPES`] the server
//! decodes, a multipart request holds 1 to [`MAX_IMAGES_PER_REQUEST`] parts
//! ([`multipart_schema`]), engines and precisions are the names the server reports. Written
//! here, except the schema of a prediction, which comes from the record type itself
//! ([`PredictionRecord::json_schema`]), and the page's routes
//! ([`super::page::document_routes`]).

use serde_json::{json, Value};

use super::predict::MAX_IMAGES_PER_REQUEST;
use super::thresholds;
use crate::infer::engine::{EngineChoice, Precision};
use crate::infer::{PredictionRecord, Surface};

/// The document for a server running with a bearer token (`auth`) or without, serving a model
/// of `classes`: without a token, no security scheme is declared and no route answers 401.
pub fn document_for(auth: bool, classes: &[String]) -> Value {
    let mut doc = document(classes);
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

/// A class name of the served model: one of `classes`.
pub fn class_schema(classes: &[String]) -> Value {
    json!({"type": "string", "enum": classes})
}

/// A threshold: a number within the f32 range, as [`thresholds::threshold_from`] accepts.
pub fn threshold_schema() -> Value {
    json!({"type": "number", "minimum": -thresholds::LIMIT, "maximum": thresholds::LIMIT})
}

/// The image formats the server decodes ([`crate::data::decode`]), as raw-body media types. The
/// server takes any `image/*` content type and tells the format from the bytes, but an
/// `image/gif` body is refused: the document names only what decodes.
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/bmp", "image/tiff"];

/// The bodies of `/v1/predict`: one image ([`IMAGE_TYPES`] or `application/octet-stream`) or
/// several ([`multipart_schema`]).
fn body_content() -> Value {
    let image = json!({"schema": {"type": "string", "format": "binary", "minLength": 1}});
    let mut content = serde_json::Map::new();
    for t in IMAGE_TYPES.iter().chain(&["application/octet-stream"]) {
        content.insert(t.to_string(), image.clone());
    }
    content.insert(
        "multipart/form-data".into(),
        json!({"schema": multipart_schema()}),
    );
    content.into()
}

/// The multipart body of `/v1/predict`: 1 to [`MAX_IMAGES_PER_REQUEST`] image parts. The server
/// takes parts of any field name a part header can carry, which OpenAPI 3.0 cannot state (it
/// has no `propertyNames`; a name with a control character is refused by the multipart
/// parser): the document names the one field the page sends, `image`, repeated.
pub fn multipart_schema() -> Value {
    json!({
        "type": "object",
        "description": "One image per part, in the field `image` repeated (any other field name a part header can carry is taken too, e.g. curl -F a=@one.png -F b=@two.png). A prediction's name is the part's file name, else its field name, else part<i> (its position from 0).",
        "required": ["image"],
        "additionalProperties": false,
        "properties": {"image": {"type": "array", "minItems": 1, "maxItems": MAX_IMAGES_PER_REQUEST,
            "items": {"type": "string", "format": "binary", "minLength": 1}}}
    })
}

/// The engines' names as `/v1/model` reports them.
fn engine_names() -> Vec<&'static str> {
    use clap::ValueEnum;
    EngineChoice::value_variants()
        .iter()
        .filter_map(|c| match c {
            EngineChoice::Kind(k) => Some(k.name()),
            EngineChoice::Auto => None,
        })
        .collect()
}

/// The precisions' names as `/v1/model` reports them.
fn precision_names() -> Vec<&'static str> {
    use clap::ValueEnum;
    Precision::value_variants()
        .iter()
        .map(|p| p.name())
        .collect()
}

/// The OpenAPI 3.0.3 document describing every route, parameter and answer, for a server
/// running with a bearer token (see [`document_for`]) and serving a model of `classes`.
pub fn document(classes: &[String]) -> Value {
    let error = json!({"$ref": "#/components/responses/Error"});
    let mut prediction = PredictionRecord::json_schema(Surface::Service);
    prediction["properties"]["class"]["enum"] = json!(classes);
    let threshold = threshold_schema();
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "cras serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Multi-class visual anomaly detection (CRAS): score images with one trained model. This document describes the model in force and changes when it is reloaded."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "Required on every route except /v1/health, / and /assets/ when the server runs with --token-file."}},
            "schemas": {
                "Prediction": prediction,
                "ThresholdsTag": {
                    "type": "object",
                    "required": ["source", "version"],
                    "properties": {
                        "source": {"type": "string", "enum": ["saved", "model"]},
                        "version": {"type": "string", "description": "16 hex digits of the saved file, or `model`."}
                    }
                },
                "PredictResponse": {
                    "type": "object",
                    "required": ["model_generation", "thresholds", "predictions"],
                    "properties": {
                        "model_generation": {"type": "integer", "minimum": 1, "description": "1 at start, +1 per reload."},
                        "thresholds": {"$ref": "#/components/schemas/ThresholdsTag"},
                        "predictions": {"type": "array", "minItems": 1, "maxItems": MAX_IMAGES_PER_REQUEST,
                            "items": {"$ref": "#/components/schemas/Prediction"}}
                    }
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "model_generation", "queue_depth", "uptime_s"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok"]},
                        "model_generation": {"type": "integer", "minimum": 1},
                        "queue_depth": {"type": "integer", "minimum": 0},
                        "uptime_s": {"type": "number", "minimum": 0}
                    }
                },
                "Model": {
                    "type": "object",
                    "required": ["classes", "engine", "precision", "input_size", "generation"],
                    "properties": {
                        "classes": {"type": "array", "minItems": 1, "items": class_schema(classes)},
                        "engine": {"type": "string", "enum": engine_names()},
                        "precision": {"type": "string", "enum": precision_names()},
                        "input_size": {"type": "integer", "minimum": 1},
                        "generation": {"type": "integer", "minimum": 1}
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
                    {"name": "class", "in": "query", "schema": class_schema(classes), "description": "The images' class (one of the model's): skip the global match."},
                    {"name": "threshold", "in": "query", "schema": threshold, "description": "Decision threshold overriding the saved and stored ones."},
                    {"name": "map", "in": "query", "schema": {"type": "string", "enum": ["png"]}, "description": "Add anomaly maps."}
                ],
                "requestBody": {"required": true, "content": body_content()},
                "responses": {
                    "200": {"description": "One prediction per image, in request order.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
                    "400": error.clone(), "401": error.clone(), "408": error.clone(), "413": error.clone(),
                    "415": error.clone(), "500": error.clone(),
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
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}
            }},
            "/v1/model": {"get": {
                "summary": "The model: classes, backbone, preprocessing, thresholds, engine, precision, format version, training config, test_selected.",
                "responses": {"200": {"description": "Model metadata.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}}, "401": error.clone()}
            }},
            "/metrics": {"get": {
                "summary": "Prometheus text: requests by route and status, latency histogram, batch sizes, queue depth.",
                "responses": {"200": {"description": "Prometheus exposition format 0.0.4.", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": error.clone()}
            }},
            "/v1/openapi.json": {"get": {
                "summary": "This document (for the model in force).",
                "responses": {"200": {"description": "OpenAPI 3.0.3.", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": error}
            }}
        }
    });
    super::page::document_routes(&mut doc, classes);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> Vec<String> {
        vec!["bottle".into(), "screw".into()]
    }

    /// The keys the service's prediction schema lists.
    fn schema_keys() -> Vec<String> {
        let doc = document(&classes());
        let props = doc["components"]["schemas"]["Prediction"]["properties"]
            .as_object()
            .expect("the Prediction schema has properties");
        props.keys().cloned().collect()
    }

    #[test]
    fn the_models_classes_are_the_enums_and_the_only_threshold_keys() {
        let doc = document(&classes());
        let predict = &doc["paths"]["/v1/predict"]["post"];
        let class = predict["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "class")
            .unwrap();
        assert_eq!(class["schema"]["enum"], json!(classes()));
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["Prediction"]["properties"]["class"]["enum"],
            json!(classes())
        );
        assert_eq!(
            schemas["Model"]["properties"]["classes"]["items"]["enum"],
            json!(classes())
        );
        let per_class = &schemas["ThresholdSet"]["properties"]["per_class"];
        let keys: Vec<&String> = per_class["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["bottle", "screw"]);
        assert_eq!(per_class["additionalProperties"], false);
        assert_eq!(schemas["ThresholdSet"]["additionalProperties"], false);
        // Another model, another document.
        let other = document(&["ring".to_string()]);
        assert_eq!(
            other["components"]["schemas"]["Prediction"]["properties"]["class"]["enum"],
            json!(["ring"])
        );
    }

    #[test]
    fn numbers_are_bounded_as_the_server_checks_them() {
        let t = threshold_schema();
        let max = t["maximum"].as_f64().unwrap();
        let min = t["minimum"].as_f64().unwrap();
        assert_eq!(max, f32::MAX as f64);
        assert_eq!(min, -max);
        assert_eq!(thresholds::threshold_from(max), Ok(f32::MAX));
        assert_eq!(thresholds::threshold_from(min), Ok(-f32::MAX));
        let beyond = f64::from_bits(max.to_bits() + 1);
        assert!(thresholds::threshold_from(beyond).is_err());
        assert!(thresholds::threshold_from(-beyond).is_err());
        assert!(thresholds::threshold_from_text(&format!("{beyond:e}")).is_err());
        assert!(thresholds::threshold_from(f64::NAN).is_err());

        let doc = document(&classes());
        for p in doc["paths"]["/v1/recent"]["get"]["parameters"]
            .as_array()
            .unwrap()
        {
            assert_eq!(p["schema"]["minimum"], 0, "{p}");
            assert_eq!(p["schema"]["maximum"], u64::MAX, "{p}");
        }
        let multipart = &doc["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
            ["multipart/form-data"]["schema"];
        assert_eq!(multipart, &multipart_schema());
        let parts = &multipart["properties"]["image"];
        assert_eq!(parts["minItems"], 1);
        assert_eq!(parts["maxItems"], MAX_IMAGES_PER_REQUEST);
    }

    #[test]
    fn every_documented_image_type_decodes_and_gif_does_not() {
        let im = image::RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 7]));
        let encode = |format: image::ImageFormat| {
            let mut bytes = Vec::new();
            im.write_to(&mut std::io::Cursor::new(&mut bytes), format)
                .map(|_| bytes)
        };
        for t in IMAGE_TYPES {
            let format = image::ImageFormat::from_mime_type(t).unwrap();
            let bytes = encode(format).unwrap();
            let decoded = crate::data::decode::decode_rgb_bytes_with_limit(&bytes, t, 1 << 20);
            assert_eq!(decoded.map(|d| d.dimensions()).ok(), Some((9, 7)), "{t}");
        }
        let doc = document(&classes());
        let content = doc["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
            .as_object()
            .unwrap();
        let mut types: Vec<&str> = content.keys().map(String::as_str).collect();
        types.sort();
        assert_eq!(
            types,
            [
                "application/octet-stream",
                "image/bmp",
                "image/jpeg",
                "image/png",
                "image/tiff",
                "multipart/form-data"
            ]
        );
        // GIF is no format the server decodes (the image crate is built without it).
        assert!(encode(image::ImageFormat::Gif).is_err());
    }

    #[test]
    fn engines_and_precisions_are_the_names_reported() {
        let doc = document(&classes());
        let model = &doc["components"]["schemas"]["Model"]["properties"];
        assert_eq!(
            model["engine"]["enum"],
            json!(["candle", "onnxruntime", "openvino"])
        );
        assert_eq!(model["precision"]["enum"], json!(["f32", "bf16", "int8"]));
    }

    #[test]
    fn without_a_token_nothing_mentions_one() {
        let open = document_for(false, &classes());
        let text = open.to_string();
        assert!(!text.contains("\"401\"") && !text.contains("bearer"));
        let guarded = document_for(true, &classes());
        assert!(guarded["components"]["securitySchemes"]["bearer"].is_object());
        assert_eq!(guarded["paths"]["/v1/health"]["get"]["security"], json!([]));
        assert_eq!(
            guarded["paths"]["/assets/{name}"]["get"]["security"],
            json!([])
        );
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
