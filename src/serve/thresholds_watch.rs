//! Keeps the saved threshold set in force in step with its file, so that replicas sharing one
//! file (a mounted volume or a Kubernetes ConfigMap) decide alike.
//!
//! [`watch`] polls [`ThresholdStore::poll`](super::thresholds::ThresholdStore::poll) every
//! `every` on a blocking thread: a changed file's set is put in force (logged, counted in
//! `cras_thresholds_reloads_total`); a damaged or unreadable one keeps the set in force (logged,
//! counted in `cras_thresholds_reload_failures_total`). It runs until the server stops.

use std::sync::Arc;
use std::time::Duration;

use super::thresholds::PollOutcome;
use super::AppState;

/// Polls the threshold file of `state` every `every` until the task is dropped.
pub async fn watch(state: Arc<AppState>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once; the file was read at start.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let polled = state.clone();
        let Ok(outcome) = tokio::task::spawn_blocking(move || polled.thresholds.poll()).await
        else {
            continue;
        };
        report(&state, outcome);
    }
}

/// Logs and counts one poll's outcome.
fn report(state: &AppState, outcome: PollOutcome) {
    let path = state.thresholds.path().display();
    match outcome {
        PollOutcome::Unchanged => {}
        PollOutcome::Reloaded(tag) => {
            state.metrics.observe_thresholds_reload(true);
            tracing::info!(
                "threshold file {path} changed: decisions now use the {} thresholds (version {})",
                tag.source,
                tag.version
            );
        }
        PollOutcome::Failed(e) => {
            state.metrics.observe_thresholds_reload(false);
            tracing::error!("threshold file not reloaded, keeping the set in force: {e}");
        }
    }
}
