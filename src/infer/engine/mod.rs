//! The engine boundary: WHAT runs the scoring path of a model.
//!
//! - [`EngineKind::Candle`]: the exact reference path (candle, CPU or CUDA), the one training
//!   uses.
//! - [`EngineKind::OnnxRuntime`] / [`EngineKind::OpenVino`]: the model's exported ONNX graph
//!   ([`crate::export`]) run by ONNX Runtime or OpenVINO, whose shared libraries are loaded at run
//!   time ([`library`]).
//!
//! A [`GraphRuntime`] runs the exported graph on preprocessed images `[B,3,S,S]` (row-major f32)
//! and one class index per image (`-1`: the global match) and returns [`GraphOutputs`]: image
//! score `[B]`, patch scores `[B,h,w]`, anomaly map `[B,S,S]`, class used `[B]`, matched class
//! `[B]`, class similarity `[B]`. The runtime is built once per process (per model generation in `serve`)
//! and reused; [`crate::infer::Predictor`] hides which engine it holds.

pub mod band;
pub mod graph_engine;
pub mod library;
pub mod onnxruntime;
pub mod openvino;

use crate::export::{ExportOptions, GraphPart};
use crate::{Error, Result};

/// Which engine scores images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Candle,
    OnnxRuntime,
    OpenVino,
}

