//! OpenVINO (CPU plugin) running the exported graph, through the `openvino` crate with the
//! library loaded at run time ([`super::library::openvino`]).
//!
//! Input: the named feeds of a graph run ([`super::Feed`], images `[B,3,S,S]` f32, class indices
//! `[B]` i64, or descriptors); output: the outputs asked for ([`super::Fetched`]).
//! Precision: `f32`, `bf16` (OpenVINO's inference precision hint: matrix products and
//! convolutions in bf16 on CPUs with AMX / AVX-512 BF16, f32 accumulation), or `int8` (the
//! graph's QDQ form, which OpenVINO's low-precision transformations turn into integer
//! convolutions; the rest at f32).

use std::sync::OnceLock;

use openvino::{
    CompiledModel, Core, DeviceType, ElementType, InferRequest, PropertyKey, RwPropertyKey, Shape,
    Tensor,
};

use super::{
    library, names, EngineKind, EngineOptions, Feed, Fetched, GraphRuntime, Precision, Values,
};
use crate::{Error, Result};

fn ov_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("openvino: {what}: {e}"))
}

/// Loads the OpenVINO C library once per process; returns where it was found.
fn load_library() -> Result<&'static str> {
    static LOADED: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let lib = library::openvino().map_err(|e| e.to_string())?;
        openvino_sys::library::load_from(lib.path.clone())
            .map_err(|e| format!("{}: OpenVINO could not be loaded: {e}", lib.path.display()))?;
        Ok(format!("{} (found via {})", lib.path.display(), lib.how))
    });
    match loaded {
        Ok(desc) => Ok(desc.as_str()),
        Err(e) => Err(Error::Other(e.clone())),
    }
}

/// Whether OpenVINO's CPU plugin runs bf16 natively here (`BF16` among the CPU's optimization
/// capabilities: AMX or AVX-512 BF16).
pub fn cpu_has_bf16() -> Result<bool> {
    load_library()?;
    let core = Core::new().map_err(|e| ov_error("starting the runtime", e))?;
    let caps = core
        .get_property(&DeviceType::CPU, &PropertyKey::DeviceCapabilities)
        .map_err(|e| ov_error("reading the CPU's capabilities", e))?;
    Ok(caps
        .split_whitespace()
        .any(|c| c.eq_ignore_ascii_case("BF16")))
}

/// A compiled OpenVINO model on the CPU with one inference request.
pub struct OvRuntime {
    // Field order matters for drop order: the request before the model before the core.
    request: InferRequest,
    _model: CompiledModel,
    _core: Core,
    precision: Precision,
    description: String,
}

impl OvRuntime {
    /// Reads the graph's bytes and compiles it for the CPU.
    pub fn new(onnx: &[u8], options: &EngineOptions) -> Result<Self> {
        let lib = load_library()?;
        let mut core = Core::new().map_err(|e| ov_error("starting the runtime", e))?;
        let threads = options.thread_count();
        // An int8 graph carries its own precision (QDQ); what it leaves in float runs at f32.
        let hint = match options.precision {
            Precision::F32 | Precision::Int8 => "f32",
            Precision::Bf16 => "bf16",
        };
        let props = [
            (RwPropertyKey::HintInferencePrecision, hint.to_string()),
            (RwPropertyKey::InferenceNumThreads, threads.to_string()),
            (RwPropertyKey::HintPerformanceMode, "LATENCY".to_string()),
        ];
        for (key, value) in &props {
            core.set_property(&DeviceType::CPU, key, value)
                .map_err(|e| ov_error(&format!("setting {} = {value}", key.as_ref()), e))?;
        }
        let model = core
            .read_model_from_buffer(onnx, None)
            .map_err(|e| ov_error("reading the exported graph", e))?;
        let mut compiled = core
            .compile_model(&model, DeviceType::CPU)
            .map_err(|e| ov_error("compiling the graph for the CPU", e))?;
        let actual = compiled
            .get_property(&PropertyKey::Rw(RwPropertyKey::HintInferencePrecision))
            .map(|s| s.to_string())
            .unwrap_or_else(|_| hint.to_string());
        if options.precision == Precision::Bf16 && !actual.eq_ignore_ascii_case("bf16") {
            return Err(Error::config(
                "precision",
                "bf16",
                format!("this CPU does not run bf16 in OpenVINO (it chose {actual}); use --precision f32"),
            ));
        }
        let request = compiled
            .create_infer_request()
            .map_err(|e| ov_error("creating an inference request", e))?;
        let version = openvino::version();
        Ok(Self {
            request,
            _model: compiled,
            _core: core,
            precision: options.precision,
            description: format!(
                "openvino {}, CPU plugin, {}, {threads} threads, {lib}",
                version.build_number,
                if options.precision == Precision::Int8 {
                    "int8 (QDQ)".to_string()
                } else {
                    actual
                }
            ),
        })
    }
}

fn tensor_from<T: Copy>(element: ElementType, shape: &[i64], data: &[T]) -> Result<Tensor> {
    let shape = Shape::new(shape).map_err(|e| ov_error("shape", e))?;
    let mut t = Tensor::new(element, &shape).map_err(|e| ov_error("tensor", e))?;
    let dst = t
        .get_data_mut::<T>()
        .map_err(|e| ov_error("tensor data", e))?;
    if dst.len() != data.len() {
        return Err(ov_error(
            "tensor data",
            format!("{} values for a tensor of {}", data.len(), dst.len()),
        ));
    }
    dst.copy_from_slice(data);
    Ok(t)
}

impl GraphRuntime for OvRuntime {
    fn run_graph(&mut self, feeds: &[Feed<'_>], outputs: &[&str]) -> Result<Vec<Fetched>> {
        for feed in feeds {
            let shape: Vec<i64> = feed.shape.iter().map(|&d| d as i64).collect();
            let tensor = match feed.values {
                Values::F32(v) => tensor_from(ElementType::F32, &shape, v)?,
                Values::I64(v) => tensor_from(ElementType::I64, &shape, v)?,
            };
            self.request.set_tensor(feed.name, &tensor).map_err(|e| {
                let hint = if feed.name == names::CLASS_INDEX_IN {
                    " (export the graph with --class-input)"
                } else {
                    ""
                };
                ov_error(&format!("input {}{hint}", feed.name), e)
            })?;
        }
        self.request
            .infer()
            .map_err(|e| ov_error("running the graph", e))?;
        outputs
            .iter()
            .map(|&name| {
                let t = self
                    .request
                    .get_tensor(name)
                    .map_err(|e| ov_error(name, e))?;
                let element = t.get_element_type().map_err(|e| ov_error(name, e))?;
                Ok(if element == ElementType::I64 {
                    Fetched::I64(t.get_data::<i64>().map_err(|e| ov_error(name, e))?.to_vec())
                } else {
                    Fetched::F32(t.get_data::<f32>().map_err(|e| ov_error(name, e))?.to_vec())
                })
            })
            .collect()
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn kind(&self) -> EngineKind {
        EngineKind::OpenVino
    }

    fn precision(&self) -> Precision {
        self.precision
    }
}
