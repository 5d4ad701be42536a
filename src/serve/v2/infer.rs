//! `POST /v2/models/{name}[/versions/1]/infer`: the Open Inference Protocol's inference.
//!
//! Inputs (names in [`super`]): exactly one of `image_bytes` (BYTES `[B]` or `[B, 1]`: encoded
//! image files; binary data, or base64 strings in JSON) and `image` (FP32 `[B, 3, S, S]`:
//! preprocessed exactly as the exported ONNX graph takes it; untiled models only), at most one
//! of `class_name` (BYTES `[B]`: class names, empty for the global match) and `stated_class`
//! (INT64 `[B]`: class indices, negative for the global match). Request parameter `threshold`
//! (a finite number within the f32 range) overrides every threshold, like `/v1/predict?threshold`.
//!
//! Image files are decoded under the same limits as `/v1/predict` (pixel limit, in-flight pixel
//! budget); every image is scored through the same [`Batcher`](crate::serve::batcher::Batcher)
//! (one job per distinct class choice), so scores are bit for bit those of `/v1/predict` and
//! `cras predict`, and decisions use the same thresholds (the request's, else the saved set,
//! else the model's). Outputs and their encoding: [`super::outputs`]. The answer's `parameters`
//! hold `model_generation`, `thresholds_source` and `thresholds_version` (also sent as the
//! headers of [`crate::serve::provenance`]). An answer never mixes model generations: a reload
//! between two of a request's jobs answers 503 (retry).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use image::RgbImage;
use serde_json::{json, Map, Value};

use super::outputs::{self, Output, OUTPUTS};
use super::tensor::{parse_request, InferRequest, InputTensor};
use super::{CLASS_INDEX, CLASS_NAME, IMAGE_FILES, IMAGE_TENSOR, VERSION};
use crate::infer::Prediction;
use crate::serve::api_error::ApiError;
use crate::serve::batcher::Inputs;
use crate::serve::model_slot::LoadedModel;
use crate::serve::predict::{decode_image, MAX_IMAGES_PER_REQUEST};
use crate::serve::thresholds::InForce;
use crate::serve::{provenance, AppState};

/// The images of a request, before scoring.
enum Images {
    /// Encoded files.
    Files(Vec<Bytes>),
    /// Preprocessed values `[B, 3, S, S]`.
    Tensor(Vec<f32>),
}

/// The handler.
pub async fn infer(
    State(state): State<Arc<AppState>>,
    UrlPath(path): UrlPath<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    super::check_model(&state, &path)?;
    let (request, tensors) = parse_request(&headers, body)?;
    let model = state.slot.current();
    let (images, classes) = plan_inputs(&model, &tensors)?;
    drop(tensors);
    let wanted = requested_outputs(&request)?;
    let in_force = InForce {
        threshold: threshold_parameter(&request.parameters)?,
        saved: state.thresholds.current(),
    };
    let (model, predictions) = score(&state, images, &classes, &in_force).await?;
    let tag = in_force.tag();
    let head = json!({
        "model_name": state.model_name,
        "model_version": VERSION,
        "id": request.id.clone().unwrap_or_default(),
        "parameters": {
            "model_generation": model.generation,
            "thresholds_source": tag.source,
            "thresholds_version": tag.version,
        },
    });
    let generation = model.generation;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let recent = recent_entries(&model, &predictions, &in_force, request.id.as_deref(), ms);
    state.recent.record(&recent);
    let built = tokio::task::spawn_blocking(move || {
        let b = predictions.len();
        let m = model.predictor.map_size();
        let outputs: Vec<Output> = wanted
            .into_iter()
            .map(|(name, binary)| Output {
                name,
                shape: if name == "anomaly_map" {
                    vec![b, m, m]
                } else {
                    vec![b]
                },
                values: outputs::values(name, &model, &predictions, &in_force),
                binary,
            })
            .collect();
        outputs::answer(head, outputs)
    })
    .await
    .map_err(|e| ApiError::internal(format!("answer failed unexpectedly: {e}")))?;
    Ok(provenance::with_headers(built, generation, &tag))
}

