//! [`Batcher`]: dynamic batching of prediction requests onto ONE worker thread.
//!
//! Input: jobs (one request's decoded RGB images plus an optional class name) pushed into a
//! bounded queue of `queue` jobs ([`Batcher::submit`], a full queue answers 503 at once).
//! The worker takes the first waiting job, then gathers more until `max_batch` images are
//! collected or `max_wait` has passed, and scores them with `Predictor::predict_images` in
//! chunks of at most `max_batch` images: one call for the images with no stated class (global
//! match) and one for those with a stated class. Output per job, through its oneshot channel:
//! the model snapshot used and one [`Prediction`] per image, in order. Scores do not depend on
//! what else shares the batch (eval-mode network, per-image class choice). A job whose
//! requester gave up (timeout, closed connection) is dropped unscored. A panic while scoring is
//! caught and answered as a 500 so the worker keeps serving.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use tokio::sync::oneshot;

use super::api_error::ApiError;
use super::metrics::Metrics;
use super::model_slot::{LoadedModel, ModelSlot};
use super::thresholds::InForce;
use crate::infer::{ClassChoice, Prediction};

/// Batching limits.
#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Most images scored in one `predict_images` call.
    pub max_batch: usize,
    /// Longest time the first job of a batch waits for company.
    pub max_wait: Duration,
    /// Most jobs waiting in the queue.
    pub queue: usize,
}

/// What the worker answers for one job.
pub struct Scored {
    /// The model that scored the job (class names, thresholds and map geometry come from it).
    pub model: Arc<LoadedModel>,
    /// One prediction per image, in the job's order.
    pub predictions: Vec<Prediction>,
}

/// The answer to one job.
pub type JobResult = Result<Scored, ApiError>;

struct Job {
    images: Vec<RgbImage>,
    class: Option<String>,
    thresholds: InForce,
    reply: oneshot::Sender<JobResult>,
}

/// The queue and its worker thread.
pub struct Batcher {
    sender: Mutex<Option<SyncSender<Job>>>,
    depth: Arc<AtomicUsize>,
    pause: Arc<Mutex<()>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    queue: usize,
}

impl Batcher {
    /// Starts the worker thread scoring with the model in `slot`.
    pub fn start(
        slot: Arc<ModelSlot>,
        config: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = sync_channel::<Job>(config.queue.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let pause = Arc::new(Mutex::new(()));
        let worker = Worker {
            slot,
            config,
            metrics,
            depth: depth.clone(),
            pause: pause.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("cras-serve-batcher".into())
            .spawn(move || worker.run(receiver))?;
        Ok(Self {
            sender: Mutex::new(Some(sender)),
            depth,
            pause,
            worker: Mutex::new(Some(handle)),
            queue: config.queue.max(1),
        })
    }

    /// Queues `images` (one request, decided at `thresholds`) for scoring; 503 when the queue
    /// is full, 503 after shutdown.
    pub fn submit(
        &self,
        images: Vec<RgbImage>,
        class: Option<String>,
        thresholds: InForce,
    ) -> Result<oneshot::Receiver<JobResult>, ApiError> {
        let (reply, answer) = oneshot::channel();
        let guard = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let sender = guard.as_ref().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            )
        })?;
        // Count before sending so that the worker's decrement never underflows.
        self.depth.fetch_add(1, Ordering::SeqCst);
        match sender.try_send(Job {
            images,
            class,
            thresholds,
            reply,
        }) {
            Ok(()) => Ok(answer),
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => ApiError::busy(self.queue),
                    TrySendError::Disconnected(_) => {
                        ApiError::internal("the inference worker has stopped")
                    }
                })
            }
        }
    }

    /// Jobs waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }

    /// Holds the worker before its next batch until the guard drops (requests keep queueing,
    /// up to the queue limit). For maintenance and for tests of the queue limits.
    pub fn pause(&self) -> MutexGuard<'_, ()> {
        self.pause.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the queue, lets the worker finish the jobs already queued, and joins it.
    pub fn shutdown(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if handle.join().is_err() {
                tracing::error!("the inference worker thread panicked");
            }
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    slot: Arc<ModelSlot>,
    config: BatchConfig,
    metrics: Arc<Metrics>,
    depth: Arc<AtomicUsize>,
    pause: Arc<Mutex<()>>,
}

