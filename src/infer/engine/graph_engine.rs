//! [`GraphEngine`]: a model's exported graph held by a runtime, scoring batches for
//! [`crate::infer::Predictor`].
//!
//! Input: preprocessed images `[B,3,S,S]` (any device; copied to the host) and a
//! [`ClassChoice`]. Output: one [`Prediction`] per image, with the graph's anomaly map attached
//! (`Prediction::map`, `[S*S]`), so the map is not computed a second time on the CPU.

use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};

use super::{check_outputs, open_runtime, EngineKind, EngineOptions, GraphRuntime, Precision};
use crate::infer::scoring::{batch_vote, classes_for, ClassChoice, Prediction};
use crate::{Error, Result};

/// A runtime on one model's exported graph (built once, reused for every batch).
pub struct GraphEngine {
    runtime: Mutex<Box<dyn GraphRuntime>>,
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
        Ok(Self {
            kind,
            precision: runtime.precision(),
            description: runtime.describe(),
            runtime: Mutex::new(runtime),
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

    /// Scores preprocessed images `[B,3,S,S]`.
    pub fn score(&self, images: &Tensor, choice: &ClassChoice) -> Result<Vec<Prediction>> {
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
                let first = self.run(&host, b, &vec![-1; b])?;
                let matched: Vec<usize> = first.iter().map(|p| p.matched).collect();
                vec![batch_vote(&matched, self.classes) as i64; b]
            }
        };
        self.run(&host, b, &classes)
    }

    fn run(&self, host: &[f32], b: usize, classes: &[i64]) -> Result<Vec<Prediction>> {
        let out = {
            // A poisoned lock only means an earlier panic inside the runtime call; the session
            // itself holds no partial state between runs.
            let mut rt = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
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
