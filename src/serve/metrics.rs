//! [`Metrics`]: request counters and histograms rendered as Prometheus text (exposition format
//! 0.0.4), written by hand.
//!
//! Series: `cras_requests_total{path,status}`, `cras_request_duration_seconds` (histogram, all
//! requests), `cras_batch_size` (histogram of images per worker batch), `cras_queue_depth`
//! (gauge, jobs waiting), `cras_model_generation` (gauge, 1 + successful reloads),
//! `cras_model_reload_failures_total`, `cras_thresholds_reloads_total` (the watched threshold
//! file changed and its set is in force) and `cras_thresholds_reload_failures_total` (it changed
//! but was damaged or unreadable: the set in force stayed).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Upper bounds (images) of the batch size histogram buckets.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// A cumulative histogram with fixed buckets.
#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (bound, c) in self.bounds.iter().zip(&mut self.counts) {
            if v <= *bound {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: Histogram,
    batch: Histogram,
    reload_failures: u64,
    thresholds_reloads: u64,
    thresholds_failures: u64,
}

/// The server's counters; cheap to update from any thread.
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                latency: Histogram::new(&LATENCY_BUCKETS),
                batch: Histogram::new(&BATCH_BUCKETS),
                reload_failures: 0,
                thresholds_reloads: 0,
                thresholds_failures: 0,
            }),
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one answered request on route `path` (a route pattern, not the raw URI).
    pub fn observe_request(&self, path: &str, status: u16, seconds: f64) {
        let mut m = self.lock();
        *m.requests.entry((path.to_string(), status)).or_insert(0) += 1;
        m.latency.observe(seconds);
    }

    /// Records one worker batch of `images` images.
    pub fn observe_batch(&self, images: usize) {
        self.lock().batch.observe(images as f64);
    }

    /// Counts a failed model reload.
    pub fn observe_reload_failure(&self) {
        self.lock().reload_failures += 1;
    }

    /// Counts one change of the watched threshold file: put in force (`ok`) or refused.
    pub fn observe_thresholds_reload(&self, ok: bool) {
        let mut m = self.lock();
        if ok {
            m.thresholds_reloads += 1;
        } else {
            m.thresholds_failures += 1;
        }
    }

    /// Requests answered so far on `path` with `status`.
    pub fn requests(&self, path: &str, status: u16) -> u64 {
        self.lock()
            .requests
            .get(&(path.to_string(), status))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text, with the live `queue_depth` and `generation` gauges.
    pub fn render(&self, queue_depth: usize, generation: u64) -> String {
        let m = self.lock();
        let mut out = String::new();
        out.push_str("# HELP cras_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE cras_requests_total counter\n");
        for ((path, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "cras_requests_total{{path=\"{}\",status=\"{status}\"}} {n}",
                escape_label(path)
            );
        }
        m.latency.render(
            &mut out,
            "cras_request_duration_seconds",
            "Time from request to answer.",
        );
        m.batch.render(
            &mut out,
            "cras_batch_size",
            "Images scored per worker batch.",
        );
        let _ = writeln!(
            out,
            "# HELP cras_queue_depth Requests waiting for the worker.\n# TYPE cras_queue_depth gauge\ncras_queue_depth {queue_depth}"
        );
        let _ = writeln!(
            out,
            "# HELP cras_model_generation 1 for the model loaded at start, +1 per reload.\n# TYPE cras_model_generation gauge\ncras_model_generation {generation}"
        );
        let _ = writeln!(
            out,
            "# HELP cras_model_reload_failures_total Reloads that failed (the old model kept serving).\n# TYPE cras_model_reload_failures_total counter\ncras_model_reload_failures_total {}",
            m.reload_failures
        );
        let _ = writeln!(
            out,
            "# HELP cras_thresholds_reloads_total Changes of the threshold file put in force.\n# TYPE cras_thresholds_reloads_total counter\ncras_thresholds_reloads_total {}",
            m.thresholds_reloads
        );
        let _ = writeln!(
            out,
            "# HELP cras_thresholds_reload_failures_total Changes of the threshold file refused (damaged or unreadable; the set in force stayed).\n# TYPE cras_thresholds_reload_failures_total counter\ncras_thresholds_reload_failures_total {}",
            m.thresholds_failures
        );
        out
    }
}

/// Escapes a Prometheus label value.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counts_render() {
        let m = Metrics::default();
        m.observe_request("/v1/predict", 200, 0.003);
        m.observe_request("/v1/predict", 200, 0.2);
        m.observe_request("/v1/predict", 400, 20.0);
        m.observe_batch(3);
        let text = m.render(2, 1);
        assert!(text.contains("cras_requests_total{path=\"/v1/predict\",status=\"200\"} 2"));
        assert!(text.contains("cras_requests_total{path=\"/v1/predict\",status=\"400\"} 1"));
        // 0.003 s is in every bucket from 0.005 up; 0.2 s from 0.25 up; 20 s only in +Inf.
        assert!(text.contains("cras_request_duration_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("cras_request_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("cras_request_duration_seconds_bucket{le=\"0.25\"} 2"));
        assert!(text.contains("cras_request_duration_seconds_bucket{le=\"10\"} 2"));
        assert!(text.contains("cras_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("cras_batch_size_bucket{le=\"2\"} 0"));
        assert!(text.contains("cras_batch_size_bucket{le=\"4\"} 1"));
        assert!(text.contains("cras_queue_depth 2"));
        assert_eq!(m.requests("/v1/predict", 200), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
