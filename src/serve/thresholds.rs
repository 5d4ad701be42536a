//! Saved threshold sets: decision thresholds chosen by an operator, kept apart from the model.
//!
//! A [`ThresholdSet`] is `{"per_class": {"<class>": t, ...}, "global": t}` (both optional, at
//! least one threshold). Every threshold, here and in a request (`/v1/predict?threshold`, the
//! `/v2` parameter), is a finite number within the f32 range, ±[`LIMIT`] ([`threshold_from`]):
//! a larger one is refused with 400, never rounded to infinity or to `f32::MAX`.
//!
//! The saved set lives in ONE file: `--thresholds-file`, by default beside the model,
//! [`path_for`] (`model.safetensors` -> `model.thresholds.json`), written atomically (temp
//! file and rename) by `PUT /v1/thresholds`, removed by `DELETE /v1/thresholds` (both answer
//! 409 under `--thresholds-read-only`), read when the server starts (a damaged file stops the
//! start with a message naming it), re-read on SIGHUP with the model and polled about every
//! second ([`ThresholdStore::poll`], driven by [`super::thresholds_watch`]), so that every
//! replica pointing at one shared file decides alike; a damaged file then keeps the set in
//! force and is logged and counted. The model file is never written.
//!
//! Each saved set carries a version, [`version_of`] its file's bytes (the first 16 hex digits
//! of their SHA-256), the same on every replica reading the same file; [`ThresholdsTag`] names
//! the set deciding an answer (`{"source": "saved", "version": "<hex>"}` or
//! `{"source": "model", "version": "model"}`).
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
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::api_error::ApiError;
use super::AppState;
use crate::model::ModelMeta;
use crate::{Error, Result};

/// The largest threshold magnitude accepted: `f32::MAX` (thresholds are f32), the bound the
/// OpenAPI document states ([`super::openapi`]).
pub const LIMIT: f64 = f32::MAX as f64;

/// A threshold given as the number `v`: finite and within ±[`LIMIT`], else a message saying so
/// (to which the caller prefixes what the number is).
pub fn threshold_from(v: f64) -> std::result::Result<f32, String> {
    if v.is_finite() && v.abs() <= LIMIT {
        Ok(v as f32)
    } else {
        Err(format!(
            "{v} is not a finite number within ±{LIMIT:e} (the f32 range of thresholds)"
        ))
    }
}

/// A threshold given as text (a query parameter): [`threshold_from`] of the number it holds.
pub fn threshold_from_text(text: &str) -> std::result::Result<f32, String> {
    match text.trim().parse::<f64>() {
        Ok(v) => threshold_from(v),
        Err(_) => Err(format!("'{text}' is not a finite number")),
    }
}

/// Serde for the thresholds of a [`ThresholdSet`]: read as f64 and checked with
/// [`threshold_from`], so that a number beyond the f32 range is an error, not infinity.
mod checked {
    use std::collections::BTreeMap;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    pub fn global<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|v| {
                super::threshold_from(v)
                    .map_err(|e| D::Error::custom(format!("global threshold {e}")))
            })
            .transpose()
    }

    pub fn per_class<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f32>, D::Error> {
        BTreeMap::<String, f64>::deserialize(d)?
            .into_iter()
            .map(|(name, v)| {
                super::threshold_from(v)
                    .map(|t| (name.clone(), t))
                    .map_err(|e| D::Error::custom(format!("threshold of class '{name}': {e}")))
            })
            .collect()
    }
}

/// An operator's thresholds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSet {
    /// Threshold per class name.
    #[serde(default, deserialize_with = "checked::per_class")]
    pub per_class: BTreeMap<String, f32>,
    /// Threshold of every class not in `per_class`.
    #[serde(default, deserialize_with = "checked::global")]
    pub global: Option<f32>,
    /// When it was saved (seconds since the Unix epoch; set by the server).
    #[serde(default)]
    pub saved_unix: Option<u64>,
}

impl ThresholdSet {
    /// Checks the set: at least one threshold, every one finite and within ±[`LIMIT`].
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.per_class.is_empty() && self.global.is_none() {
            return Err("the set holds no threshold: give per_class, global or both".into());
        }
        if let Some(Err(e)) = self.global.map(|g| threshold_from(g.into())) {
            return Err(format!("global threshold {e}"));
        }
        for (name, t) in &self.per_class {
            threshold_from((*t).into()).map_err(|e| format!("threshold of class '{name}': {e}"))?;
        }
        Ok(())
    }
}

/// The saved-set file for the model at `model`: same folder and stem, `.thresholds.json`.
pub fn path_for(model: &Path) -> PathBuf {
    model.with_extension("thresholds.json")
}

