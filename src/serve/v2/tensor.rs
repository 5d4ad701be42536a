//! The body of an Open Inference Protocol inference request: JSON, optionally followed by raw
//! tensor data (the binary tensor data extension).
//!
//! Input: the request headers and body. With an `Inference-Header-Content-Length: N` header the
//! first N bytes are the JSON inference request and the rest is binary data, cut in input order
//! into the `binary_data_size` bytes each input announces in its `parameters`; without it the
//! whole body is JSON. Output: the parsed request ([`InferRequest`]) and one [`InputTensor`] per
//! input with its shape, datatype and data (JSON `data` or raw bytes), then typed by
//! [`InputTensor::byte_elements`] (BYTES: each element a 4-byte little-endian length and the
//! bytes in binary; a string in JSON, base64-encoded for binary content such as image files),
//! [`InputTensor::f32_values`] (FP32: little-endian in binary, numbers in JSON, flat or nested)
//! and [`InputTensor::i64_values`] (INT64 likewise). Every inconsistency (lengths that do not add
//! up, a wrong datatype, an element count that is not the shape's product, bad base64) is a 400
//! naming the input.

use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine;
use serde_json::{Map, Value};

use crate::serve::api_error::ApiError;

/// The header of the binary tensor data extension.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// An inference request's JSON part.
#[derive(Debug, serde::Deserialize)]
pub struct InferRequest {
    /// Echoed in the answer.
    #[serde(default)]
    pub id: Option<String>,
    /// Request parameters (`binary_data_output`, `threshold`; others are ignored).
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// The input tensors.
    pub inputs: Vec<RequestInput>,
    /// The outputs asked for (all when absent).
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// One input as the JSON describes it.
#[derive(Debug, serde::Deserialize)]
pub struct RequestInput {
    /// Input name.
    pub name: String,
    /// Shape (non-negative).
    pub shape: Vec<i64>,
    /// Datatype (`BYTES`, `FP32`, `INT64`, ...).
    pub datatype: String,
    /// `binary_data_size` when the data follows the JSON.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// The data in JSON.
    #[serde(default)]
    pub data: Option<Value>,
}

/// One output asked for.
#[derive(Debug, serde::Deserialize)]
pub struct RequestOutput {
    /// Output name.
    pub name: String,
    /// `binary_data: true` to receive it as binary data.
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// Where an input's data is.
#[derive(Debug)]
pub enum TensorData {
    /// The JSON `data` value.
    Json(Value),
    /// Raw bytes after the JSON.
    Binary(Bytes),
}

/// One input with its data.
#[derive(Debug)]
pub struct InputTensor {
    /// Input name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Datatype as sent.
    pub datatype: String,
    /// The data.
    pub data: TensorData,
}

/// Parses a request body (see the module documentation).
pub fn parse_request(
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(InferRequest, Vec<InputTensor>), ApiError> {
    let json_len = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Inference-Header-Content-Length {v:?} is not a byte count"
                    ))
                })?,
        ),
    };
    let split = json_len.unwrap_or(body.len());
    if split > body.len() {
        return Err(ApiError::bad_request(format!(
            "Inference-Header-Content-Length is {split} but the body holds only {} bytes",
            body.len()
        )));
    }
    let mut request: InferRequest = serde_json::from_slice(&body[..split]).map_err(|e| {
        ApiError::bad_request(format!("the inference request is not valid JSON: {e}"))
    })?;
    let mut binary = body.slice(split..);
    let mut tensors = Vec::with_capacity(request.inputs.len());
    for input in std::mem::take(&mut request.inputs) {
        tensors.push(input_tensor(input, &mut binary, json_len.is_some())?);
    }
    if !binary.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} bytes of binary data follow the JSON but no input claims them (the inputs' \
             binary_data_size add up to less than the body holds)",
            binary.len()
        )));
    }
    Ok((request, tensors))
}

