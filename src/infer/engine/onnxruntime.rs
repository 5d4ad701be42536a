//! ONNX Runtime (CPU execution provider) running the exported graph, through the `ort` crate
//! with the library loaded at run time ([`super::library::onnxruntime`]).
//!
//! Input: the named feeds of a graph run ([`super::Feed`], images `[B,3,S,S]` f32, class indices
//! `[B]` i64, or descriptors); output: the outputs asked for ([`super::Fetched`]).
//! Precision: f32, or int8 (the graph's QDQ form, which ONNX Runtime's graph optimiser turns
//! into integer kernels); no bf16 (its CPU provider has no bf16 convolution kernels).

use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::library;
use super::{EngineKind, EngineOptions, Feed, Fetched, GraphRuntime, Precision, Values};
use crate::{Error, Result};

/// The process-wide ONNX Runtime environment (the library can be loaded only once).
fn environment() -> Result<(&'static ort::environment::Environment, &'static str)> {
    static ENV: OnceLock<std::result::Result<(ort::environment::Environment, String), String>> =
        OnceLock::new();
    let env = ENV.get_or_init(|| {
        let lib = library::onnxruntime().map_err(|e| e.to_string())?;
        let desc = format!("{} (found via {})", lib.path.display(), lib.how);
        // `ort` panics when the library is older than the API version it was built for; turn
        // that into an error that names the library.
        let built = std::panic::catch_unwind(|| {
            ort::init_from(&lib.path)
                .map_err(|e| e.to_string())?
                .with_name("cras")
                .build()
                .map_err(|e| e.to_string())
        });
        match built {
            Ok(Ok(env)) => Ok((env, desc)),
            Ok(Err(e)) => Err(format!("{}: ONNX Runtime could not start: {e}", lib.path.display())),
            Err(_) => Err(format!(
                "{}: this ONNX Runtime is too old or not a valid ONNX Runtime library (cras needs 1.{} or newer)",
                lib.path.display(),
                ort::MINOR_VERSION
            )),
        }
    });
    match env {
        Ok((env, desc)) => Ok((env, desc.as_str())),
        Err(e) => Err(Error::Other(e.clone())),
    }
}

/// An ONNX Runtime session on the exported graph.
pub struct OrtRuntime {
    session: Session,
    precision: Precision,
    description: String,
}

fn ort_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("onnxruntime: {what}: {e}"))
}

impl OrtRuntime {
    /// Builds a session from the graph's bytes.
    pub fn new(onnx: &[u8], options: &EngineOptions) -> Result<Self> {
        if options.precision == Precision::Bf16 {
            return Err(Error::config(
                "precision",
                options.precision,
                "ONNX Runtime's CPU provider has no bf16 convolutions; use --engine openvino for \
                 bf16, or --precision int8",
            ));
        }
        let (env, lib) = environment()?;
        let threads = options.thread_count();
        let session = Session::builder(env)
            .map_err(|e| ort_error("session options", e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| ort_error("optimisation level", e))?
            .with_intra_threads(threads)
            .map_err(|e| ort_error("threads", e))?
            .with_inter_threads(1)
            .map_err(|e| ort_error("threads", e))?
            .commit_from_memory(onnx)
            .map_err(|e| ort_error("loading the exported graph", e))?;
        let precision = match options.precision {
            Precision::Int8 => "int8 (QDQ)",
            _ => "f32",
        };
        Ok(Self {
            session,
            precision: options.precision,
            description: format!(
                "onnxruntime, CPU provider, {precision}, {threads} threads, {lib}"
            ),
        })
    }
}

impl GraphRuntime for OrtRuntime {
    fn run_graph(&mut self, feeds: &[Feed<'_>], outputs: &[&str]) -> Result<Vec<Fetched>> {
        let mut inputs = Vec::with_capacity(feeds.len());
        for feed in feeds {
            let shape = feed.shape.clone();
            let value: ort::session::SessionInputValue<'_> = match feed.values {
                Values::F32(v) => TensorRef::from_array_view((shape, v))
                    .map_err(|e| ort_error(feed.name, e))?
                    .into(),
                Values::I64(v) => TensorRef::from_array_view((shape, v))
                    .map_err(|e| ort_error(feed.name, e))?
                    .into(),
            };
            inputs.push((std::borrow::Cow::Borrowed(feed.name), value));
        }
        let out = self
            .session
            .run(inputs)
            .map_err(|e| ort_error("running the graph", e))?;
        outputs
            .iter()
            .map(|&name| {
                let v = out
                    .get(name)
                    .ok_or_else(|| ort_error("graph outputs", format!("no output {name}")))?;
                if let Ok((_, data)) = v.try_extract_tensor::<i64>() {
                    return Ok(Fetched::I64(data.to_vec()));
                }
                Ok(Fetched::F32(
                    v.try_extract_tensor::<f32>()
                        .map_err(|e| ort_error(name, e))?
                        .1
                        .to_vec(),
                ))
            })
            .collect()
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn kind(&self) -> EngineKind {
        EngineKind::OnnxRuntime
    }

    fn precision(&self) -> Precision {
        self.precision
    }
}
