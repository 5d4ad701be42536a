//! NVIDIA Triton Inference Server model repository export (`cras export --triton DIR`).
//!
//! # Layout
//! [`export_triton`] writes, each file atomically (the folders created):
//! - `DIR/<name>/1/model.onnx`: the graph of [`super::export_file`] (version folder `1`);
//! - `DIR/<name>/config.pbtxt`: a `ModelConfig` in protobuf text format for the ONNX Runtime
//!   backend (`platform: "onnxruntime_onnx"`), with `max_batch_size`, `dynamic_batching`
//!   (`preferred_batch_size`, `max_queue_delay_microseconds`), one `instance_group` (`count`,
//!   `KIND_CPU` or `KIND_GPU`), an `input` / `output` entry per graph input / output, the
//!   ONNX Runtime TensorRT execution accelerator when asked (GPU only), and `parameters`.
//!
//! `<name>` defaults to the model file's stem and is one folder name (no `/`, `\`, not `.`
//! or `..`, no control characters).
//!
//! # Inputs and outputs
//! They are read back from the ONNX file just written, never restated: each graph input and
//! output gives its name, its data type (ONNX `FLOAT` -> `TYPE_FP32`, `INT64` -> `TYPE_INT64`,
//! ...) and its dims without the leading batch dimension (a symbolic dim in the graph; another
//! symbolic dim is written `-1`). A tensor that is only `[batch]` is written `dims: [ 1 ]`
//! with `reshape: { shape: [ ] }`, Triton's form for a per-item scalar (it refuses empty
//! `dims`).
//!
//! # Parameters (string values)
//! `classes` (JSON list, index order), `threshold.<class>` (the stored per-class decision
//! threshold, when the model is calibrated) and `threshold_method`, `precision_bands` (JSON
//! list, when the model measured any: each low-precision engine's logit error against f32 and
//! its confirmation band, `crate::model::PrecisionBand`), `preprocess` (JSON: how
//! to make the `image` tensor), `model_sha256`, `cras_version`, `cras_format`, all copied from
//! the graph's `cras.*` metadata. Triton hands them to the backend, which ignores keys it does
//! not know; a client reads them from the model configuration endpoint.
//!
//! # Why the text format is written by hand
//! `prost`, the crate's protobuf library, has no text format; the alternative (`prost-reflect`'s
//! text format over a descriptor compiled from a vendored `model_config.proto` by `protox`)
//! adds two dependencies and a vendored schema for a few fixed fields. [`TritonConfig::to_pbtxt`]
//! writes those fields, with every string quoted by [`quote`] (C escapes; bytes outside
//! printable ASCII as octal). `tests/triton/check_config.py` parses the result with Triton's
//! own `model_config.proto` (the `model_config_pb2` of `tritonclient`), strictly, and checks
//! it against the ONNX graph.

use std::path::{Path, PathBuf};

use prost::Message;

use super::onnx_pb as pb;
use super::ExportSummary;
use crate::{Error, Result};

/// Where Triton runs the model instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InstanceKind {
    /// `KIND_CPU`.
    Cpu,
    /// `KIND_GPU` (every visible GPU gets `count` instances).
    #[default]
    Gpu,
}

impl InstanceKind {
    /// The `ModelInstanceGroup.Kind` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Cpu => "KIND_CPU",
            InstanceKind::Gpu => "KIND_GPU",
        }
    }
}

/// What to write besides the graph.
#[derive(Clone, Debug)]
pub struct TritonOptions {
    /// The model's name and folder (`None`: the model file's stem).
    pub name: Option<String>,
    /// `max_batch_size` (>= 1).
    pub max_batch: u32,
    /// `dynamic_batching.preferred_batch_size` (each in 1..=max_batch; empty: `[max_batch]`).
    pub preferred_batch: Vec<u32>,
    /// `dynamic_batching.max_queue_delay_microseconds`.
    pub queue_delay_us: u64,
    /// `instance_group.count` (>= 1).
    pub instances: u32,
    /// `instance_group.kind`.
    pub kind: InstanceKind,
    /// Add the TensorRT execution accelerator of the ONNX Runtime backend (GPU kind only).
    pub tensorrt: bool,
    /// Export the optional `stated_class` input (see [`super::ExportOptions::class_input`]).
    pub class_input: bool,
}