/// One input with its data taken from the JSON or from the front of `binary`.
fn input_tensor(
    input: RequestInput,
    binary: &mut Bytes,
    has_header: bool,
) -> Result<InputTensor, ApiError> {
    let name = input.name;
    if input.parameters.contains_key("shared_memory_region") {
        return Err(ApiError::bad_request(format!(
            "input '{name}': shared memory is not supported; send the data in the request"
        )));
    }
    let shape = input
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            ApiError::bad_request(format!(
                "input '{name}': shape {:?} has a negative dimension",
                input.shape
            ))
        })?;
    let size = match input.parameters.get("binary_data_size") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "input '{name}': binary_data_size {v} is not a byte count"
            ))
        })?),
    };
    let data = match (size, input.data) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "input '{name}' has both JSON data and binary_data_size; send one"
            )))
        }
        (None, None) => {
            return Err(ApiError::bad_request(format!(
                "input '{name}' has no data (neither 'data' nor binary_data_size)"
            )))
        }
        (None, Some(v)) => TensorData::Json(v),
        (Some(_), None) if !has_header => {
            return Err(ApiError::bad_request(format!(
                "input '{name}' announces binary data but the request has no \
                 Inference-Header-Content-Length header"
            )))
        }
        (Some(n), None) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > binary.len() {
                return Err(ApiError::bad_request(format!(
                    "input '{name}' announces {n} bytes of binary data but only {} are left in \
                     the body",
                    binary.len()
                )));
            }
            TensorData::Binary(binary.split_to(n))
        }
    };
    Ok(InputTensor {
        name,
        shape,
        datatype: input.datatype,
        data,
    })
}

impl InputTensor {
    /// Elements the shape holds.
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    fn expect_datatype(&self, datatype: &str) -> Result<(), ApiError> {
        if self.datatype != datatype {
            return Err(ApiError::bad_request(format!(
                "input '{}' has datatype {} but this model takes {datatype}",
                self.name, self.datatype
            )));
        }
        Ok(())
    }

    fn count_mismatch(&self, got: usize) -> ApiError {
        ApiError::bad_request(format!(
            "input '{}' holds {got} elements but its shape {:?} needs {}",
            self.name,
            self.shape,
            self.element_count()
        ))
    }

    /// The elements of a BYTES input. In JSON each element is a string: base64 of the bytes
    /// when `base64`, else its UTF-8 bytes.
    pub fn byte_elements(&self, base64: bool) -> Result<Vec<Bytes>, ApiError> {
        self.expect_datatype("BYTES")?;
        let out = match &self.data {
            TensorData::Binary(raw) => split_length_prefixed(&self.name, raw)?,
            TensorData::Json(v) => {
                let mut strings = Vec::new();
                flatten(v, &mut strings, &self.name)?;
                strings
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let s = s.as_str().ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "input '{}' element {i} is not a string",
                                self.name
                            ))
                        })?;
                        if !base64 {
                            return Ok(Bytes::copy_from_slice(s.as_bytes()));
                        }
                        base64::engine::general_purpose::STANDARD
                            .decode(s)
                            .map(Bytes::from)
                            .map_err(|e| {
                                ApiError::bad_request(format!(
                                    "input '{}' element {i} is not base64 ({e}); image files in \
                                     JSON are base64 strings, or send them as binary data",
                                    self.name
                                ))
                            })
                    })
                    .collect::<Result<Vec<Bytes>, ApiError>>()?
            }
        };
        if out.len() != self.element_count() {
            return Err(self.count_mismatch(out.len()));
        }
        Ok(out)
    }

    /// The values of an FP32 input.
    pub fn f32_values(&self) -> Result<Vec<f32>, ApiError> {
        self.expect_datatype("FP32")?;
        let out: Vec<f32> = match &self.data {
            TensorData::Binary(raw) => fixed_width(&self.name, raw, 4)?
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            TensorData::Json(v) => self
                .json_numbers(v)?
                .iter()
                .map(|n| n.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| self.not_numbers("numbers"))?,
        };
        if out.len() != self.element_count() {
            return Err(self.count_mismatch(out.len()));
        }
        Ok(out)
    }

    /// The values of an INT64 input.
    pub fn i64_values(&self) -> Result<Vec<i64>, ApiError> {
        self.expect_datatype("INT64")?;
        let out: Vec<i64> = match &self.data {
            TensorData::Binary(raw) => fixed_width(&self.name, raw, 8)?
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            TensorData::Json(v) => self
                .json_numbers(v)?
                .iter()
                .map(|n| n.as_i64())
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| self.not_numbers("integers"))?,
        };
        if out.len() != self.element_count() {
            return Err(self.count_mismatch(out.len()));
        }
        Ok(out)
    }

    fn json_numbers<'a>(&self, v: &'a Value) -> Result<Vec<&'a Value>, ApiError> {
        let mut out = Vec::new();
        flatten(v, &mut out, &self.name)?;
        Ok(out)
    }

    fn not_numbers(&self, what: &str) -> ApiError {
        ApiError::bad_request(format!(
            "input '{}' ({}) data must be {what}",
            self.name, self.datatype
        ))
    }
}

