//! The outputs of `POST /v2/models/{name}/infer` and the answer's encoding.
//!
//! Outputs ([`OUTPUTS`], batch B first; names shared with the exported ONNX graph where it has
//! the same value): `image_score` FP32 `[B]`, `class_index` INT64 `[B]`, `matched_class` INT64
//! `[B]`, `class_similarity` FP32 `[B]`, `anomaly_map` FP32 `[B, M, M]` (M: the map side),
//! `class_name` BYTES `[B]`, `threshold` FP32 `[B]` (NaN, or null in JSON, without one),
//! `is_anomalous` INT8 `[B]` (1 defect, 0 ok, -1 no threshold) and `decision` BYTES `[B]`
//! (`defect`, `ok`, `no threshold`, as `/v1/predict`).
//!
//! Encoding ([`answer`]): an output goes as JSON `data` (flat, row-major) unless it is asked for
//! with `binary_data: true` or the request sets `binary_data_output: true`; binary outputs are
//! appended after the JSON in output order (FP32/INT64/INT8 little-endian, BYTES as 4-byte
//! little-endian lengths each followed by the bytes), each announcing `binary_data_size`, and
//! the answer then carries `Inference-Header-Content-Length` (the JSON's length) and
//! `Content-Type: application/octet-stream`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::tensor::HEADER_LENGTH;
use crate::infer::Prediction;
use crate::serve::model_slot::LoadedModel;
use crate::serve::thresholds::InForce;

/// Output names with their datatypes and shapes after the batch dimension (`M`: map side).
pub const OUTPUTS: [(&str, &str, &[&str]); 9] = [
    ("image_score", "FP32", &[]),
    ("class_index", "INT64", &[]),
    ("matched_class", "INT64", &[]),
    ("class_similarity", "FP32", &[]),
    ("anomaly_map", "FP32", &["M", "M"]),
    ("class_name", "BYTES", &[]),
    ("threshold", "FP32", &[]),
    ("is_anomalous", "INT8", &[]),
    ("decision", "BYTES", &[]),
];

/// One output's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// FP32.
    F32(Vec<f32>),
    /// INT64.
    I64(Vec<i64>),
    /// INT8.
    I8(Vec<i8>),
    /// BYTES.
    Bytes(Vec<Vec<u8>>),
}

/// One output of an answer.
#[derive(Debug, Clone)]
pub struct Output {
    /// Name.
    pub name: &'static str,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values.
    pub values: Values,
    /// Sent as binary data.
    pub binary: bool,
}

/// The values of output `name` for predictions scored by `model` and decided at `in_force`.
pub fn values(
    name: &str,
    model: &LoadedModel,
    predictions: &[Prediction],
    in_force: &InForce,
) -> Values {
    let predictor = &model.predictor;
    let meta = &predictor.meta;
    let threshold = |p: &Prediction| in_force.for_class(meta, p.class);
    let decision = |p: &Prediction| crate::infer::decide(p.score, threshold(p));
    let f32s = |f: &dyn Fn(&Prediction) -> f32| Values::F32(predictions.iter().map(f).collect());
    let i64s = |f: &dyn Fn(&Prediction) -> i64| Values::I64(predictions.iter().map(f).collect());
    let texts =
        |f: &dyn Fn(&Prediction) -> Vec<u8>| Values::Bytes(predictions.iter().map(f).collect());
    match name {
        "image_score" => f32s(&|p: &Prediction| p.score),
        "class_index" => i64s(&|p: &Prediction| p.class as i64),
        "matched_class" => i64s(&|p: &Prediction| p.matched as i64),
        "class_similarity" => f32s(&|p: &Prediction| p.class_similarity),
        "anomaly_map" => Values::F32(
            predictions
                .iter()
                .flat_map(|p| predictor.anomaly_map(p))
                .collect(),
        ),
        "class_name" => texts(&|p: &Prediction| {
            meta.classes
                .get(p.class)
                .cloned()
                .unwrap_or_default()
                .into_bytes()
        }),
        "threshold" => f32s(&|p: &Prediction| threshold(p).unwrap_or(f32::NAN)),
        "is_anomalous" => Values::I8(
            predictions
                .iter()
                .map(|p| match decision(p).is_anomalous() {
                    Some(true) => 1,
                    Some(false) => 0,
                    None => -1,
                })
                .collect(),
        ),
        _ => texts(&|p: &Prediction| decision(p).as_str().as_bytes().to_vec()),
    }
}