impl Default for TritonOptions {
    fn default() -> Self {
        TritonOptions {
            name: None,
            max_batch: 8,
            preferred_batch: Vec::new(),
            queue_delay_us: 100,
            instances: 1,
            kind: InstanceKind::Gpu,
            tensorrt: false,
            class_input: false,
        }
    }
}

impl TritonOptions {
    /// Checks the numbers and combinations (the name is checked by [`check_model_name`]).
    pub fn check(&self) -> Result<()> {
        if self.max_batch == 0 {
            return Err(Error::config(
                "--max-batch",
                0,
                "must be at least 1: the graph's first dimension is the batch, which Triton's \
                 dynamic batcher fills",
            ));
        }
        if self.instances == 0 {
            return Err(Error::config(
                "--instances",
                0,
                "must be at least 1 (model instances per device)",
            ));
        }
        if let Some(p) = self
            .preferred_batch
            .iter()
            .find(|&&p| p == 0 || p > self.max_batch)
        {
            return Err(Error::config(
                "--preferred-batch",
                p,
                format!("must be in 1..={} (--max-batch)", self.max_batch),
            ));
        }
        if self.tensorrt && self.kind != InstanceKind::Gpu {
            return Err(Error::config(
                "--tensorrt",
                "true",
                "TensorRT runs on GPUs: use it with --kind gpu",
            ));
        }
        Ok(())
    }

    /// The model name: the given one, else `model`'s file stem; checked.
    pub fn model_name(&self, model: &Path) -> Result<String> {
        let name = match &self.name {
            Some(n) => n.clone(),
            None => model
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::config(
                        "--name",
                        model.display(),
                        "the model file's stem is not a usable name; give --name",
                    )
                })?,
        };
        check_model_name(&name)?;
        Ok(name)
    }
}

/// A Triton model name is one folder of the repository: not empty, not `.` or `..`, without
/// `/`, `\` or control characters.
pub fn check_model_name(name: &str) -> Result<()> {
    let bad = if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is not a folder name")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator ('/' or '\\'); the name is one folder of the repository")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    };
    match bad {
        Some(msg) => Err(Error::config("--name", format!("{name:?}"), msg)),
        None => Ok(()),
    }
}

/// One `input` or `output` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The graph's name of the tensor.
    pub name: String,
    /// Triton's data type (`TYPE_FP32`, `TYPE_INT64`, ...).
    pub data_type: &'static str,
    /// The graph's dims after the batch dimension (`-1`: variable).
    pub dims: Vec<i64>,
}

/// The `ModelConfig` written to `config.pbtxt` (the fields cras sets).
#[derive(Clone, Debug, PartialEq)]
pub struct TritonConfig {
    pub name: String,
    pub max_batch_size: u32,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub preferred_batch_size: Vec<u32>,
    pub max_queue_delay_microseconds: u64,
    pub instance_count: u32,
    pub kind: InstanceKind,
    pub tensorrt: bool,
    /// `parameters`, in the order written.
    pub parameters: Vec<(String, String)>,
}

/// The Triton data type of an ONNX tensor element type.
fn triton_type(elem: i32) -> Option<&'static str> {
    use pb::tensor_proto::DataType as D;
    Some(match D::try_from(elem).ok()? {
        D::Bool => "TYPE_BOOL",
        D::Uint8 => "TYPE_UINT8",
        D::Uint16 => "TYPE_UINT16",
        D::Uint32 => "TYPE_UINT32",
        D::Uint64 => "TYPE_UINT64",
        D::Int8 => "TYPE_INT8",
        D::Int16 => "TYPE_INT16",
        D::Int32 => "TYPE_INT32",
        D::Int64 => "TYPE_INT64",
        D::Float16 => "TYPE_FP16",
        D::Float => "TYPE_FP32",
        D::Double => "TYPE_FP64",
        D::String => "TYPE_STRING",
        D::Bfloat16 => "TYPE_BF16",
        _ => return None,
    })
}