/// Checks the inputs against `model`: the images and each image's class (None: global match).
fn plan_inputs(
    model: &LoadedModel,
    tensors: &[InputTensor],
) -> Result<(Images, Vec<Option<usize>>), ApiError> {
    let known = [IMAGE_FILES, IMAGE_TENSOR, CLASS_NAME, CLASS_INDEX];
    let mut by_name: BTreeMap<&str, &InputTensor> = BTreeMap::new();
    for t in tensors {
        if !known.contains(&t.name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown input '{}'; this model takes {IMAGE_FILES} (BYTES) or {IMAGE_TENSOR} \
                 (FP32), optionally with {CLASS_NAME} (BYTES) or {CLASS_INDEX} (INT64)",
                t.name
            )));
        }
        if by_name.insert(t.name.as_str(), t).is_some() {
            return Err(ApiError::bad_request(format!(
                "input '{}' is given twice",
                t.name
            )));
        }
    }
    let images = match (by_name.get(IMAGE_FILES), by_name.get(IMAGE_TENSOR)) {
        (Some(files), None) => {
            batch_of(files, &[])?;
            Images::Files(files.byte_elements(true)?)
        }
        (None, Some(tensor)) => Images::Tensor(tensor_values(model, tensor)?),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "send either {IMAGE_FILES} or {IMAGE_TENSOR}, not both"
            )))
        }
        (None, None) => {
            return Err(ApiError::bad_request(format!(
                "missing input: send {IMAGE_FILES} (BYTES: encoded image files) or \
                 {IMAGE_TENSOR} (FP32 [B, 3, S, S]: preprocessed images)"
            )))
        }
    };
    let b = match &images {
        Images::Files(f) => f.len(),
        Images::Tensor(v) => v.len() / (3 * model.predictor.input_size().pow(2)),
    };
    let classes = match (by_name.get(CLASS_NAME), by_name.get(CLASS_INDEX)) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "send either {CLASS_NAME} or {CLASS_INDEX}, not both"
            )))
        }
        (Some(t), None) => class_names(model, t, b)?,
        (None, Some(t)) => class_indices(model, t, b)?,
        (None, None) => vec![None; b],
    };
    Ok((images, classes))
}

/// The batch size of a `[B]` or `[B, 1]` input (1 to [`MAX_IMAGES_PER_REQUEST`]), checked
/// against `expected` when given.
fn batch_of(t: &InputTensor, expected: &[usize]) -> Result<usize, ApiError> {
    let b = match t.shape.as_slice() {
        [b] | [b, 1] => *b,
        other => {
            return Err(ApiError::bad_request(format!(
                "input '{}' has shape {other:?}; it takes [B] or [B, 1]",
                t.name
            )))
        }
    };
    if b == 0 || b > MAX_IMAGES_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "input '{}' holds {b} images; send 1 to {MAX_IMAGES_PER_REQUEST} per request",
            t.name
        )));
    }
    if let Some(&want) = expected.first() {
        if b != want {
            return Err(ApiError::bad_request(format!(
                "input '{}' has batch {b} but the images' batch is {want}",
                t.name
            )));
        }
    }
    Ok(b)
}

/// The values of the FP32 image tensor, checked to be `[B, 3, S, S]`.
fn tensor_values(model: &LoadedModel, t: &InputTensor) -> Result<Vec<f32>, ApiError> {
    let predictor = &model.predictor;
    if predictor.meta.preprocess.tiling.is_some() {
        return Err(ApiError::bad_request(format!(
            "this model is tiled: its network inputs are tiles, not images; send {IMAGE_FILES}"
        )));
    }
    let s = predictor.input_size();
    match t.shape.as_slice() {
        [b, 3, h, w] if *h == s && *w == s && *b >= 1 && *b <= MAX_IMAGES_PER_REQUEST => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "input '{IMAGE_TENSOR}' has shape {other:?}; this model takes [B, 3, {s}, {s}] \
                 with B from 1 to {MAX_IMAGES_PER_REQUEST}"
            )))
        }
    }
    t.f32_values()
}

