//! [`GraphEngine`]: a model's exported graph held by a runtime, scoring batches for
//! [`crate::infer::Predictor`].
//!
//! Input: preprocessed images `[B,3,S,S]` (any device; copied to the host), a
//! [`ClassChoice`] and the threshold in force for each image ([`ThresholdOf`]). Output: one
//! [`Prediction`] per image, with the graph's anomaly map attached (`Prediction::map`,
//! `[S*S]`), so the map is not computed a second time on the CPU.
//!
//! At bf16 the engine also holds the graph at f32 (its *confirmation* runtime): after the bf16
//! pass, the images whose score lies within [`EngineOptions::confirm_band`] logits of their
//! threshold ([`near_threshold`]) are scored again at f32 (as one sub-batch, with the same class
//! inputs) and the f32 predictions replace theirs. bf16 moves scores by changing which center
//! the local alignment picks on near-ties, which no f32 tail can undo; the band makes every
//! decision the f32 one whenever the bf16 error is below the band, at the cost of the f32 pass
//! on the images near a threshold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use super::{check_outputs, open_runtime, EngineKind, EngineOptions, GraphRuntime, Precision};
use crate::infer::decision::{near_threshold, ThresholdOf};
use crate::infer::scoring::{batch_vote, classes_for, ClassChoice, Prediction};
use crate::{Error, Result};

/// The f32 second opinion of a bf16 engine.
struct Confirmation {
    runtime: Mutex<Box<dyn GraphRuntime>>,
    /// In logits.
    band: f32,
    /// Images scored, and of them re-scored at f32, since the engine was built.
    scored: AtomicU64,
    confirmed: AtomicU64,
}

/// A runtime on one model's exported graph (built once, reused for every batch).
pub struct GraphEngine {
    runtime: Mutex<Box<dyn GraphRuntime>>,
    confirmation: Option<Confirmation>,
    kind: EngineKind,
    precision: Precision,
    description: String,
    /// Input side S.
    side: usize,
    /// Patch positions per image (g*g).
    patches: usize,
    /// Classes in the model.
    classes: usize,
}

impl GraphEngine {
    /// Opens `kind`'s runtime on `onnx` (exported with the `stated_class` input).
    pub fn new(
        kind: EngineKind,
        onnx: &[u8],
        options: &EngineOptions,
        side: usize,
        patches: usize,
        classes: usize,
    ) -> Result<Self> {
        let runtime = open_runtime(kind, onnx, options)?;
        let precision = runtime.precision();
        let mut description = runtime.describe();
        let confirmation = if precision == Precision::Bf16 && options.confirm_band > 0.0 {
            let f32_options = EngineOptions {
                precision: Precision::F32,
                ..*options
            };
            description.push_str(&format!(
                "; images within {} logits of their threshold re-scored at f32",
                options.confirm_band
            ));
            Some(Confirmation {
                runtime: Mutex::new(open_runtime(kind, onnx, &f32_options)?),
                band: options.confirm_band,
                scored: AtomicU64::new(0),
                confirmed: AtomicU64::new(0),
            })
        } else {
            None
        };
        Ok(Self {
            kind,
            precision,
            description,
            runtime: Mutex::new(runtime),
            confirmation,
            side,
            patches,
            classes,
        })
    }

    /// The engine kind.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The precision it runs at.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runtime, version, library, precision and threads, in one line.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Of the images scored so far, how many were re-scored at f32 (None: no confirmation).
    pub fn confirmed(&self) -> Option<(u64, u64)> {
        self.confirmation.as_ref().map(|c| {
            (
                c.confirmed.load(Ordering::Relaxed),
                c.scored.load(Ordering::Relaxed),
            )
        })
    }

    /// Scores preprocessed images `[B,3,S,S]`; `threshold_of` says which threshold decides each
    /// image (used only to pick the images a bf16 engine confirms at f32).
    pub fn score(
        &self,
        images: &Tensor,
        choice: &ClassChoice,
        threshold_of: ThresholdOf,
    ) -> Result<Vec<Prediction>> {
        let (b, c, h, w) = images.dims4()?;
        if c != 3 || h != self.side || w != self.side {
            return Err(Error::config(
                "image batch shape",
                format!("{:?}", images.dims()),
                format!("the exported graph takes [B,3,{0},{0}]", self.side),
            ));
        }
        if b == 0 {
            return Ok(Vec::new());
        }
        let host: Vec<f32> = images
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let classes: Vec<i64> = match choice {
            ClassChoice::Match => vec![-1; b],
            ClassChoice::Stated(_) => classes_for(choice, &vec![0; b], self.classes)?
                .into_iter()
                .map(|k| k as i64)
                .collect(),
            ClassChoice::BatchVote => {
                let first = self.run(&self.runtime, &host, b, &vec![-1; b])?;
                let matched: Vec<usize> = first.iter().map(|p| p.matched).collect();
                vec![batch_vote(&matched, self.classes) as i64; b]
            }
        };
        let mut predictions = self.run(&self.runtime, &host, b, &classes)?;
        if let Some(c) = &self.confirmation {
            let near: Vec<usize> = (0..b)
                .filter(|&i| {
                    let p = &predictions[i];
                    near_threshold(p.score, threshold_of(i, p.class), c.band)
                })
                .collect();
            c.scored.fetch_add(b as u64, Ordering::Relaxed);
            c.confirmed.fetch_add(near.len() as u64, Ordering::Relaxed);
            if !near.is_empty() {
                let n = host.len() / b;
                let sub: Vec<f32> = near
                    .iter()
                    .flat_map(|&i| host[i * n..(i + 1) * n].iter().copied())
                    .collect();
                let sub_classes: Vec<i64> = near.iter().map(|&i| classes[i]).collect();
                let exact = self.run(&c.runtime, &sub, near.len(), &sub_classes)?;
                for (i, p) in near.into_iter().zip(exact) {
                    predictions[i] = p;
                }
            }
        }
        Ok(predictions)
    }

    fn run(
        &self,
        runtime: &Mutex<Box<dyn GraphRuntime>>,
        host: &[f32],
        b: usize,
        classes: &[i64],
    ) -> Result<Vec<Prediction>> {
        let out = {
            // A poisoned lock only means an earlier panic inside the runtime call; the session
            // itself holds no partial state between runs.
            let mut rt = runtime.lock().unwrap_or_else(|e| e.into_inner());
            rt.run(host, b, self.side, classes)?
        };
        check_outputs(&out, b, self.patches, self.side)?;
        let class = |v: i64, what: &str| -> Result<usize> {
            usize::try_from(v)
                .ok()
                .filter(|&k| k < self.classes)
                .ok_or_else(|| {
                    Error::Other(format!(
                        "the exported graph returned {what} {v} for a model of {} classes",
                        self.classes
                    ))
                })
        };
        let (p, m) = (self.patches, self.side * self.side);
        (0..b)
            .map(|i| {
                Ok(Prediction {
                    class: class(out.class_index[i], "class_index")?,
                    matched: class(out.matched_class[i], "matched_class")?,
                    class_similarity: out.class_similarity[i],
                    score: out.image_score[i],
                    patch_scores: out.patch_scores[i * p..(i + 1) * p].to_vec(),
                    map: Some(out.anomaly_map[i * m..(i + 1) * m].to_vec()),
                })
            })
            .collect()
    }
}
