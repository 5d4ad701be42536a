//! The checkpoint container: ONE safetensors file whose header metadata holds a JSON document
//! under the key `cras` (format version, configuration, class names in order, backbone
//! provenance, preprocessing, thresholds, training statistics) and whose tensors are the center
//! bank, the head, optionally the optimiser state (for `--resume`) and the folded backbone.
//! Written atomically (temp file + rename).
//!
//! Tensor names: `centers` [K, P, D]; the head under the reference's names
//! (`pre_projection.*`, `discriminator.*`); optimiser moments `optim.{adaptor,discriminator}.{m,v}.{i}`;
//! backbone tensors under `backbone.`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::train::fit::HeadState;
use crate::{Error, Result};

/// The metadata key holding the JSON document.
pub const META_KEY: &str = "cras";

/// A checkpoint read back: its JSON document and tensors (on the CPU, f32).
pub struct CheckpointFile {
    pub meta: serde_json::Value,
    pub tensors: HashMap<String, Tensor>,
}

/// Writes `tensors` (any device; stored as f32) and `meta` to `path` atomically.
pub fn write(path: &Path, meta: &serde_json::Value, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut host = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
        host.push((name.clone(), t.dims().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = host
        .iter()
        .map(|(n, shape, data)| {
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(data),
            )
            .map(|v| (n.clone(), v))
            .map_err(|e| Error::checkpoint(path, format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let mut info = HashMap::new();
    info.insert(META_KEY.to_string(), meta.to_string());
    let bytes = safetensors::serialize(views, Some(info))
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    crate::error::write_atomic(path, &bytes)
}

/// Reads a checkpoint written by [`write`].
pub fn read(path: &Path) -> Result<CheckpointFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
        Error::checkpoint(path, format!("not a cras model (safetensors header: {e})"))
    })?;
    let meta_text = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| {
            Error::checkpoint(
                path,
                "a safetensors file without cras metadata: not a model written by `cras train`",
            )
        })?;
    let meta: serde_json::Value = serde_json::from_str(meta_text)
        .map_err(|e| Error::checkpoint(path, format!("metadata is not valid JSON: {e}")))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(Error::checkpoint(
                path,
                format!("tensor {name} has dtype {:?}, expected F32", view.dtype()),
            ));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name, Tensor::from_vec(data, view.shape(), &Device::Cpu)?);
    }
    Ok(CheckpointFile { meta, tensors })
}

/// The head's tensors, plus the optimiser state when `with_optimiser`.
pub fn head_tensors(state: &HeadState, with_optimiser: bool) -> Vec<(String, Tensor)> {
    let mut out = state.adaptor.named();
    out.extend(state.discriminator.named());
    if with_optimiser {
        for (tag, opt) in [
            ("adaptor", &state.opt_adaptor),
            ("discriminator", &state.opt_discriminator),
        ] {
            let (m, v) = opt.moments();
            for (i, t) in m.iter().enumerate() {
                out.push((format!("optim.{tag}.m.{i}"), t.clone()));
            }
            for (i, t) in v.iter().enumerate() {
                out.push((format!("optim.{tag}.v.{i}"), t.clone()));
            }
        }
    }
    out
}

/// Restores optimiser moments saved by [`head_tensors`]; `steps` per optimiser.
pub fn restore_optimisers(
    state: &mut HeadState,
    tensors: &HashMap<String, Tensor>,
    steps: (u64, u64),
    device: &Device,
) -> Result<()> {
    for (tag, step) in [("adaptor", steps.0), ("discriminator", steps.1)] {
        let opt = if tag == "adaptor" {
            &mut state.opt_adaptor
        } else {
            &mut state.opt_discriminator
        };
        let n = opt.vars().len();
        let get = |kind: &str, i: usize| -> Result<Tensor> {
            let name = format!("optim.{tag}.{kind}.{i}");
            Ok(tensors
                .get(&name)
                .ok_or_else(|| {
                    Error::Other(format!(
                        "checkpoint has no optimiser tensor {name}: it cannot be resumed"
                    ))
                })?
                .to_device(device)?)
        };
        let m = (0..n).map(|i| get("m", i)).collect::<Result<Vec<_>>>()?;
        let v = (0..n).map(|i| get("v", i)).collect::<Result<Vec<_>>>()?;
        opt.restore(m, v, step)?;
    }
    Ok(())
}

/// Moves every tensor of a map to `device`.
pub fn to_device(
    map: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    map.iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(device)?)))
        .collect()
}
