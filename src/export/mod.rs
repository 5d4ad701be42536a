//! ONNX export: ONE graph of the whole scoring path of a trained model, from the preprocessed
//! image tensor to the scores, maps and classes, numerically equal to the inference layer's
//! candle path (f32; scores within 1e-5, maps within 1e-4 on ONNX Runtime and OpenVINO).
//!
//! # Graph contract (format "1")
//! - ONNX IR version 8, opset 17 of the default domain, standard ops only (Conv, Relu,
//!   MaxPool, AveragePool, Add, Sub, Mul, Div, Max, Less, Where, MatMul, Gemm, Pad, Slice,
//!   Concat, Reshape, Transpose, Unsqueeze, ReduceMean, ReduceMax, ReduceSumSquare, Sqrt,
//!   ArgMax, Gather, LeakyRelu, Sigmoid; Identity copies `matched_class` to `class_index` when
//!   there is no `stated_class` input; an int8 graph adds QuantizeLinear / DequantizeLinear
//!   around the backbone's convolutions, [`quant`]).
//! - Inputs: `image` float32 `[batch,3,S,S]`, preprocessed exactly as cras does (see the
//!   `cras.preprocess` metadata); with [`ExportOptions::class_input`] also `stated_class` int64
//!   `[batch]`: a value < 0 means "use the global match", otherwise the stated class index (a
//!   value >= the number of classes is a runtime error of the Gather). It cannot be named
//!   `class_index`: that is the name of an output, and ONNX values are named once (SSA).
//! - Outputs, in this order: `image_score` float32 `[batch]` (max patch score),
//!   `patch_scores` float32 `[batch,g,g]`, `anomaly_map` float32 `[batch,S,S]` (bilinear
//!   upsampling + Gaussian blur sigma 4, as [`crate::maps`]), `class_index` int64
//!   `[batch]` (class used for alignment), `matched_class` int64 `[batch]` (global match),
//!   `class_similarity` float32 `[batch]`.
//! - Metadata (`metadata_props`, strings): `cras.classes` (JSON list), `cras.thresholds` (JSON
//!   or `null`), `cras.precision_bands` (JSON list, empty when none was measured: each
//!   low-precision engine's measured logit error against f32 and the confirmation band derived
//!   from it, [`crate::model::PrecisionBand`], as the model file stores them; measured on
//!   cras's split engine, low-precision front and f32 head), `cras.preprocess` (JSON),
//!   `cras.backbone` (JSON provenance),
//!   `cras.random_backbone` (`true`/`false`), `cras.int8` (an int8 graph only: JSON of the
//!   quantization rule and the calibration images), `cras.version`, `cras.model_sha256`,
//!   `cras.format` (`1`), `cras.outputs` (one line). Producer `cras` and the crate version.
//!
//! Parts ([`GraphPart`]): besides the whole path, a graph can hold its front (image to the
//! `descriptors` `[B,P,D]`) or its head (`descriptors` and `stated_class` to the contract's
//! outputs), so that an engine runs them at different precisions, or a prefix for timings.
//!
//! Input: the trained model borrowed ([`ModelRef`]: metadata, feature extractor, head), or a
//! model file ([`export_file`]). Output: the serialised ONNX `ModelProto` bytes.
//!
//! Submodules: `source` (everything read from the model), `graph` (the builder), `backbone`,
//! `descriptor`, `head`, `onnx_pb` (generated protobuf types, see `dev/gen_onnx_proto.sh`),
//! `triton` (a Triton Inference Server model repository around the graph).

mod backbone;
mod descriptor;
mod graph;
mod head;
#[allow(clippy::all, missing_docs)]
pub mod onnx_pb;
pub mod quant;
mod source;
pub mod triton;

use std::path::Path;

use prost::Message;

use crate::model::{ModelRef, TrainedModel};
use crate::{Error, Result};
use graph::{Dim, Elem, Graph};
pub use head::map_matrix;
use onnx_pb as pb;

/// The ONNX opset of the default domain the graph uses.
pub const OPSET: i64 = 17;
/// The ONNX IR version written.
pub const IR_VERSION: i64 = 8;
/// The version of the graph contract (inputs, outputs, metadata) described in the module docs.
pub const FORMAT: &str = "1";
/// The one-line description stored under `cras.outputs`.
pub const OUTPUTS_DOC: &str = "image_score f32 [B] (max patch score); patch_scores f32 [B,g,g]; \
anomaly_map f32 [B,S,S] (bilinear upsample + gaussian sigma 4); class_index i64 [B] (class used); \
matched_class i64 [B] (global match); class_similarity f32 [B] (cosine of the global match)";

/// Protobuf messages cannot exceed 2 GiB; external data files are not written.
const PROTOBUF_LIMIT: usize = (2 << 30) - (16 << 20);