impl Values {
    /// The protocol's datatype name.
    pub fn datatype(&self) -> &'static str {
        match self {
            Values::F32(_) => "FP32",
            Values::I64(_) => "INT64",
            Values::I8(_) => "INT8",
            Values::Bytes(_) => "BYTES",
        }
    }

    /// The values as a flat JSON array (non-finite FP32 as null; BYTES as UTF-8 strings).
    fn json(&self) -> Value {
        match self {
            Values::F32(v) => json!(v),
            Values::I64(v) => json!(v),
            Values::I8(v) => json!(v),
            Values::Bytes(v) => json!(v
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>()),
        }
    }

    /// The values as binary tensor data.
    fn binary(&self) -> Vec<u8> {
        match self {
            Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::I8(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|b| b.len() + 4).sum());
                for b in v {
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(b);
                }
                out
            }
        }
    }
}

/// The answer: `head` (the JSON object without `outputs`) plus the outputs (see the module
/// documentation for the encoding).
pub fn answer(mut head: Value, outputs: Vec<Output>) -> Response {
    let mut binary = Vec::new();
    let mut any_binary = false;
    let listed: Vec<Value> = outputs
        .into_iter()
        .map(|o| {
            let mut item =
                json!({"name": o.name, "datatype": o.values.datatype(), "shape": o.shape});
            if o.binary {
                any_binary = true;
                let bytes = o.values.binary();
                item["parameters"] = json!({"binary_data_size": bytes.len()});
                binary.extend_from_slice(&bytes);
            } else {
                item["data"] = o.values.json();
            }
            item
        })
        .collect();
    head["outputs"] = Value::Array(listed);
    let text = head.to_string().into_bytes();
    let json_len = text.len();
    if !any_binary {
        return (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            text,
        )
            .into_response();
    }
    let mut body = text;
    body.append(&mut binary);
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        body,
    )
        .into_response();
    response
        .headers_mut()
        .insert(HEADER_LENGTH, HeaderValue::from(json_len));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_outputs_follow_the_json_in_order() {
        let outputs = vec![
            Output {
                name: "image_score",
                shape: vec![2],
                values: Values::F32(vec![0.5, f32::NAN]),
                binary: false,
            },
            Output {
                name: "decision",
                shape: vec![2],
                values: Values::Bytes(vec![b"ok".to_vec(), b"defect".to_vec()]),
                binary: true,
            },
            Output {
                name: "is_anomalous",
                shape: vec![2],
                values: Values::I8(vec![0, -1]),
                binary: true,
            },
        ];
        let response = answer(json!({"model_name": "m"}), outputs);
        let len: usize = response.headers()[HEADER_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = futures_body(response);
        let head: Value = serde_json::from_slice(&body[..len]).unwrap();
        assert_eq!(head["outputs"][0]["data"], json!([0.5, null]));
        assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 16);
        assert_eq!(head["outputs"][2]["parameters"]["binary_data_size"], 2);
        let raw = &body[len..];
        assert_eq!(&raw[..6], &[2, 0, 0, 0, b'o', b'k']);
        assert_eq!(&raw[6..10], &6u32.to_le_bytes());
        assert_eq!(&raw[16..], &[0, 0xff]);
    }

    fn futures_body(response: Response) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .unwrap()
            .to_vec()
    }
}
