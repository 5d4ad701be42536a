//! Saved threshold sets: decision thresholds chosen by an operator, kept apart from the model.
//!
//! A [`ThresholdSet`] is `{"per_class": {"<class>": t, ...}, "global": t}` (both optional, at
//! least one threshold, every value finite). It lives in ONE file beside the model,
//! [`path_for`] (`model.safetensors` -> `model.thresholds.json`), written atomically (temp
//! file + rename) by `PUT /v1/thresholds`, removed by `DELETE /v1/thresholds`, read when the
//! server starts (a damaged file stops the start with a message naming it) and re-read on
//! SIGHUP with the model (a damaged file then keeps the set in force and is logged). The
//! model file is never written.
//!
//! Decisions of `POST /v1/predict` use, for class `k` named `c`: the request's `?threshold`,
//! else the saved `per_class[c]`, else the saved `global`, else the model's stored threshold
//! ([`ThresholdStore::threshold_for`]). Saved names the served model does not know are kept in
//! the file and ignored (listed as `unknown_classes`).
//!
//! `GET /v1/thresholds` answers `{"active": "saved"|"model"|"none", "file", "saved": set|null,
//! "method", "global": {model, saved, effective}, "classes": [{name, model, saved, effective,
//! holdout_scores}], "unknown_classes"}`: the model's stored thresholds and the held-out
//! normal scores they came from, what is saved, and what decisions use. All three routes sit
//! behind the bearer token when one is set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::api_error::ApiError;
use super::AppState;
use crate::model::ModelMeta;
use crate::{Error, Result};

/// An operator's thresholds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSet {
    /// Threshold per class name.
    #[serde(default)]
    pub per_class: BTreeMap<String, f32>,
    /// Threshold of every class not in `per_class`.
    #[serde(default)]
    pub global: Option<f32>,
    /// When it was saved (seconds since the Unix epoch; set by the server).
    #[serde(default)]
    pub saved_unix: Option<u64>,
}

impl ThresholdSet {
    /// Checks the set: at least one threshold, every one finite.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.per_class.is_empty() && self.global.is_none() {
            return Err("the set holds no threshold: give per_class, global or both".into());
        }
        if let Some(g) = self.global.filter(|g| !g.is_finite()) {
            return Err(format!("global threshold {g} is not a finite number"));
        }
        for (name, t) in &self.per_class {
            if !t.is_finite() {
                return Err(format!(
                    "threshold {t} of class '{name}' is not a finite number"
                ));
            }
        }
        Ok(())
    }
}

/// The saved-set file for the model at `model`: same folder and stem, `.thresholds.json`.
pub fn path_for(model: &Path) -> PathBuf {
    model.with_extension("thresholds.json")
}

/// The saved set in force and its file.
pub struct ThresholdStore {
    path: PathBuf,
    current: RwLock<Option<Arc<ThresholdSet>>>,
}

fn read_set(path: &Path) -> Result<Option<ThresholdSet>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let set: ThresholdSet = serde_json::from_str(&text).map_err(|e| {
        Error::config(
            "thresholds file",
            path.display(),
            format!("not a threshold set: {e}"),
        )
    })?;
    set.validate()
        .map_err(|e| Error::config("thresholds file", path.display(), e))?;
    Ok(Some(set))
}

impl ThresholdStore {
    /// Reads the set saved at `path`, if any; a file that cannot be read or parsed is an error.
    pub fn open(path: PathBuf) -> Result<Self> {
        let set = read_set(&path)?;
        Ok(Self {
            path,
            current: RwLock::new(set.map(Arc::new)),
        })
    }