/// What to export.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Add the optional `stated_class` int64 `[batch]` input (< 0: global match).
    pub class_input: bool,
    /// SHA-256 of the model file, stored as `cras.model_sha256` (`unknown` when `None`).
    pub model_sha256: Option<String>,
    /// Which part of the scoring path the graph holds (default: all of it, the contract).
    pub part: GraphPart,
    /// Int8 backbone convolutions (QDQ form, [`quant`]) with the model's calibration; an
    /// error when the model has none.
    pub int8: bool,
    /// The head's large products (adaptor, fc1, fc2) with bfloat16 operands: `Cast` to
    /// bfloat16, `MatMul` with bfloat16 weights, `Cast` back, everything else float32 (the
    /// alignment's cosines included). For OpenVINO's bf16 engine, which compiles the head at
    /// f32 and runs those products as bf16 FullyConnected layers.
    pub bf16_products: bool,
}

/// A part of the scoring path: the whole of it (the contract), a prefix of it (for per-stage
/// timings, `cras bench`), or the two halves a mixed-precision engine runs at different
/// precisions ([`crate::infer::engine::graph_engine`]): the image to the descriptors (the
/// "front") and the descriptors to the contract's outputs (the "head").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphPart {
    /// `image` (and `stated_class`) to the contract's outputs.
    #[default]
    Whole,
    /// `image` to the backbone's stage outputs (`feature_0`, `feature_1`, ...
    /// `[B,C_i,H_i,W_i]`).
    Backbone,
    /// `image` to the patch descriptors (`descriptors` f32 `[B,P,D]`): the front.
    Descriptors,
    /// The patch descriptors (input `descriptors` f32 `[batch,P,D]`, and `stated_class`) to the
    /// contract's outputs: the head (adaptor, global match, local alignment, discriminator,
    /// map).
    Head,
}

/// The name of the descriptors `[B,P,D]` where the front ends and the head starts.
pub const DESCRIPTORS: &str = "descriptors";

/// The serialised ONNX `ModelProto` of the scoring path of `model` (a [`ModelRef`], or anything
/// that lends one: a [`TrainedModel`], the inference layer's predictor).
pub fn export_onnx<'a>(model: impl Into<ModelRef<'a>>, options: &ExportOptions) -> Result<Vec<u8>> {
    let src = source::ModelSource::read(model.into())?;
    let s = src.input_size;
    let first = src.layers[0].stride();
    if s == 0 || !s.is_multiple_of(16) || s / first != src.grid {
        return Err(Error::config(
            "input size",
            s,
            format!(
                "expected a multiple of 16 with grid {} = S / {first}",
                src.grid
            ),
        ));
    }
    let g = scoring_graph(&src, options)?;
    if g.initializer_bytes > PROTOBUF_LIMIT {
        return Err(Error::Other(format!(
            "the model's constants take {} MiB, over ONNX's 2 GiB protobuf limit (external data is not supported)",
            g.initializer_bytes >> 20
        )));
    }
    Ok(model_proto(&src, options, g).encode_to_vec())
}

/// The graph of the scoring path (or of its part `options.part`): inputs, backbone,
/// descriptors, head, declared outputs.
fn scoring_graph(src: &source::ModelSource, options: &ExportOptions) -> Result<Graph> {
    let s = src.input_size;
    let mut g = Graph::default();
    let b = Dim::Named("batch");
    let desc_dims = [
        b.clone(),
        Dim::Fixed(src.grid * src.grid),
        Dim::Fixed(src.dims),
    ];
    if options.part == GraphPart::Head {
        let desc = g.input(DESCRIPTORS, Elem::F32, &desc_dims);
        let class_input = options
            .class_input
            .then(|| g.input("stated_class", Elem::I64, &[b]));
        with_head(&mut g, src, &desc, class_input.as_deref(), options, s)?;
        return Ok(g);
    }
    let image = g.input(
        "image",
        Elem::F32,
        &[b.clone(), Dim::Fixed(3), Dim::Fixed(s), Dim::Fixed(s)],
    );
    let class_input = (options.class_input && options.part == GraphPart::Whole)
        .then(|| g.input("stated_class", Elem::I64, &[b]));
    let int8 = if options.int8 {
        Some(src.int8.as_ref().ok_or_else(|| {
            Error::config(
                "precision",
                "int8",
                "the model has no int8 calibration (it was trained before cras measured one): \
                 calibrate it with `cras quantize --model M --data DIR`",
            )
        })?)
    } else {
        None
    };
    let feats = backbone::backbone(&mut g, src, &image, int8)?;
    if options.part == GraphPart::Backbone {
        for (i, f) in feats.iter().enumerate() {
            let dims = [
                Dim::Named("batch"),
                Dim::Named("c"),
                Dim::Named("h"),
                Dim::Named("w"),
            ];
            g.output(f, &format!("feature_{i}"), Elem::F32, &dims);
        }
        return Ok(g);
    }
    let desc = descriptor::descriptor(&mut g, src, &feats)?;
    if options.part == GraphPart::Descriptors {
        g.output(&desc, DESCRIPTORS, Elem::F32, &desc_dims);
    } else {
        with_head(&mut g, src, &desc, class_input.as_deref(), options, s)?;
    }
    Ok(g)
}