fn class_names(
    model: &LoadedModel,
    t: &InputTensor,
    b: usize,
) -> Result<Vec<Option<usize>>, ApiError> {
    batch_of(t, &[b])?;
    let meta = &model.predictor.meta;
    t.byte_elements(false)?
        .iter()
        .map(|raw| {
            let name = String::from_utf8_lossy(raw);
            if name.is_empty() {
                return Ok(None);
            }
            meta.class_index(&name).map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "unknown class '{name}' in {CLASS_NAME}; the model knows: {}",
                    meta.classes.join(", ")
                ))
            })
        })
        .collect()
}

fn class_indices(
    model: &LoadedModel,
    t: &InputTensor,
    b: usize,
) -> Result<Vec<Option<usize>>, ApiError> {
    batch_of(t, &[b])?;
    let n = model.predictor.meta.classes.len();
    t.i64_values()?
        .into_iter()
        .map(|k| match usize::try_from(k) {
            Err(_) => Ok(None),
            Ok(k) if k < n => Ok(Some(k)),
            Ok(k) => Err(ApiError::bad_request(format!(
                "{CLASS_INDEX} {k} is not a class index; the model has {n} classes (0 to {})",
                n - 1
            ))),
        })
        .collect()
}

/// The outputs asked for, each with whether it goes as binary data.
fn requested_outputs(request: &InferRequest) -> Result<Vec<(&'static str, bool)>, ApiError> {
    let binary_all = bool_parameter(&request.parameters, "binary_data_output", "request")?;
    let Some(asked) = &request.outputs else {
        return Ok(OUTPUTS.iter().map(|(n, _, _)| (*n, binary_all)).collect());
    };
    asked
        .iter()
        .map(|o| {
            let Some((name, _, _)) = OUTPUTS.iter().find(|(n, _, _)| *n == o.name) else {
                let names: Vec<&str> = OUTPUTS.iter().map(|(n, _, _)| *n).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown output '{}'; this model gives: {}",
                    o.name,
                    names.join(", ")
                )));
            };
            if o.parameters.contains_key("classification") {
                return Err(ApiError::bad_request(format!(
                    "output '{}': the classification extension is not supported",
                    o.name
                )));
            }
            let place = format!("output '{}'", o.name);
            let binary = bool_parameter(&o.parameters, "binary_data", &place)?;
            Ok((*name, binary || binary_all))
        })
        .collect()
}

fn bool_parameter(parameters: &Map<String, Value>, key: &str, at: &str) -> Result<bool, ApiError> {
    match parameters.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ApiError::bad_request(format!(
            "{at} parameter {key} is {other}; it must be true or false"
        ))),
    }
}

fn threshold_parameter(parameters: &Map<String, Value>) -> Result<Option<f32>, ApiError> {
    match parameters.get("threshold") {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(t) => crate::serve::thresholds::threshold_from(t)
                .map(Some)
                .map_err(|e| ApiError::bad_request(format!("request parameter threshold {e}"))),
            None => Err(ApiError::bad_request(format!(
                "request parameter threshold {v} is not a finite number"
            ))),
        },
    }
}