    /// The set in force, if one is saved.
    pub fn current(&self) -> Option<Arc<ThresholdSet>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The file the set is saved in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file; on error the set in force stays.
    pub fn reload(&self) -> Result<()> {
        let set = read_set(&self.path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = set.map(Arc::new);
        Ok(())
    }

    /// Writes `set` atomically and puts it in force.
    pub fn save(&self, set: ThresholdSet) -> Result<Arc<ThresholdSet>> {
        set.validate()
            .map_err(|e| Error::config("thresholds", "request", e))?;
        let text = serde_json::to_string_pretty(&set)
            .map_err(|e| Error::Other(format!("encoding the threshold set: {e}")))?;
        crate::fsio::write_atomic(&self.path, text.as_bytes())?;
        let set = Arc::new(set);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(set.clone());
        Ok(set)
    }

    /// Removes the saved file (if any): decisions go back to the model's thresholds.
    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    /// The threshold deciding class `k` of `meta` without a request override (see the module
    /// documentation for the order).
    pub fn threshold_for(set: Option<&ThresholdSet>, meta: &ModelMeta, k: usize) -> Option<f32> {
        let saved = set.and_then(|s| {
            meta.classes
                .get(k)
                .and_then(|name| s.per_class.get(name).copied())
                .or(s.global)
        });
        saved.or_else(|| meta.threshold(k))
    }
}

/// The thresholds deciding one request: its `threshold` override, else the saved set as it was
/// when the request arrived, else the model's (see the module documentation). The batcher reads
/// it too, so that a bf16 engine confirms at f32 exactly the images this request decides near
/// their threshold.
#[derive(Clone, Debug, Default)]
pub struct InForce {
    pub threshold: Option<f32>,
    pub saved: Option<Arc<ThresholdSet>>,
}

impl InForce {
    /// The threshold deciding class `k` of `meta`.
    pub fn for_class(&self, meta: &ModelMeta, k: usize) -> Option<f32> {
        self.threshold
            .or_else(|| ThresholdStore::threshold_for(self.saved.as_deref(), meta, k))
    }
}

/// `GET /v1/thresholds`.
pub async fn get_thresholds(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(describe(&state))
}

/// `PUT /v1/thresholds`: body `{"per_class": {...}, "global": t}`; answers like GET.
pub async fn put_thresholds(
    State(state): State<Arc<AppState>>,
    body: std::result::Result<Json<ThresholdSet>, JsonRejection>,
) -> std::result::Result<Json<Value>, ApiError> {
    let Json(mut set) = body.map_err(|e| {
        ApiError::bad_request(format!("the threshold set is not valid JSON of the form {{\"per_class\": {{\"<class>\": t}}, \"global\": t}}: {}", e.body_text()))
    })?;
    set.validate().map_err(ApiError::bad_request)?;
    let model = state.slot.current();
    let classes = &model.predictor.meta.classes;
    if let Some(name) = set.per_class.keys().find(|n| !classes.contains(n)) {
        return Err(ApiError::bad_request(format!(
            "unknown class '{name}'; the model knows: {}",
            classes.join(", ")
        )));
    }
    set.saved_unix = Some(crate::model::file::now_unix());
    let store = state.clone();
    tokio::task::spawn_blocking(move || store.thresholds.save(set))
        .await
        .map_err(|e| ApiError::internal(format!("saving failed unexpectedly: {e}")))?
        .map_err(|e| ApiError::internal(format!("saving the threshold set: {e}")))?;
    tracing::info!(
        "threshold set saved to {}",
        state.thresholds.path().display()
    );
    Ok(Json(describe(&state)))
}

/// `DELETE /v1/thresholds`: back to the model's thresholds; answers like GET.
pub async fn delete_thresholds(
    State(state): State<Arc<AppState>>,
) -> std::result::Result<Json<Value>, ApiError> {
    state
        .thresholds
        .clear()
        .map_err(|e| ApiError::internal(format!("removing the threshold set: {e}")))?;
    Ok(Json(describe(&state)))
}

/// The answer of the three routes.
pub fn describe(state: &AppState) -> Value {
    let model = state.slot.current();
    let meta = &model.predictor.meta;
    let saved = state.thresholds.current();
    let stored = meta.thresholds.as_ref();
    let classes: Vec<Value> = meta
        .classes
        .iter()
        .enumerate()
        .map(|(k, name)| {
            json!({
                "name": name,
                "model": meta.threshold(k),
                "saved": saved.as_ref().and_then(|s| s.per_class.get(name).copied().or(s.global)),
                "effective": ThresholdStore::threshold_for(saved.as_deref(), meta, k),
                "holdout_scores": stored.and_then(|t| t.holdout_scores.get(k)).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let unknown: Vec<&String> = saved
        .as_ref()
        .map(|s| {
            s.per_class
                .keys()
                .filter(|n| !meta.classes.contains(n))
                .collect()
        })
        .unwrap_or_default();
    let active = match (&saved, stored) {
        (Some(_), _) => "saved",
        (None, Some(_)) => "model",
        (None, None) => "none",
    };
    let model_global = stored.map(|t| t.global);
    let saved_global = saved.as_ref().and_then(|s| s.global);
    json!({
        "active": active,
        "file": state.thresholds.path().file_name().map(|f| f.to_string_lossy().to_string()),
        "saved": saved.as_deref(),
        "method": stored.map(|t| t.method.clone()),
        "global": {"model": model_global, "saved": saved_global, "effective": saved_global.or(model_global)},
        "classes": classes,
        "unknown_classes": unknown,
        "model_generation": model.generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_checked() {
        assert!(ThresholdSet::default().validate().is_err());
        let mut s = ThresholdSet {
            global: Some(0.5),
            ..Default::default()
        };
        assert!(s.validate().is_ok());
        s.per_class.insert("ring".into(), f32::NAN);
        assert!(s.validate().unwrap_err().contains("ring"));
    }

    #[test]
    fn saved_atomically_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("model.safetensors"));
        assert_eq!(path.file_name().unwrap(), "model.thresholds.json");
        let store = ThresholdStore::open(path.clone()).unwrap();
        assert!(store.current().is_none());
        let mut set = ThresholdSet::default();
        set.per_class.insert("ring".into(), 0.25);
        store.save(set.clone()).unwrap();
        let again = ThresholdStore::open(path.clone()).unwrap();
        assert_eq!(again.current().as_deref(), Some(&set));
        std::fs::write(&path, "{not json").unwrap();
        assert!(again.reload().is_err());
        assert_eq!(
            again.current().as_deref(),
            Some(&set),
            "a bad file keeps the set"
        );
        let err = ThresholdStore::open(path.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("thresholds file"), "{err}");
        again.clear().unwrap();
        assert!(again.current().is_none() && !path.exists());
    }
}