/// The version of a saved set: the first 16 hex digits of the SHA-256 of its file's bytes.
pub fn version_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Largest threshold file read, in bytes (a set of a few hundred classes is a few KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A saved set with its [`version_of`] (derefs to the set).
#[derive(Clone, Debug, PartialEq)]
pub struct SavedSet {
    /// The thresholds.
    pub set: ThresholdSet,
    /// [`version_of`] the file's bytes.
    pub version: String,
}

impl std::ops::Deref for SavedSet {
    type Target = ThresholdSet;
    fn deref(&self) -> &ThresholdSet {
        &self.set
    }
}

/// Which threshold set decides: a saved one (with its version) or the model's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThresholdsTag {
    /// `saved` or `model`.
    pub source: &'static str,
    /// [`version_of`] the saved file, or `model`.
    pub version: String,
}

impl ThresholdsTag {
    /// The tag of `saved` (None: the model's thresholds).
    pub fn of(saved: Option<&SavedSet>) -> Self {
        match saved {
            Some(s) => Self {
                source: "saved",
                version: s.version.clone(),
            },
            None => Self {
                source: "model",
                version: "model".into(),
            },
        }
    }

    /// `{"source": ..., "version": ...}`.
    pub fn json(&self) -> Value {
        json!({"source": self.source, "version": self.version})
    }

    /// The `X-Cras-Thresholds` header value: `source=<source>; version=<version>`.
    pub fn header_value(&self) -> String {
        format!("source={}; version={}", self.source, self.version)
    }
}

/// What [`ThresholdStore::poll`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum PollOutcome {
    /// The file is as last seen.
    Unchanged,
    /// The file changed (or appeared, or went away) and the set it holds is now in force.
    Reloaded(ThresholdsTag),
    /// The file changed but cannot be used; the set in force stays.
    Failed(String),
}

/// The saved set in force and its file.
pub struct ThresholdStore {
    path: PathBuf,
    read_only: bool,
    current: RwLock<Option<Arc<SavedSet>>>,
    /// The version of the file's bytes last looked at (`None`: no file), so that a damaged
    /// file is reported once, not at every poll. Held while the file is written or read.
    seen: Mutex<Option<String>>,
}

/// The file's bytes, or None when there is no file.
fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::config(
            "thresholds file",
            path.display(),
            format!("larger than {MAX_FILE_BYTES} bytes; not a threshold set"),
        ));
    }
    Ok(Some(bytes))
}

/// Parses and checks a threshold file's bytes.
fn parse_set(path: &Path, bytes: &[u8]) -> Result<SavedSet> {
    let set: ThresholdSet = serde_json::from_slice(bytes).map_err(|e| {
        Error::config(
            "thresholds file",
            path.display(),
            format!("not a threshold set: {e}"),
        )
    })?;
    set.validate()
        .map_err(|e| Error::config("thresholds file", path.display(), e))?;
    Ok(SavedSet {
        set,
        version: version_of(bytes),
    })
}

fn read_set(path: &Path) -> Result<(Option<SavedSet>, Option<String>)> {
    match read_bytes(path)? {
        None => Ok((None, None)),
        Some(bytes) => {
            let saved = parse_set(path, &bytes)?;
            let version = saved.version.clone();
            Ok((Some(saved), Some(version)))
        }
    }
}

impl ThresholdStore {
    /// Reads the set saved at `path`, if any; a file that cannot be read or parsed is an error.
    pub fn open(path: PathBuf) -> Result<Self> {
        Self::open_with(path, false)
    }

    /// [`Self::open`]; with `read_only`, `PUT` and `DELETE /v1/thresholds` answer 409.
    pub fn open_with(path: PathBuf, read_only: bool) -> Result<Self> {
        let (set, seen) = read_set(&path)?;
        Ok(Self {
            path,
            read_only,
            current: RwLock::new(set.map(Arc::new)),
            seen: Mutex::new(seen),
        })
    }

    /// The set in force, if one is saved.
    pub fn current(&self) -> Option<Arc<SavedSet>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The tag of the set in force.
    pub fn tag(&self) -> ThresholdsTag {
        ThresholdsTag::of(self.current().as_deref())
    }