impl Worker {
    fn run(self, receiver: Receiver<Job>) {
        while let Ok(first) = receiver.recv() {
            self.depth.fetch_sub(1, Ordering::SeqCst);
            let mut images = first.images.len();
            let mut jobs = vec![first];
            let deadline = Instant::now() + self.config.max_wait;
            while images < self.config.max_batch {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match receiver.recv_timeout(left) {
                    Ok(job) => {
                        self.depth.fetch_sub(1, Ordering::SeqCst);
                        images += job.images.len();
                        jobs.push(job);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            let _hold = self.pause.lock().unwrap_or_else(|e| e.into_inner());
            self.score_batch(jobs);
        }
    }

    /// Scores the jobs still wanted and answers each.
    fn score_batch(&self, mut jobs: Vec<Job>) {
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            return;
        }
        let model = self.slot.current();
        let meta = &model.predictor.meta;
        let mut matched = Vec::new();
        let mut stated = Vec::new();
        for job in jobs {
            match &job.class {
                None => matched.push(job),
                // The class was checked on arrival, but a reload may have changed the classes.
                Some(name) => match meta.class_index(name) {
                    Ok(k) => stated.push((job, k)),
                    Err(e) => {
                        let _ = job.reply.send(Err(ApiError::bad_request(e.to_string())));
                    }
                },
            }
        }
        let total: usize = matched.iter().map(|j| j.images.len()).sum::<usize>()
            + stated.iter().map(|(j, _)| j.images.len()).sum::<usize>();
        self.metrics.observe_batch(total);
        self.score_group(&model, matched.into_iter().map(|j| (j, None)).collect());
        self.score_group(
            &model,
            stated.into_iter().map(|(j, k)| (j, Some(k))).collect(),
        );
    }

    /// Scores jobs that share one kind of class choice (all matched, or all stated).
    fn score_group(&self, model: &Arc<LoadedModel>, mut jobs: Vec<(Job, Option<usize>)>) {
        if jobs.is_empty() {
            return;
        }
        let mut images = Vec::new();
        let mut classes = Vec::new();
        let mut thresholds = Vec::new();
        let mut counts = Vec::with_capacity(jobs.len());
        for (job, class) in &mut jobs {
            counts.push(job.images.len());
            classes.extend(std::iter::repeat_n(*class, job.images.len()));
            thresholds.extend(std::iter::repeat_n(&job.thresholds, job.images.len()));
            images.append(&mut job.images);
        }
        let predicted = self.predict_chunks(model, &images, &classes, &thresholds);
        drop(thresholds);
        match predicted {
            Ok(mut predictions) => {
                for ((job, _), n) in jobs.into_iter().zip(counts) {
                    let rest = predictions.split_off(n.min(predictions.len()));
                    let mine = std::mem::replace(&mut predictions, rest);
                    let _ = job.reply.send(Ok(Scored {
                        model: model.clone(),
                        predictions: mine,
                    }));
                }
            }
            Err(e) => {
                tracing::error!("{}", e.message);
                for (job, _) in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// `predict_images` over `images` in chunks of `max_batch`; `classes[i]` is image i's
    /// stated class or None for the global match, `thresholds[i]` the thresholds of its request.
    fn predict_chunks(
        &self,
        model: &LoadedModel,
        images: &[RgbImage],
        classes: &[Option<usize>],
        thresholds: &[&InForce],
    ) -> Result<Vec<Prediction>, ApiError> {
        let mut out = Vec::with_capacity(images.len());
        let step = self.config.max_batch.max(1);
        let meta = &model.predictor.meta;
        for (c, (chunk, chunk_classes)) in images.chunks(step).zip(classes.chunks(step)).enumerate()
        {
            let in_force = &thresholds[c * step..];
            let threshold_of = |i: usize, k: usize| in_force[i].for_class(meta, k);
            let choice = match chunk_classes
                .iter()
                .copied()
                .collect::<Option<Vec<usize>>>()
            {
                Some(stated) => ClassChoice::Stated(stated),
                None => ClassChoice::Match,
            };
            let predicted = catch_unwind(AssertUnwindSafe(|| {
                model
                    .predictor
                    .predict_images_at(chunk, &choice, &threshold_of)
            }))
            .map_err(|_| {
                ApiError::internal(
                    "scoring failed unexpectedly (internal panic); the server keeps running",
                )
            })?
            .map_err(|e| ApiError::internal(format!("scoring failed: {e}")))?;
            out.extend(predicted);
        }
        Ok(out)
    }
}
