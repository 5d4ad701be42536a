//! `POST /v1/predict`: reads one image (raw body with an `image/*` or
//! `application/octet-stream` content type) or several (`multipart/form-data`, one image per
//! part, 1 to [`MAX_IMAGES_PER_REQUEST`] parts, each named by its file name, else its field
//! name, else `part<i>` with `i` its position from 0), reserves their decoded pixels in the
//! server's in-flight budget ([`super::budget`]), decodes them off the async threads under the
//! pixel limit, queues them on the [`Batcher`](super::batcher::Batcher) and answers
//! `{"model_generation": n, "thresholds": {"source", "version"}, "predictions":
//! [PredictionRecord, ...]}` in request order (the record of `crate::infer::PredictionRecord`:
//! name, class, class_similarity, score, threshold, is_anomalous, decision, ms, map?), with the
//! same generation and set in the headers of [`super::provenance`].
//!
//! Query parameters: `class` (a class name of the model: skip the global match), `threshold`
//! (a finite number within the f32 range, [`super::thresholds::threshold_from`], overriding
//! every other threshold; without it a saved threshold set applies, see
//! [`super::thresholds`], else the model's stored threshold), `map=png` (add each image's anomaly map [S, S] as a
//! base64 grayscale PNG, 0..1 mapped to 0..255). Scores are those of `Predictor::predict_images`,
//! bit for bit the numbers `cras predict` prints; the decision is [`crate::infer::decide`]'s.
//! Every answered prediction is recorded in the recent ring ([`super::recent`]).

use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use image::RgbImage;
use serde_json::{json, Value};

use super::api_error::ApiError;
use super::batcher::Scored;
use super::thresholds::{threshold_from_text, InForce};
use super::AppState;
use crate::data::decode::open_bytes;
use crate::infer::PredictionRecord;
use crate::report::heatmap::gray_map_png;

/// Most images in one request.
pub const MAX_IMAGES_PER_REQUEST: usize = 256;

/// The query parameters of `/v1/predict`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictQuery {
    /// Class name stated by the caller.
    pub class: Option<String>,
    /// Decision threshold override, as text (checked here for a clear message).
    pub threshold: Option<String>,
    /// `png` to return anomaly maps.
    pub map: Option<String>,
}

/// The validated options of one request.
struct Options {
    class: Option<String>,
    threshold: Option<f32>,
    map: bool,
}

fn parse_options(q: PredictQuery, state: &AppState) -> Result<Options, ApiError> {
    let threshold = q
        .threshold
        .as_deref()
        .map(threshold_from_text)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("threshold {e}")))?;
    let map = match q.map.as_deref() {
        None => false,
        Some("png") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "map '{other}' is not supported; use map=png"
            )))
        }
    };
    if let Some(name) = &q.class {
        let model = state.slot.current();
        model.predictor.meta.class_index(name).map_err(|_| {
            ApiError::bad_request(format!(
                "unknown class '{name}'; the model knows: {}",
                model.predictor.meta.classes.join(", ")
            ))
        })?;
    }
    Ok(Options {
        class: q.class,
        threshold,
        map,
    })
}