impl EngineKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Candle => "candle",
            EngineKind::OnnxRuntime => "onnxruntime",
            EngineKind::OpenVino => "openvino",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The engine asked for: one kind, or the fastest one present (`auto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    Auto,
    Kind(EngineKind),
}

/// The command-line names (`--engine`): the engine kinds' names (`ort` and `ov` accepted for
/// the graph runtimes) and `auto`.
impl clap::ValueEnum for EngineChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            EngineChoice::Kind(EngineKind::Candle),
            EngineChoice::Kind(EngineKind::OnnxRuntime),
            EngineChoice::Kind(EngineKind::OpenVino),
            EngineChoice::Auto,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let value = clap::builder::PossibleValue::new(match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Kind(k) => k.name(),
        });
        Some(match self {
            EngineChoice::Kind(EngineKind::OnnxRuntime) => value.alias("ort"),
            EngineChoice::Kind(EngineKind::OpenVino) => value.alias("ov"),
            _ => value,
        })
    }
}

/// Parses a [`clap::ValueEnum`] name, ignoring case and surrounding spaces; the error names
/// `what`, the value and every accepted name.
fn parse_value<T: clap::ValueEnum>(what: &str, s: &str) -> Result<T> {
    T::from_str(s.trim(), true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        Error::config(what, s, format!("expected one of {}", names.join(", ")))
    })
}

impl std::str::FromStr for EngineChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_value("engine", s)
    }
}

impl std::fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineChoice::Auto => f.write_str("auto"),
            EngineChoice::Kind(k) => k.fmt(f),
        }
    }
}

/// Arithmetic precision of an engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 everywhere: scores within 1e-5 of candle's.
    #[default]
    F32,
    /// bf16 matrix products in the backbone and descriptor where the runtime and the CPU
    /// support them (OpenVINO on AMX / AVX-512 BF16 CPUs); the head runs at f32
    /// ([`graph_engine`]). Scores move (a few hundredths of a logit typically); decisions are
    /// kept by re-scoring in f32 the images near their threshold
    /// ([`EngineOptions::confirm_band`], [`band`]).
    Bf16,
    /// Int8 backbone convolutions (the exported graph's QDQ form, calibrated on training
    /// images: [`crate::export::quant`]) on OpenVINO or ONNX Runtime; the descriptor and the head
    /// run at f32, decisions are kept as at bf16.
    Int8,
}

impl Precision {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

/// The command-line names (`--precision`): `f32` (or `fp32`), `bf16` and `int8`.
impl clap::ValueEnum for Precision {
    fn value_variants<'a>() -> &'a [Self] {
        &[Precision::F32, Precision::Bf16, Precision::Int8]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let value = clap::builder::PossibleValue::new(self.name());
        Some(match self {
            Precision::F32 => value.alias("fp32"),
            Precision::Bf16 | Precision::Int8 => value,
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_value("precision", s)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The confirmation band of a low-precision engine on a model that has no measured one
/// ([`band::resolve_band`]), in logits.
pub const DEFAULT_CONFIRM_BAND: f32 = 3.0;

/// How an engine is built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineOptions {
    pub choice: EngineChoice,
    pub precision: Precision,
    /// Compute threads (None: every core).
    pub threads: Option<usize>,
    /// At low precision: images whose score lies within this many logits of their threshold
    /// are re-scored in f32 before they are decided (0: never; decisions may then flip).
    /// None: the band measured for the model ([`band::resolve_band`]).
    pub confirm_band: Option<f32>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            choice: EngineChoice::Kind(EngineKind::Candle),
            precision: Precision::F32,
            threads: None,
            confirm_band: None,
        }
    }
}

impl EngineOptions {
    /// The number of compute threads to ask a runtime for.
    pub fn thread_count(&self) -> usize {
        self.threads
            .filter(|&t| t > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// What the exported graph returns for a batch of B images (row-major).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GraphOutputs {
    /// `[B]`
    pub image_score: Vec<f32>,
    /// `[B, h, w]`
    pub patch_scores: Vec<f32>,
    /// `[B, S, S]`
    pub anomaly_map: Vec<f32>,
    /// `[B]` class used for alignment.
    pub class_index: Vec<i64>,
    /// `[B]` class of the global match.
    pub matched_class: Vec<i64>,
    /// `[B]`
    pub class_similarity: Vec<f32>,
}

impl GraphOutputs {
    /// The contract's outputs from what a runtime fetched for [`names::OUTPUTS`], in that order.
    fn from_fetched(fetched: Vec<Fetched>) -> Result<Self> {
        let mut it = fetched.into_iter();
        let mut next = |name: &str| {
            it.next().ok_or_else(|| {
                Error::Other(format!("the runtime returned no {name}: the graph does not follow cras's export contract"))
            })
        };
        let f32s = |v: Fetched, name: &str| v.into_f32(name);
        let i64s = |v: Fetched, name: &str| v.into_i64(name);
        Ok(GraphOutputs {
            image_score: f32s(next(names::IMAGE_SCORE)?, names::IMAGE_SCORE)?,
            patch_scores: f32s(next(names::PATCH_SCORES)?, names::PATCH_SCORES)?,
            anomaly_map: f32s(next(names::ANOMALY_MAP)?, names::ANOMALY_MAP)?,
            class_index: i64s(next(names::CLASS_INDEX)?, names::CLASS_INDEX)?,
            matched_class: i64s(next(names::MATCHED_CLASS)?, names::MATCHED_CLASS)?,
            class_similarity: f32s(next(names::CLASS_SIMILARITY)?, names::CLASS_SIMILARITY)?,
        })
    }
}

/// The values of one graph input.
#[derive(Clone, Copy, Debug)]
pub enum Values<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// One input of a graph run: its name, shape and row-major values.
#[derive(Clone, Debug)]
pub struct Feed<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub values: Values<'a>,
}

/// One output of a graph run, read back.
#[derive(Clone, Debug, PartialEq)]
pub enum Fetched {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Fetched {
    fn into_f32(self, name: &str) -> Result<Vec<f32>> {
        match self {
            Fetched::F32(v) => Ok(v),
            Fetched::I64(_) => Err(Error::Other(format!(
                "the graph's output {name} is int64, the contract says float32"
            ))),
        }
    }

    fn into_i64(self, name: &str) -> Result<Vec<i64>> {
        match self {
            Fetched::I64(v) => Ok(v),
            Fetched::F32(_) => Err(Error::Other(format!(
                "the graph's output {name} is float32, the contract says int64"
            ))),
        }
    }
}

/// Names of the exported graph's inputs and outputs (the graph contract, see
/// [`crate::export`]).
pub mod names {
    pub const IMAGE: &str = "image";
    pub const CLASS_INDEX_IN: &str = "stated_class";
    pub const IMAGE_SCORE: &str = "image_score";
    pub const PATCH_SCORES: &str = "patch_scores";
    pub const ANOMALY_MAP: &str = "anomaly_map";
    pub const CLASS_INDEX: &str = "class_index";
    pub const MATCHED_CLASS: &str = "matched_class";
    pub const CLASS_SIMILARITY: &str = "class_similarity";
    /// The front's output and the head's input ([`crate::export::GraphPart`]).
    pub const DESCRIPTORS: &str = crate::export::DESCRIPTORS;
    /// The contract's outputs in their order.
    pub const OUTPUTS: [&str; 6] = [
        IMAGE_SCORE,
        PATCH_SCORES,
        ANOMALY_MAP,
        CLASS_INDEX,
        MATCHED_CLASS,
        CLASS_SIMILARITY,
    ];
}

/// A runtime executing an exported graph (the whole scoring path, or a part of it:
/// [`crate::export::GraphPart`]).
pub trait GraphRuntime: Send {
    /// Runs the graph on `feeds` and returns the outputs named in `outputs`, in that order
    /// (none read when empty).
    fn run_graph(&mut self, feeds: &[Feed<'_>], outputs: &[&str]) -> Result<Vec<Fetched>>;

    /// One line for logs and reports: runtime, version, library, precision, threads.
    fn describe(&self) -> String;

    /// The engine this runtime implements.
    fn kind(&self) -> EngineKind;

    /// The precision it runs at.
    fn precision(&self) -> Precision;

    /// The whole graph (built with the `stated_class` input) on `images` `[batch, 3, side,
    /// side]` with one class per image (`-1` = match).
    fn run(
        &mut self,
        images: &[f32],
        batch: usize,
        side: usize,
        classes: &[i64],
    ) -> Result<GraphOutputs> {
        let feeds = [
            image_feed(images, batch, side),
            Feed {
                name: names::CLASS_INDEX_IN,
                shape: vec![batch],
                values: Values::I64(classes),
            },
        ];
        GraphOutputs::from_fetched(self.run_graph(&feeds, &names::OUTPUTS)?)
    }

    /// The front ([`crate::export::GraphPart::Descriptors`]) on `images`: the descriptors
    /// `[batch, P, D]`.
    fn run_front(&mut self, images: &[f32], batch: usize, side: usize) -> Result<Vec<f32>> {
        let mut out = self.run_graph(&[image_feed(images, batch, side)], &[names::DESCRIPTORS])?;
        out.pop()
            .ok_or_else(|| Error::Other("the front graph returned no descriptors".into()))?
            .into_f32(names::DESCRIPTORS)
    }

    /// The head ([`crate::export::GraphPart::Head`], built with the `stated_class` input) on
    /// descriptors `[batch, patches, dims]`.
    fn run_head(
        &mut self,
        descriptors: &[f32],
        batch: usize,
        patches: usize,
        classes: &[i64],
    ) -> Result<GraphOutputs> {
        let dims = descriptors.len() / (batch * patches).max(1);
        let feeds = [
            Feed {
                name: names::DESCRIPTORS,
                shape: vec![batch, patches, dims],
                values: Values::F32(descriptors),
            },
            Feed {
                name: names::CLASS_INDEX_IN,
                shape: vec![batch],
                values: Values::I64(classes),
            },
        ];
        GraphOutputs::from_fetched(self.run_graph(&feeds, &names::OUTPUTS)?)
    }

    /// Runs a graph on images only and discards its outputs (the stage graphs that
    /// `cras bench` times; see [`crate::export::GraphPart`]).
    fn run_discarding(&mut self, images: &[f32], batch: usize, side: usize) -> Result<()> {
        self.run_graph(&[image_feed(images, batch, side)], &[])
            .map(|_| ())
    }
}

/// The `image` input of `batch` images `[batch, 3, side, side]`.
fn image_feed(images: &[f32], batch: usize, side: usize) -> Feed<'_> {
    Feed {
        name: names::IMAGE,
        shape: vec![batch, 3, side, side],
        values: Values::F32(images),
    }
}