/// The [`TensorSpec`] of a graph input or output whose first dimension is the batch.
fn tensor_spec(v: &pb::ValueInfoProto) -> Result<TensorSpec> {
    use pb::tensor_shape_proto::dimension::Value as DimValue;
    let name = v.name.clone().unwrap_or_default();
    let bad = |msg: &str| Error::Other(format!("ONNX graph tensor '{name}': {msg}"));
    let Some(pb::type_proto::Value::TensorType(t)) =
        v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(bad("not a tensor"));
    };
    let elem = t.elem_type.unwrap_or(0);
    let data_type = triton_type(elem)
        .ok_or_else(|| bad(&format!("element type {elem} has no Triton data type")))?;
    let dims = t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or(&[]);
    match dims.first().and_then(|d| d.value.as_ref()) {
        Some(DimValue::DimParam(_)) => {}
        _ => return Err(bad("the first dimension is not a symbolic batch dimension")),
    }
    let dims = dims[1..]
        .iter()
        .map(|d| match d.value {
            Some(DimValue::DimValue(n)) if n > 0 => n,
            _ => -1,
        })
        .collect();
    Ok(TensorSpec {
        name,
        data_type,
        dims,
    })
}

impl TritonConfig {
    /// The configuration of the serialised ONNX model `onnx` (inputs, outputs and parameters
    /// read from it) under `name` with `options` (checked).
    pub fn from_onnx(name: &str, onnx: &[u8], options: &TritonOptions) -> Result<Self> {
        options.check()?;
        check_model_name(name)?;
        let model = pb::ModelProto::decode(onnx)
            .map_err(|e| Error::Other(format!("the exported ONNX model does not decode: {e}")))?;
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| Error::Other("the exported ONNX model has no graph".into()))?;
        let initialisers: std::collections::HashSet<_> = graph
            .initializer
            .iter()
            .filter_map(|t| t.name.as_deref())
            .collect();
        let inputs = graph
            .input
            .iter()
            .filter(|v| !initialisers.contains(v.name.as_deref().unwrap_or_default()))
            .map(tensor_spec)
            .collect::<Result<Vec<_>>>()?;
        let outputs = graph
            .output
            .iter()
            .map(tensor_spec)
            .collect::<Result<_>>()?;
        let preferred = if options.preferred_batch.is_empty() {
            vec![options.max_batch]
        } else {
            options.preferred_batch.clone()
        };
        Ok(TritonConfig {
            name: name.to_string(),
            max_batch_size: options.max_batch,
            inputs,
            outputs,
            preferred_batch_size: preferred,
            max_queue_delay_microseconds: options.queue_delay_us,
            instance_count: options.instances,
            kind: options.kind,
            tensorrt: options.tensorrt,
            parameters: parameters(&model.metadata_props)?,
        })
    }

    /// The configuration in protobuf text format (see the module docs).
    pub fn to_pbtxt(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Triton model configuration written by cras {} (cras export --triton).",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(s, "name: {}", quote(&self.name));
        s.push_str("platform: \"onnxruntime_onnx\"\n");
        let _ = writeln!(s, "max_batch_size: {}", self.max_batch_size);
        write_tensors(&mut s, "input", &self.inputs);
        write_tensors(&mut s, "output", &self.outputs);
        let _ = writeln!(
            s,
            "dynamic_batching {{\n  preferred_batch_size: [ {} ]\n  max_queue_delay_microseconds: {}\n}}",
            join(&self.preferred_batch_size),
            self.max_queue_delay_microseconds
        );
        let _ = writeln!(
            s,
            "instance_group [\n  {{\n    count: {}\n    kind: {}\n  }}\n]",
            self.instance_count,
            self.kind.as_str()
        );
        if self.tensorrt {
            s.push_str(
                "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator [\n      {\n        \
                 name: \"tensorrt\"\n        parameters { key: \"precision_mode\" value: \"FP32\" }\n      }\n    ]\n  }\n}\n",
            );
        }
        for (k, v) in &self.parameters {
            let _ = writeln!(
                s,
                "parameters {{\n  key: {}\n  value {{ string_value: {} }}\n}}",
                quote(k),
                quote(v)
            );
        }
        s
    }
}