/// Decodes (files) and scores the images, one batcher job per distinct class choice; the
/// predictions come back in input order, with the model that scored them.
async fn score(
    state: &AppState,
    images: Images,
    classes: &[Option<usize>],
    in_force: &InForce,
) -> Result<(Arc<LoadedModel>, Vec<Prediction>), ApiError> {
    let mut groups: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
    for (i, c) in classes.iter().enumerate() {
        groups.entry(*c).or_default().push(i);
    }
    let mut reservation = None;
    let mut decoded: Vec<Option<RgbImage>> = Vec::new();
    let tensor = match images {
        Images::Files(files) => {
            let pixels: u64 = files.iter().map(|f| header_pixels(f)).sum();
            reservation = Some(state.budget.reserve(pixels)?);
            decoded = decode_all(files, state.limits.max_pixels).await?;
            None
        }
        Images::Tensor(values) => Some(values),
    };
    let names = state.slot.current().predictor.meta.classes.clone();
    let mut pending = Vec::with_capacity(groups.len());
    for (class, members) in &groups {
        let inputs = match &tensor {
            None => Inputs::Images(members.iter().filter_map(|&i| decoded[i].take()).collect()),
            Some(values) => {
                let per = values.len() / classes.len();
                let data = members
                    .iter()
                    .flat_map(|&i| values[i * per..(i + 1) * per].iter().copied())
                    .collect();
                Inputs::Tensor {
                    data,
                    count: members.len(),
                }
            }
        };
        let class = class.and_then(|k| names.get(k).cloned());
        let answer = state
            .batcher
            .submit_inputs(inputs, class, in_force.clone())?;
        pending.push((members, answer));
    }
    drop(tensor);
    let deadline = tokio::time::Instant::now() + state.limits.timeout;
    let mut model: Option<Arc<LoadedModel>> = None;
    let mut out: Vec<Option<Prediction>> = (0..classes.len()).map(|_| None).collect();
    for (members, answer) in pending {
        let scored = match tokio::time::timeout_at(deadline, answer).await {
            Err(_) => return Err(ApiError::timeout(state.limits.timeout.as_millis() as u64)),
            Ok(Err(_)) => {
                return Err(ApiError::internal(
                    "the inference worker dropped the request",
                ))
            }
            Ok(Ok(result)) => result?,
        };
        if model
            .as_ref()
            .is_some_and(|m| m.generation != scored.model.generation)
        {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model was reloaded while this request was scored; retry",
            );
            e.retry_after_s = Some(1);
            return Err(e);
        }
        model = Some(scored.model.clone());
        for (&i, p) in members.iter().zip(scored.predictions) {
            out[i] = Some(p);
        }
    }
    drop(reservation);
    let model = model.ok_or_else(|| ApiError::internal("no image was scored"))?;
    let predictions = out
        .into_iter()
        .collect::<Option<Vec<Prediction>>>()
        .ok_or_else(|| ApiError::internal("an image was not scored"))?;
    Ok((model, predictions))
}

/// Pixels of an encoded image from its header (0 when unreadable: decoding will say why).
fn header_pixels(bytes: &[u8]) -> u64 {
    crate::data::decode::open_bytes(bytes, "")
        .and_then(|o| o.header())
        .map_or(0, |h| h.pixels())
}

/// Decodes the files off the async threads, under the pixel limit.
async fn decode_all(files: Vec<Bytes>, max_pixels: u64) -> Result<Vec<Option<RgbImage>>, ApiError> {
    tokio::task::spawn_blocking(move || {
        files
            .iter()
            .enumerate()
            .map(|(i, f)| decode_image(f, &format!("{IMAGE_FILES}[{i}]"), max_pixels).map(Some))
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("decoding failed unexpectedly: {e}")))?
}

/// The answered predictions in the form the recent ring reads (`/v1/predict`'s).
fn recent_entries(
    model: &LoadedModel,
    predictions: &[Prediction],
    in_force: &InForce,
    id: Option<&str>,
    ms: f64,
) -> Value {
    let meta = &model.predictor.meta;
    let items: Vec<Value> = predictions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let threshold = in_force.for_class(meta, p.class);
            json!({
                "name": format!("{}[{i}]", id.filter(|s| !s.is_empty()).unwrap_or("v2")),
                "class": meta.classes.get(p.class).cloned().unwrap_or_default(),
                "score": p.score,
                "threshold": threshold,
                "decision": crate::infer::decide(p.score, threshold).as_str(),
                "ms": ms,
            })
        })
        .collect();
    json!({"predictions": items})
}