    /// The file the set is saved in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `PUT` and `DELETE` are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_current(&self, set: Option<Arc<SavedSet>>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = set;
    }

    /// Re-reads the file; on error the set in force stays.
    pub fn reload(&self) -> Result<()> {
        let mut seen = self.seen();
        let (set, version) = read_set(&self.path)?;
        self.set_current(set.map(Arc::new));
        *seen = version;
        Ok(())
    }

    /// Looks at the file once: when its bytes differ from those last seen, puts the set it
    /// holds in force (no file: the model's thresholds). A file that cannot be read or parsed
    /// keeps the set in force and is reported once per distinct content.
    pub fn poll(&self) -> PollOutcome {
        let mut seen = self.seen();
        let bytes = match read_bytes(&self.path) {
            Ok(b) => b,
            Err(e) => return PollOutcome::Failed(e.to_string()),
        };
        let version = bytes.as_deref().map(version_of);
        if version == *seen {
            return PollOutcome::Unchanged;
        }
        *seen = version;
        let saved = match bytes
            .as_deref()
            .map(|b| parse_set(&self.path, b))
            .transpose()
        {
            Ok(saved) => saved.map(Arc::new),
            Err(e) => return PollOutcome::Failed(e.to_string()),
        };
        let tag = ThresholdsTag::of(saved.as_deref());
        self.set_current(saved);
        PollOutcome::Reloaded(tag)
    }

    /// Writes `set` atomically ([`crate::fsio::write_atomic`]) and puts it in force.
    pub fn save(&self, set: ThresholdSet) -> Result<Arc<SavedSet>> {
        set.validate()
            .map_err(|e| Error::config("thresholds", "request", e))?;
        let text = serde_json::to_string_pretty(&set)
            .map_err(|e| Error::Other(format!("encoding the threshold set: {e}")))?;
        let mut seen = self.seen();
        crate::fsio::write_atomic(&self.path, text.as_bytes())?;
        let saved = Arc::new(SavedSet {
            set,
            version: version_of(text.as_bytes()),
        });
        *seen = Some(saved.version.clone());
        self.set_current(Some(saved.clone()));
        Ok(saved)
    }

    /// Removes the saved file (if any): decisions go back to the model's thresholds.
    pub fn clear(&self) -> Result<()> {
        let mut seen = self.seen();
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        *seen = None;
        self.set_current(None);
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
    pub saved: Option<Arc<SavedSet>>,
}

impl InForce {
    /// The threshold deciding class `k` of `meta`.
    pub fn for_class(&self, meta: &ModelMeta, k: usize) -> Option<f32> {
        self.threshold.or_else(|| {
            ThresholdStore::threshold_for(self.saved.as_deref().map(|s| &s.set), meta, k)
        })
    }

    /// The tag of the set (saved or the model's) this request is decided with.
    pub fn tag(&self) -> ThresholdsTag {
        ThresholdsTag::of(self.saved.as_deref())
    }
}

/// 409 for a write under `--thresholds-read-only`.
fn refuse_read_only(state: &AppState) -> std::result::Result<(), ApiError> {
    if state.thresholds.read_only() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "this server runs with --thresholds-read-only: the threshold set is read from {} \
                 (a shared file every replica watches); change that file instead",
                state.thresholds.path().display()
            ),
        ));
    }
    Ok(())
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
    refuse_read_only(&state)?;
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
    refuse_read_only(&state)?;
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
                "effective": ThresholdStore::threshold_for(saved.as_deref().map(|s| &s.set), meta, k),
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
        "saved": saved.as_deref().map(|s| &s.set),
        "version": ThresholdsTag::of(saved.as_deref()).version,
        "read_only": state.thresholds.read_only(),
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
        assert_eq!(again.current().map(|s| s.set.clone()), Some(set.clone()));
        let version = version_of(&std::fs::read(&path).unwrap());
        assert_eq!(store.tag().version, version);
        assert_eq!(again.tag(), ThresholdsTag::of(store.current().as_deref()));
        std::fs::write(&path, "{not json").unwrap();
        assert!(again.reload().is_err());
        assert_eq!(
            again.current().map(|s| s.set.clone()),
            Some(set.clone()),
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

    #[test]
    fn polling_follows_the_file_and_keeps_the_set_on_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.thresholds.json");
        let a = ThresholdStore::open(path.clone()).unwrap();
        let b = ThresholdStore::open_with(path.clone(), true).unwrap();
        assert!(b.read_only() && !a.read_only());
        assert_eq!(b.poll(), PollOutcome::Unchanged);
        let saved = a
            .save(ThresholdSet {
                global: Some(0.5),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(a.poll(), PollOutcome::Unchanged, "its own write is seen");
        assert_eq!(b.poll(), PollOutcome::Reloaded(a.tag()));
        assert_eq!(b.tag().source, "saved");
        assert_eq!(b.tag().version, saved.version);
        assert_eq!(b.poll(), PollOutcome::Unchanged);
        std::fs::write(&path, "{\"global\": \"high\"}").unwrap();
        match b.poll() {
            PollOutcome::Failed(e) => assert!(e.contains("thresholds file"), "{e}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(
            b.tag().version,
            saved.version,
            "a damaged file keeps the set"
        );
        assert_eq!(b.poll(), PollOutcome::Unchanged, "reported once");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(b.poll(), PollOutcome::Reloaded(ThresholdsTag::of(None)));
        assert_eq!(b.tag().version, "model");
    }
}