fn join(v: &[impl std::fmt::Display]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `field [ {...}, ... ]` for the tensors (a `[batch]` tensor: `dims: [ 1 ]` + empty reshape).
fn write_tensors(s: &mut String, field: &str, tensors: &[TensorSpec]) {
    use std::fmt::Write;
    let _ = writeln!(s, "{field} [");
    for (i, t) in tensors.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {{\n    name: {}\n    data_type: {}",
            quote(&t.name),
            t.data_type
        );
        if t.dims.is_empty() {
            s.push_str("    dims: [ 1 ]\n    reshape: { shape: [ ] }\n");
        } else {
            let _ = writeln!(s, "    dims: [ {} ]", join(&t.dims));
        }
        s.push_str(if i + 1 < tensors.len() {
            "  },\n"
        } else {
            "  }\n"
        });
    }
    s.push_str("]\n");
}

/// The `parameters` from the graph's `cras.*` metadata (see the module docs).
fn parameters(meta: &[pb::StringStringEntryProto]) -> Result<Vec<(String, String)>> {
    let get = |key: &str| {
        meta.iter()
            .find(|e| e.key.as_deref() == Some(key))
            .and_then(|e| e.value.clone())
            .ok_or_else(|| Error::Other(format!("the exported ONNX model has no {key} metadata")))
    };
    let bad = |key: &str, e: serde_json::Error| {
        Error::Other(format!(
            "the exported ONNX model's {key} metadata is not JSON: {e}"
        ))
    };
    let classes_json = get("cras.classes")?;
    let classes: Vec<String> =
        serde_json::from_str(&classes_json).map_err(|e| bad("cras.classes", e))?;
    let thresholds: serde_json::Value =
        serde_json::from_str(&get("cras.thresholds")?).map_err(|e| bad("cras.thresholds", e))?;
    let mut out = vec![("classes".to_string(), classes_json)];
    if let Some(per_class) = thresholds["per_class"].as_array() {
        for (class, t) in classes.iter().zip(per_class) {
            out.push((format!("threshold.{class}"), t.to_string()));
        }
        if let Some(m) = thresholds["method"].as_str() {
            out.push(("threshold_method".into(), m.to_string()));
        }
    }
    // Older graphs carry no measured bands; an empty list says none was measured.
    if let Some(bands) = meta
        .iter()
        .find(|e| e.key.as_deref() == Some("cras.precision_bands"))
        .and_then(|e| e.value.clone())
    {
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&bands).map_err(|e| bad("cras.precision_bands", e))?;
        if !list.is_empty() {
            out.push(("precision_bands".into(), bands));
        }
    }
    for (key, meta_key) in [
        ("preprocess", "cras.preprocess"),
        ("model_sha256", "cras.model_sha256"),
        ("cras_version", "cras.version"),
        ("cras_format", "cras.format"),
    ] {
        out.push((key.to_string(), get(meta_key)?));
    }
    Ok(out)
}

/// A protobuf text-format string literal: `"`-quoted, with `\"`, `\\`, `\'`, `\n`, `\r`, `\t`
/// and every other byte outside printable ASCII (UTF-8 included) as a 3-digit octal escape.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

/// What [`export_triton`] wrote.
#[derive(Clone, Debug)]
pub struct TritonSummary {
    /// `DIR/<name>`.
    pub model_dir: PathBuf,
    /// `DIR/<name>/config.pbtxt`.
    pub config_path: PathBuf,
    /// `DIR/<name>/1/model.onnx`.
    pub onnx_path: PathBuf,
    /// The ONNX export's summary.
    pub onnx: ExportSummary,
    /// The configuration written.
    pub config: TritonConfig,
}

/// Exports the model file `model` into the Triton model repository `repo` (see the module
/// docs). The options and the name are checked before anything is read or written.
pub fn export_triton(model: &Path, repo: &Path, options: &TritonOptions) -> Result<TritonSummary> {
    options.check()?;
    let name = options.model_name(model)?;
    let model_dir = repo.join(&name);
    let onnx_path = model_dir.join("1").join("model.onnx");
    let config_path = model_dir.join("config.pbtxt");
    let onnx = super::export_file(model, &onnx_path, options.class_input, false)?;
    let bytes = std::fs::read(&onnx_path).map_err(|e| Error::io(&onnx_path, e))?;
    let config = TritonConfig::from_onnx(&name, &bytes, options)?;
    crate::fsio::write_atomic(&config_path, config.to_pbtxt().as_bytes())?;
    Ok(TritonSummary {
        model_dir,
        config_path,
        onnx_path,
        onnx,
        config,
    })
}

#[cfg(test)]
#[path = "triton_tests.rs"]
mod tests;
