//! [`Batcher`]: dynamic batching of prediction requests onto ONE worker thread.
//!
//! Input: jobs (one request's [`Inputs`]: decoded RGB images, or preprocessed network inputs
//! `[n, 3, S, S]` as the exported graph takes them; plus an optional class name) pushed into a
//! bounded queue of `queue` jobs ([`Batcher::submit`], [`Batcher::submit_inputs`]; a full
//! queue answers 503 at once). The worker takes the first waiting job, then gathers more until
//! `max_batch` images are collected or `max_wait` has passed, and scores them in chunks of at
//! most `max_batch` images: `Predictor::predict_images` for decoded images,
//! `Predictor::predict_batch` for preprocessed ones (the same call after preprocessing), one
//! call per kind of input for the images with no stated class (global match) and one for those
//! with a stated class. Output per job, through its oneshot channel:
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

/// What one job scores.
pub enum Inputs {
    /// Decoded images.
    Images(Vec<RgbImage>),
    /// Preprocessed network inputs, row-major `[count, 3, S, S]` (not for tiled models).
    Tensor {
        /// The values.
        data: Vec<f32>,
        /// How many inputs.
        count: usize,
    },
}

impl Inputs {
    /// How many images.
    pub fn len(&self) -> usize {
        match self {
            Inputs::Images(images) => images.len(),
            Inputs::Tensor { count, .. } => *count,
        }
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_tensor(&self) -> bool {
        matches!(self, Inputs::Tensor { .. })
    }

    /// Moves `other`'s inputs (of the same kind) after these.
    fn append(&mut self, other: &mut Inputs) {
        match (self, other) {
            (Inputs::Images(a), Inputs::Images(b)) => a.append(b),
            (Inputs::Tensor { data, count }, Inputs::Tensor { data: d, count: c }) => {
                data.append(d);
                *count += std::mem::take(c);
            }
            // Groups are formed by kind (`Worker::score_batch`).
            _ => unreachable!("inputs of different kinds in one group"),
        }
    }
}

struct Job {
    images: Inputs,
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
        self.submit_inputs(Inputs::Images(images), class, thresholds)
    }

    /// [`Self::submit`] for any [`Inputs`].
    pub fn submit_inputs(
        &self,
        images: Inputs,
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

    /// Whether jobs are taken (false once shutdown began).
    pub fn accepting(&self) -> bool {
        self.sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
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
        let (matched_tensors, matched): (Vec<Job>, Vec<Job>) =
            matched.into_iter().partition(|j| j.images.is_tensor());
        let (stated_tensors, stated): (Vec<_>, Vec<_>) =
            stated.into_iter().partition(|(j, _)| j.images.is_tensor());
        self.score_group(&model, matched.into_iter().map(|j| (j, None)).collect());
        self.score_group(
            &model,
            stated.into_iter().map(|(j, k)| (j, Some(k))).collect(),
        );
        self.score_group(
            &model,
            matched_tensors.into_iter().map(|j| (j, None)).collect(),
        );
        self.score_group(
            &model,
            stated_tensors
                .into_iter()
                .map(|(j, k)| (j, Some(k)))
                .collect(),
        );
    }

    /// Scores jobs that share one kind of input and of class choice (all matched, or all
    /// stated).
    fn score_group(&self, model: &Arc<LoadedModel>, mut jobs: Vec<(Job, Option<usize>)>) {
        if jobs.is_empty() {
            return;
        }
        let mut images = match jobs[0].0.images {
            Inputs::Images(_) => Inputs::Images(Vec::new()),
            Inputs::Tensor { .. } => Inputs::Tensor {
                data: Vec::new(),
                count: 0,
            },
        };
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

    /// `predict_images` (or `predict_batch`) over `images` in chunks of `max_batch`;
    /// `classes[i]` is image i's stated class or None for the global match, `thresholds[i]` the
    /// thresholds of its request.
    fn predict_chunks(
        &self,
        model: &LoadedModel,
        images: &Inputs,
        classes: &[Option<usize>],
        thresholds: &[&InForce],
    ) -> Result<Vec<Prediction>, ApiError> {
        let mut out = Vec::with_capacity(images.len());
        let step = self.config.max_batch.max(1);
        let meta = &model.predictor.meta;
        for (c, chunk_classes) in classes.chunks(step).enumerate() {
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
            let range = c * step..c * step + chunk_classes.len();
            let predicted = catch_unwind(AssertUnwindSafe(|| {
                predict_range(model, images, range, &choice, &threshold_of)
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

/// Scores the images `range` of `images`.
fn predict_range(
    model: &LoadedModel,
    images: &Inputs,
    range: std::ops::Range<usize>,
    choice: &ClassChoice,
    threshold_of: crate::infer::ThresholdOf,
) -> crate::Result<Vec<Prediction>> {
    let predictor = &model.predictor;
    match images {
        Inputs::Images(images) => predictor.predict_images_at(&images[range], choice, threshold_of),
        Inputs::Tensor { data, count } => {
            let s = predictor.input_size();
            let per = 3 * s * s;
            // Checked on arrival, but a reload may have changed the input size or tiling.
            if data.len() != count * per || predictor.meta.preprocess.tiling.is_some() {
                return Err(crate::Error::Other(format!(
                    "the model was reloaded and no longer takes [{count}, 3, {s}, {s}] inputs"
                )));
            }
            let n = range.len();
            let values = data[range.start * per..range.end * per].to_vec();
            let tensor = candle_core::Tensor::from_vec(values, (n, 3, s, s), &predictor.device)?;
            predictor.predict_batch_at(&tensor, choice, threshold_of)
        }
    }
}