/// The head on descriptors `desc` and its outputs declared: the end of every graph that scores.
fn with_head(
    g: &mut Graph,
    src: &source::ModelSource,
    desc: &str,
    class_input: Option<&str>,
    options: &ExportOptions,
    size: usize,
) -> Result<()> {
    let outs = head::head(g, src, desc, class_input, options.bf16_products)?;
    head::declare_outputs(g, &outs, src.grid, size);
    Ok(())
}

/// The `ModelProto` around graph `g`: versions, producer, doc string and the `cras.*`
/// metadata of the graph contract.
fn model_proto(src: &source::ModelSource, options: &ExportOptions, g: Graph) -> pb::ModelProto {
    let s = src.input_size;
    let version = env!("CARGO_PKG_VERSION");
    let mut meta = vec![
        ("cras.classes", serde_json::json!(src.classes).to_string()),
        ("cras.thresholds", src.thresholds_json.clone()),
        ("cras.precision_bands", src.precision_bands_json.clone()),
        ("cras.preprocess", src.preprocess_json.clone()),
        ("cras.backbone", src.backbone_json.clone()),
        ("cras.random_backbone", src.random_backbone.to_string()),
        ("cras.version", version.to_string()),
        (
            "cras.model_sha256",
            options
                .model_sha256
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        ),
        ("cras.format", FORMAT.to_string()),
        ("cras.outputs", OUTPUTS_DOC.to_string()),
    ];
    if let (true, Some(cal)) = (options.int8, &src.int8) {
        let doc = serde_json::json!({
            "rule": "backbone convolutions: input uint8 per tensor over the calibrated range \
                     (widened to hold 0), weights int8 symmetric per output channel, bias float32; \
                     everything else float32",
            "images_from": cal.images_from,
            "images": cal.images,
            "method": cal.method,
        });
        meta.push(("cras.int8", doc.to_string()));
    }
    pb::ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("cras".into()),
        producer_version: Some(version.into()),
        model_version: Some(1),
        doc_string: Some(format!(
            "CRAS multi-class anomaly detector ({} classes, {} on {}x{} inputs, {} dims): \
             image [B,3,{s},{s}] -> {OUTPUTS_DOC}",
            src.classes.len(),
            src.layers
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join("+"),
            s,
            s,
            src.dims
        )),
        graph: Some(g.finish("cras")),
        metadata_props: meta
            .into_iter()
            .map(|(k, v)| pb::StringStringEntryProto {
                key: Some(k.into()),
                value: Some(v),
            })
            .collect(),
        ..Default::default()
    }
}

/// What [`export_file`] wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// Size of the ONNX file in bytes.
    pub bytes: usize,
    /// Input side S.
    pub input_size: usize,
    /// Side of the patch grid.
    pub grid: usize,
    /// Class names in index order.
    pub classes: Vec<String>,
    /// The model's tiling: the graph then scores one tile per input.
    pub tiling: Option<crate::data::Tiling>,
}

/// Exports the model file `model` (written by `cras train`) to `out`, written atomically;
/// with `int8`, in QDQ form ([`quant`]). Errors name the file at fault (unreadable or partial
/// model, a model without int8 calibration, unwritable output).
pub fn export_file(
    model: &Path,
    out: &Path,
    class_input: bool,
    int8: bool,
) -> Result<ExportSummary> {
    let trained = TrainedModel::load(model, &candle_core::Device::Cpu)?;
    let options = ExportOptions {
        class_input,
        model_sha256: Some(crate::backbone::sha256_file(model)?),
        part: GraphPart::Whole,
        int8,
        bf16_products: false,
    };
    let bytes = export_onnx(&trained, &options)
        .map_err(|e| Error::checkpoint(model, format!("ONNX export: {e}")))?;
    write_onnx(out, &bytes)?;
    Ok(ExportSummary {
        bytes: bytes.len(),
        input_size: trained.as_ref().input_size(),
        grid: trained.meta.grid,
        classes: trained.meta.classes.clone(),
        tiling: trained.meta.preprocess.tiling,
    })
}

/// Writes exported bytes to `path` atomically (temporary file + rename).
pub fn write_onnx(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsio::write_atomic(path, bytes).map_err(|e| {
        Error::Other(format!(
            "cannot write the ONNX file {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests;
