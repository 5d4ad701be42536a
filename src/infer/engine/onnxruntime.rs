//! ONNX Runtime (CPU execution provider) running the exported graph, through the `ort` crate
//! with the library loaded at run time ([`super::library::onnxruntime`]).
//!
//! Input: images `[B,3,S,S]` f32 and class indices `[B]` i64; output: [`GraphOutputs`].
//! Precision: f32 only (ONNX Runtime's CPU provider has no bf16 convolution kernels).

use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::{library, names, EngineKind, EngineOptions, GraphOutputs, GraphRuntime, Precision};
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
    description: String,
}

fn ort_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("onnxruntime: {what}: {e}"))
}

impl OrtRuntime {
    /// Builds a session from the graph's bytes.
    pub fn new(onnx: &[u8], options: &EngineOptions) -> Result<Self> {
        if options.precision != Precision::F32 {
            return Err(Error::config(
                "precision",
                options.precision,
                "ONNX Runtime's CPU provider runs this graph in f32 only; use --engine openvino for bf16",
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
        Ok(Self {
            session,
            description: format!("onnxruntime, CPU provider, f32, {threads} threads, {lib}"),
        })
    }
}

impl GraphRuntime for OrtRuntime {
    fn run(
        &mut self,
        images: &[f32],
        batch: usize,
        side: usize,
        classes: &[i64],
    ) -> Result<GraphOutputs> {
        let image = TensorRef::from_array_view(([batch, 3, side, side], images))
            .map_err(|e| ort_error("image tensor", e))?;
        let class = TensorRef::from_array_view(([batch], classes))
            .map_err(|e| ort_error("class tensor", e))?;
        let outputs = self
            .session
            .run(ort::inputs![names::IMAGE => image, names::CLASS_INDEX_IN => class])
            .map_err(|e| ort_error("running the graph", e))?;
        let f32s = |name: &str| -> Result<Vec<f32>> {
            let v = outputs
                .get(name)
                .ok_or_else(|| ort_error("graph outputs", format!("no output {name}")))?;
            Ok(v.try_extract_tensor::<f32>()
                .map_err(|e| ort_error(name, e))?
                .1
                .to_vec())
        };
        let i64s = |name: &str| -> Result<Vec<i64>> {
            let v = outputs
                .get(name)
                .ok_or_else(|| ort_error("graph outputs", format!("no output {name}")))?;
            Ok(v.try_extract_tensor::<i64>()
                .map_err(|e| ort_error(name, e))?
                .1
                .to_vec())
        };
        GraphOutputs::read(f32s, i64s)
    }

    fn run_discarding(&mut self, images: &[f32], batch: usize, side: usize) -> Result<()> {
        let image = TensorRef::from_array_view(([batch, 3, side, side], images))
            .map_err(|e| ort_error("image tensor", e))?;
        self.session
            .run(ort::inputs![names::IMAGE => image])
            .map_err(|e| ort_error("running the graph", e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn kind(&self) -> EngineKind {
        EngineKind::OnnxRuntime
    }

    fn precision(&self) -> Precision {
        Precision::F32
    }
}