/// The export options of graph part `part` for an engine at `precision` (the `stated_class`
/// input always): int8 graphs in QDQ form, and at bf16 the head's large products with bf16
/// operands (OpenVINO compiles the head at f32 and runs those at bf16).
pub fn part_options(
    part: GraphPart,
    precision: Precision,
    model_sha256: Option<String>,
) -> ExportOptions {
    ExportOptions {
        class_input: true,
        model_sha256,
        part,
        int8: precision == Precision::Int8,
        bf16_products: part == GraphPart::Head && precision == Precision::Bf16,
    }
}

/// Opens `kind`'s runtime on an exported graph (`onnx`: ModelProto bytes).
pub fn open_runtime(
    kind: EngineKind,
    onnx: &[u8],
    options: &EngineOptions,
) -> Result<Box<dyn GraphRuntime>> {
    match kind {
        EngineKind::OnnxRuntime => Ok(Box::new(onnxruntime::OrtRuntime::new(onnx, options)?)),
        EngineKind::OpenVino => Ok(Box::new(openvino::OvRuntime::new(onnx, options)?)),
        EngineKind::Candle => Err(Error::Other(
            "the candle engine does not run exported graphs".into(),
        )),
    }
}

/// Checks that every output has the length the contract promises for `batch` images.
pub(crate) fn check_outputs(
    out: &GraphOutputs,
    batch: usize,
    patches: usize,
    side: usize,
) -> Result<()> {
    let want = [
        ("image_score", out.image_score.len(), batch),
        ("patch_scores", out.patch_scores.len(), batch * patches),
        ("anomaly_map", out.anomaly_map.len(), batch * side * side),
        ("class_index", out.class_index.len(), batch),
        ("matched_class", out.matched_class.len(), batch),
        ("class_similarity", out.class_similarity.len(), batch),
    ];
    for (name, got, expected) in want {
        if got != expected {
            return Err(Error::Other(format!(
                "the exported graph returned {got} values for {name}, expected {expected} \
                 ({batch} images): the graph does not follow cras's export contract"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_and_precision_names_parse_and_print() {
        for s in ["auto", "candle", "onnxruntime", "openvino"] {
            let c: EngineChoice = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
        }
        assert_eq!(
            " ORT ".parse::<EngineChoice>().unwrap(),
            EngineChoice::Kind(EngineKind::OnnxRuntime)
        );
        let err = "tensorrt".parse::<EngineChoice>().unwrap_err().to_string();
        assert!(err.contains("tensorrt"), "{err}");
        assert!(err.contains("candle, onnxruntime, openvino, auto"), "{err}");
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("fp32".parse::<Precision>().unwrap(), Precision::F32);
        assert!("fp8".parse::<Precision>().is_err());
    }

    #[test]
    fn outputs_of_the_wrong_length_are_refused() {
        let out = GraphOutputs {
            image_score: vec![0.0; 2],
            patch_scores: vec![0.0; 2 * 4],
            anomaly_map: vec![0.0; 2 * 16],
            class_index: vec![0; 2],
            matched_class: vec![0; 2],
            class_similarity: vec![0.0; 2],
        };
        assert!(check_outputs(&out, 2, 4, 4).is_ok());
        let err = check_outputs(&out, 2, 4, 5).unwrap_err().to_string();
        assert!(err.contains("anomaly_map"), "{err}");
    }
}
