//! [`GraphEngine`]: a model's exported graph held by a runtime, scoring batches for
//! [`crate::infer::Predictor`].
//!
//! Input: preprocessed images `[B,3,S,S]` (any device; copied to the host), a
//! [`ClassChoice`] and the threshold in force for each image ([`ThresholdOf`]). Output: one
//! [`Prediction`] per image, with the graph's anomaly map attached (`Prediction::map`,
//! `[S*S]`), so the map is not computed a second time on the CPU.
//!
//! At f32 the engine runs the whole graph. At a lower precision it runs two graphs
//! ([`crate::export::GraphPart`]): the front (backbone and descriptor, where the arithmetic
//! is) at that precision and the head (adaptor, global match, local alignment, discriminator,
//! map) at f32; at bf16 (and at int8 on OpenVINO where the CPU runs bf16 natively) the head's
//! large products (adaptor, fc1, fc2) take bf16 operands with f32 between them
//! ([`crate::export::ExportOptions::bf16_products`]: they cost a sixth of the front's error,
//! while the alignment's cosines at bf16 move the ranking; docs/precision.md). The head picks
//! a center per patch by an argmax over cosines with many near-ties, and its discriminator turns small feature errors into logits: with the whole
//! graph at bf16, image scores moved by 0.13 logits (median) and up to 1.8 on a realistic
//! benchmark, image AUROC by up to 2.9 points per model; with the head at f32 the median error
//! is 0.05 logits (max 0.5) and the metrics stay within 0.2 points of f32 on average over
//! seeds (docs/precision.md). Cutting after the backbone instead (descriptor at f32 too)
//! changes nothing measurable: the remaining error is the backbone's own.
//!
//! The low-precision engine also holds the front at f32 (its *confirmation* runtime): after
//! the low-precision pass, the images whose score lies within the confirmation band of their
//! threshold ([`near_threshold`]) are scored again through the f32 front and the (f32) head, as
//! one sub-batch with the same class inputs, and the f32 predictions replace theirs. The band
//! is the one measured for the model ([`crate::model::PrecisionBand`], stored by training)
//! unless the caller gives one: every decision is then the f32 one whenever the low-precision
//! error is below the band, at the cost of the f32 pass on the images near a threshold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use super::{
    check_outputs, open_runtime, EngineKind, EngineOptions, GraphOutputs, GraphRuntime, Precision,
};
use crate::export::GraphPart;
use crate::infer::decision::{near_threshold, ThresholdOf};
use crate::infer::scoring::{batch_vote, classes_for, ClassChoice, Prediction};
use crate::{Error, Result};

/// The f32 second opinion of a low-precision engine: the front at f32, and the head at f32
/// where the engine's own head is not (at bf16 its large products are bf16).
struct Confirmation {
    front: Mutex<Box<dyn GraphRuntime>>,
    head: Option<Mutex<Box<dyn GraphRuntime>>>,
    /// In logits.
    band: f32,
    /// Images scored, and of them re-scored at f32, since the engine was built.
    scored: AtomicU64,
    confirmed: AtomicU64,
}

/// How the engine runs the scoring path.
enum Stages {
    /// The whole graph in one runtime (f32).
    Whole(Mutex<Box<dyn GraphRuntime>>),
    /// The front at the engine's precision, then the head at f32.
    Split {
        front: Mutex<Box<dyn GraphRuntime>>,
        head: Mutex<Box<dyn GraphRuntime>>,
    },
}

/// A runtime on one model's exported graph (built once, reused for every batch).
pub struct GraphEngine {
    stages: Stages,
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

/// A runtime's lock (a poisoned lock only means an earlier panic inside a runtime call; the
/// session itself holds no partial state between runs).
fn lock(rt: &Mutex<Box<dyn GraphRuntime>>) -> std::sync::MutexGuard<'_, Box<dyn GraphRuntime>> {
    rt.lock().unwrap_or_else(|e| e.into_inner())
}