/// The leaves of a JSON array, flat or nested (row-major).
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>, name: &str) -> Result<(), ApiError> {
    match v {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Array(_) => flatten(item, out, name)?,
                    leaf => out.push(leaf),
                }
            }
            Ok(())
        }
        _ => Err(ApiError::bad_request(format!(
            "input '{name}': 'data' must be an array"
        ))),
    }
}

/// Raw little-endian elements of `width` bytes.
fn fixed_width<'a>(
    name: &str,
    raw: &'a [u8],
    width: usize,
) -> Result<std::slice::ChunksExact<'a, u8>, ApiError> {
    if !raw.len().is_multiple_of(width) {
        return Err(ApiError::bad_request(format!(
            "input '{name}': {} bytes of binary data are not whole {width}-byte elements",
            raw.len()
        )));
    }
    Ok(raw.chunks_exact(width))
}

/// Splits serialized BYTES elements: each a 4-byte little-endian length, then the bytes.
pub fn split_length_prefixed(name: &str, raw: &Bytes) -> Result<Vec<Bytes>, ApiError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < raw.len() {
        let Some(prefix) = raw.get(at..at + 4) else {
            return Err(ApiError::bad_request(format!(
                "input '{name}': element {} has a cut length prefix ({} bytes left, 4 needed)",
                out.len(),
                raw.len() - at
            )));
        };
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let start = at + 4;
        if len > raw.len() - start {
            return Err(ApiError::bad_request(format!(
                "input '{name}': element {} announces {len} bytes but only {} are left",
                out.len(),
                raw.len() - start
            )));
        }
        out.push(raw.slice(start..start + len));
        at = start + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str, binary: &[u8], header: bool) -> Result<Vec<InputTensor>, ApiError> {
        let mut headers = HeaderMap::new();
        if header {
            headers.insert(HEADER_LENGTH, json.len().into());
        }
        let body = [json.as_bytes(), binary].concat();
        parse_request(&headers, Bytes::from(body)).map(|(_, t)| t)
    }

    #[test]
    fn binary_data_is_cut_in_input_order() {
        let json = r#"{"inputs": [
            {"name": "a", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 11}},
            {"name": "b", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}"#;
        let mut raw = Vec::new();
        raw.extend_from_slice(&3u32.to_le_bytes());
        raw.extend_from_slice(b"abc");
        raw.extend_from_slice(&0u32.to_le_bytes());
        raw.extend_from_slice(&1.5f32.to_le_bytes());
        let t = request(json, &raw, true).unwrap();
        let a = t[0].byte_elements(true).unwrap();
        assert_eq!(a, vec![Bytes::from_static(b"abc"), Bytes::new()]);
        assert_eq!(t[1].f32_values().unwrap(), vec![1.5]);
        // Sizes that do not add up to the body.
        let err = request(json, &raw[..raw.len() - 1], true).unwrap_err();
        assert!(err.message.contains("'b' announces 4 bytes"), "{err}");
        let err = request(json, &[raw.as_slice(), &[0]].concat(), true).unwrap_err();
        assert!(err.message.contains("no input claims"), "{err}");
        let err = request(json, &raw, false).unwrap_err();
        assert!(err.message.contains("JSON"), "{err}");
    }

    #[test]
    fn cut_elements_and_wrong_types_are_named() {
        let raw = Bytes::from([&9u32.to_le_bytes()[..], b"abc"].concat());
        let err = split_length_prefixed("img", &raw).unwrap_err();
        assert!(err.message.contains("announces 9 bytes"), "{err}");
        let err = split_length_prefixed("img", &Bytes::from_static(&[1, 0])).unwrap_err();
        assert!(err.message.contains("cut length prefix"), "{err}");
        let json = r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2.5]},
            {"name": "y", "shape": [1], "datatype": "BYTES", "data": ["%%"]},
            {"name": "z", "shape": [1, 2], "datatype": "INT64", "data": [[3, -1]]}]}"#;
        let t = request(json, &[], false).unwrap();
        assert_eq!(t[0].f32_values().unwrap(), vec![1.0, 2.5]);
        assert!(t[0]
            .i64_values()
            .unwrap_err()
            .message
            .contains("datatype FP32"));
        assert!(t[1]
            .byte_elements(true)
            .unwrap_err()
            .message
            .contains("base64"));
        assert_eq!(
            t[1].byte_elements(false).unwrap(),
            vec![Bytes::from_static(b"%%")]
        );
        assert_eq!(t[2].i64_values().unwrap(), vec![3, -1]);
        let json =
            r#"{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}"#;
        let err = request(json, &[], false).unwrap()[0]
            .f32_values()
            .unwrap_err();
        assert!(err.message.contains("holds 2 elements"), "{err}");
    }
}