/// The handler.
pub async fn predict(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PredictQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<axum::response::Response, ApiError> {
    let started = Instant::now();
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let options = parse_options(query, &state)?;
    let parts = read_parts(request).await?;
    let max_pixels = state.limits.max_pixels;
    // Reserve the decoded pixels of every part (from the headers) before decoding any; held
    // until the answer (see `super::budget`).
    let pixels: u64 = parts.iter().map(|(_, b)| header_pixels(b)).sum();
    let _reservation = state.budget.reserve(pixels)?;
    let images = tokio::task::spawn_blocking(move || {
        parts
            .into_iter()
            .map(|(name, bytes)| decode_image(&bytes, &name, max_pixels).map(|im| (name, im)))
            .collect::<Result<Vec<(String, RgbImage)>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("decoding failed unexpectedly: {e}")))??;
    let (names, images): (Vec<String>, Vec<RgbImage>) = images.into_iter().unzip();
    let in_force = InForce {
        threshold: options.threshold,
        saved: state.thresholds.current(),
    };
    let answer = state
        .batcher
        .submit(images, options.class.clone(), in_force.clone())?;
    let scored = match tokio::time::timeout(state.limits.timeout, answer).await {
        Err(_) => return Err(ApiError::timeout(state.limits.timeout.as_millis() as u64)),
        Ok(Err(_)) => {
            return Err(ApiError::internal(
                "the inference worker dropped the request",
            ))
        }
        Ok(Ok(result)) => result?,
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let map = options.map;
    let in_force_tag = in_force.tag();
    let body =
        tokio::task::spawn_blocking(move || answer_json(&scored, &names, &in_force, map, ms))
            .await
            .map_err(|e| ApiError::internal(format!("answer failed unexpectedly: {e}")))??;
    state.recent.record(&body);
    let generation = body["model_generation"].as_u64().unwrap_or_default();
    let response = axum::response::IntoResponse::into_response(Json(body));
    Ok(super::provenance::with_headers(
        response,
        generation,
        &in_force_tag,
    ))
}

/// The images of the request as (name, encoded bytes).
async fn read_parts(request: Request) -> Result<Vec<(String, axum::body::Bytes)>, ApiError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let mut parts = Vec::new();
        while let Some(field) = multipart.next_field().await.map_err(|e| {
            ApiError::new(
                e.status(),
                format!("reading the multipart body: {}", e.body_text()),
            )
        })? {
            // An empty or absent name is not refused: the part is named by its position.
            let name = [field.file_name(), field.name()]
                .into_iter()
                .flatten()
                .find(|n| !n.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("part{}", parts.len()));
            let bytes = field.bytes().await.map_err(|e| {
                ApiError::new(
                    e.status(),
                    format!("reading part '{name}': {}", e.body_text()),
                )
            })?;
            parts.push((name, bytes));
            if parts.len() > MAX_IMAGES_PER_REQUEST {
                return Err(ApiError::bad_request(format!(
                    "more than {MAX_IMAGES_PER_REQUEST} images in one request; split it"
                )));
            }
        }
        if parts.is_empty() {
            return Err(ApiError::bad_request(
                "the multipart body holds no image part",
            ));
        }
        Ok(parts)
    } else if content_type.starts_with("image/")
        || content_type.starts_with("application/octet-stream")
    {
        let bytes = axum::body::Bytes::from_request(request, &())
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        Ok(vec![("body".to_string(), bytes)])
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type '{content_type}' is not accepted; send one image as image/* (or \
                 application/octet-stream) or several as multipart/form-data"
            ),
        ))
    }
}

/// Pixels of an encoded image from its header (0 when unreadable: decoding will say why).
fn header_pixels(bytes: &[u8]) -> u64 {
    open_bytes(bytes, "")
        .and_then(|o| o.header())
        .map_or(0, |h| h.pixels())
}

/// Decodes one image, answering 413 above `max_pixels` and 400 when it cannot be decoded.
pub fn decode_image(bytes: &[u8], name: &str, max_pixels: u64) -> Result<RgbImage, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(format!("{name}: the image is empty")));
    }
    // Header only: refuse oversized images with 413 before any pixel is decoded.
    if let Ok(h) = open_bytes(bytes, name).and_then(|o| o.header()) {
        let (w, h, pixels) = (h.width, h.height, h.pixels());
        if pixels > max_pixels {
            return Err(ApiError::too_large(format!(
                "{name}: image is {w}x{h} = {pixels} pixels, above the server's limit of {max_pixels} pixels"
            )));
        }
    }
    crate::data::decode::decode_rgb_bytes_with_limit(bytes, name, max_pixels)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The JSON answer for the scored images.
fn answer_json(
    scored: &Scored,
    names: &[String],
    in_force: &InForce,
    map: bool,
    ms: f64,
) -> Result<Value, ApiError> {
    let predictor = &scored.model.predictor;
    let side = predictor.map_size() as u32;
    let mut predictions = Vec::with_capacity(names.len());
    for (p, name) in scored.predictions.iter().zip(names) {
        let threshold = in_force.for_class(&predictor.meta, p.class);
        let mut item = PredictionRecord::decided(&predictor.meta.classes, p, threshold, ms);
        item.name = Some(name.clone());
        if map {
            let gray = gray_map_png(&predictor.anomaly_map(p), side, side, 0.0, 1.0);
            let mut png = Vec::new();
            gray.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| ApiError::internal(format!("encoding the anomaly map: {e}")))?;
            item.map = Some(base64::engine::general_purpose::STANDARD.encode(png));
        }
        predictions.push(item);
    }
    if predictions.len() != names.len() {
        return Err(ApiError::internal(format!(
            "{} predictions for {} images",
            predictions.len(),
            names.len()
        )));
    }
    Ok(json!({
        "model_generation": scored.model.generation,
        "thresholds": in_force.tag().json(),
        "predictions": predictions,
    }))
}