impl GraphEngine {
    /// Opens `kind`'s runtime(s) on the model's graphs: `export(part, precision)` returns the
    /// ONNX bytes of a part of the scoring path (built with the `stated_class` input; in QDQ
    /// form at [`Precision::Int8`]). `confirm_band`: the band of a low-precision engine, in
    /// logits (0: no confirmation).
    pub fn new(
        kind: EngineKind,
        export: &dyn Fn(GraphPart, Precision) -> Result<Vec<u8>>,
        options: &EngineOptions,
        confirm_band: f32,
        side: usize,
        patches: usize,
        classes: usize,
    ) -> Result<Self> {
        let f32_options = EngineOptions {
            precision: Precision::F32,
            ..*options
        };
        let (stages, precision, mut description, confirmation) = if options.precision
            == Precision::F32
        {
            let runtime = open_runtime(
                kind,
                &export(GraphPart::Whole, Precision::F32)?,
                &f32_options,
            )?;
            let description = runtime.describe();
            (
                Stages::Whole(Mutex::new(runtime)),
                Precision::F32,
                description,
                None,
            )
        } else {
            let front_onnx = export(GraphPart::Descriptors, options.precision)?;
            let front = open_runtime(kind, &front_onnx, options)?;
            // Compiled at f32; the graph casts its large products to bf16 itself at bf16, and at
            // int8 on OpenVINO where the CPU runs bf16 natively.
            let head_products = match (options.precision, kind) {
                (Precision::Bf16, _) => Precision::Bf16,
                (Precision::Int8, EngineKind::OpenVino) if super::openvino::cpu_has_bf16()? => {
                    Precision::Bf16
                }
                _ => Precision::F32,
            };
            let head = open_runtime(kind, &export(GraphPart::Head, head_products)?, &f32_options)?;
            let precision = front.precision();
            let description = format!(
                "{} (backbone and descriptor; the head at f32{})",
                front.describe(),
                if head_products == Precision::Bf16 {
                    ", its adaptor and discriminator products at bf16"
                } else {
                    ""
                }
            );
            let confirmation = if confirm_band > 0.0 {
                let f32_head = if head_products == Precision::F32 {
                    None
                } else {
                    Some(Mutex::new(open_runtime(
                        kind,
                        &export(GraphPart::Head, Precision::F32)?,
                        &f32_options,
                    )?))
                };
                Some(Confirmation {
                    head: f32_head,
                    front: Mutex::new(open_runtime(
                        kind,
                        &export(GraphPart::Descriptors, Precision::F32)?,
                        &f32_options,
                    )?),
                    band: confirm_band,
                    scored: AtomicU64::new(0),
                    confirmed: AtomicU64::new(0),
                })
            } else {
                None
            };
            let stages = Stages::Split {
                front: Mutex::new(front),
                head: Mutex::new(head),
            };
            (stages, precision, description, confirmation)
        };
        if let Some(c) = &confirmation {
            description.push_str(&format!(
                "; images within {} logits of their threshold re-scored at f32",
                c.band
            ));
        }
        Ok(Self {
            kind,
            precision,
            description,
            stages,
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
        // The front once (a split engine), then the head for each class input the choice needs.
        let front = match &self.stages {
            Stages::Split { front, .. } => Some(lock(front).run_front(&host, b, self.side)?),
            Stages::Whole(_) => None,
        };
        let classes: Vec<i64> = match choice {
            ClassChoice::Match => vec![-1; b],
            ClassChoice::Stated(_) => classes_for(choice, &vec![0; b], self.classes)?
                .into_iter()
                .map(|k| k as i64)
                .collect(),
            ClassChoice::BatchVote => {
                let first = self.scored(&host, front.as_deref(), b, &vec![-1; b])?;
                let matched: Vec<usize> = first.iter().map(|p| p.matched).collect();
                vec![batch_vote(&matched, self.classes) as i64; b]
            }
        };
        let mut predictions = self.scored(&host, front.as_deref(), b, &classes)?;
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
                let descriptors = lock(&c.front).run_front(&sub, near.len(), self.side)?;
                let exact = match &c.head {
                    Some(head) => {
                        let out = lock(head).run_head(
                            &descriptors,
                            near.len(),
                            self.patches,
                            &sub_classes,
                        )?;
                        self.predictions(out, near.len())?
                    }
                    None => self.scored(&sub, Some(&descriptors), near.len(), &sub_classes)?,
                };
                for (i, p) in near.into_iter().zip(exact) {
                    predictions[i] = p;
                }
            }
        }
        Ok(predictions)
    }

    /// The predictions of `b` images: the whole graph on `host`, or the head on the front's
    /// `descriptors` (a split engine).
    fn scored(
        &self,
        host: &[f32],
        descriptors: Option<&[f32]>,
        b: usize,
        classes: &[i64],
    ) -> Result<Vec<Prediction>> {
        let out = match (&self.stages, descriptors) {
            (Stages::Whole(rt), _) => lock(rt).run(host, b, self.side, classes)?,
            (Stages::Split { head, .. }, Some(d)) => {
                lock(head).run_head(d, b, self.patches, classes)?
            }
            (Stages::Split { .. }, None) => {
                return Err(Error::Other(
                    "a split engine scores descriptors: the front did not run".into(),
                ))
            }
        };
        self.predictions(out, b)
    }

    /// The graph's outputs for `b` images as predictions (checked against the contract).
    fn predictions(&self, out: GraphOutputs, b: usize) -> Result<Vec<Prediction>> {
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
