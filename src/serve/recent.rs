//! [`Recent`]: the last predictions the service made, for the page's line view.
//!
//! A bounded ring buffer ([`CAPACITY`] entries, oldest dropped first) fed by `POST /v1/predict`
//! with one [`Entry`] per scored image, whichever client sent it. An entry holds the part
//! name, matched class, score, threshold, decision and time, never the image. Ids increase by
//! one per image from 1 and are never reused, so a poller asks `GET /v1/recent?since=<last id>`
//! for what is new.
//!
//! `GET /v1/recent` answers `{"capacity", "total", "now_unix_ms", "items": [Entry, ...] (oldest
//! first, at most `limit`, newest kept), "per_class": [{class, count, defects, defect_rate}],
//! "throughput": {window_s, images, per_s}}`. The per-class figures cover every entry in the
//! buffer; the throughput counts the images of the last [`WINDOW_S`] seconds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

use super::api_error::ApiError;
use super::AppState;

/// Most entries kept.
pub const CAPACITY: usize = 200;
/// Seconds over which the throughput is counted.
pub const WINDOW_S: u64 = 60;

/// One scored image.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Entry {
    /// 1 for the first image the server scored, +1 per image.
    pub id: u64,
    /// When the answer was made (milliseconds since the Unix epoch).
    pub unix_ms: u64,
    /// Part name as in the prediction (`body` for a raw body).
    pub name: String,
    /// Matched (or stated) class.
    pub class: String,
    /// Image anomaly score (null when not finite).
    pub score: Option<f64>,
    /// Threshold applied (null without one).
    pub threshold: Option<f64>,
    /// `defect`, `ok` or `no threshold`.
    pub decision: String,
}

struct Inner {
    items: VecDeque<Entry>,
    next_id: u64,
}

/// The ring buffer of recent predictions.
pub struct Recent {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Default for Recent {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Recent {
    /// An empty buffer keeping at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                next_id: 1,
            }),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere while holding it; the data is intact.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the `predictions` of a `/v1/predict` answer (missing fields become empty/null).
    pub fn record(&self, answer: &Value) {
        let Some(predictions) = answer["predictions"].as_array() else {
            return;
        };
        let unix_ms = now_ms();
        let mut inner = self.lock();
        for p in predictions {
            let id = inner.next_id;
            inner.next_id += 1;
            let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            inner.items.push_back(Entry {
                id,
                unix_ms,
                name: text("name"),
                class: text("class"),
                score: p["score"].as_f64(),
                threshold: p["threshold"].as_f64(),
                decision: text("decision"),
            });
            while inner.items.len() > self.capacity {
                inner.items.pop_front();
            }
        }
    }

    /// The answer of `GET /v1/recent` (see the module documentation).
    pub fn snapshot(&self, since: u64, limit: usize) -> Value {
        let now = now_ms();
        let inner = self.lock();
        let fresh: Vec<&Entry> = inner.items.iter().filter(|e| e.id > since).collect();
        let skip = fresh.len().saturating_sub(limit);
        let items: Vec<&Entry> = fresh.into_iter().skip(skip).collect();
        let mut per_class: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for e in &inner.items {
            let c = per_class.entry(e.class.as_str()).or_default();
            c.0 += 1;
            if e.decision == "defect" {
                c.1 += 1;
            }
        }
        let per_class: Vec<Value> = per_class
            .into_iter()
            .map(|(class, (count, defects))| {
                json!({"class": class, "count": count, "defects": defects,
                       "defect_rate": defects as f64 / count as f64})
            })
            .collect();
        let window_ms = WINDOW_S * 1000;
        let in_window = inner
            .items
            .iter()
            .filter(|e| now.saturating_sub(e.unix_ms) <= window_ms)
            .count();
        json!({
            "capacity": self.capacity,
            "total": inner.next_id - 1,
            "now_unix_ms": now,
            "items": items,
            "per_class": per_class,
            "throughput": {"window_s": WINDOW_S, "images": in_window,
                           "per_s": in_window as f64 / WINDOW_S as f64},
        })
    }
}

/// The query of `GET /v1/recent`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecentQuery {
    /// Only entries with a larger id.
    pub since: Option<u64>,
    /// Most entries returned (the newest; default and maximum: the capacity). Any u64 is
    /// taken, as the OpenAPI document says.
    pub limit: Option<u64>,
}

/// `GET /v1/recent`.
pub async fn recent(
    State(state): State<Arc<AppState>>,
    query: Result<Query<RecentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q
        .limit
        .map_or(CAPACITY, |l| l.min(CAPACITY as u64) as usize);
    Ok(Json(state.recent.snapshot(q.since.unwrap_or(0), limit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: usize, decision: &str) -> Value {
        let p: Vec<Value> = (0..n)
            .map(|i| {
                json!({"name": format!("p{i}"), "class": "ring", "score": 0.5,
                            "threshold": 0.4, "decision": decision})
            })
            .collect();
        json!({ "predictions": p })
    }

    #[test]
    fn keeps_the_newest_and_counts_everything() {
        let r = Recent::new(3);
        r.record(&answer(2, "ok"));
        r.record(&answer(2, "defect"));
        let s = r.snapshot(0, 10);
        assert_eq!(s["total"], 4);
        let ids: Vec<u64> = s["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, vec![2, 3, 4]);
        assert_eq!(s["per_class"][0]["count"], 3);
        assert_eq!(s["per_class"][0]["defects"], 2);
        assert_eq!(s["throughput"]["images"], 3);
        let newer = r.snapshot(3, 10);
        assert_eq!(newer["items"].as_array().unwrap().len(), 1);
        let limited = r.snapshot(0, 1);
        assert_eq!(limited["items"][0]["id"], 4);
    }

    #[test]
    fn ignores_answers_without_predictions() {
        let r = Recent::new(3);
        r.record(&json!({"error": "x"}));
        assert_eq!(r.snapshot(0, 10)["total"], 0);
    }
}
