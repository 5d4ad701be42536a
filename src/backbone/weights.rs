//! Weight files: reading torchvision state dicts (`.pth` in the legacy pre-1.6 pickle format or
//! the zip format, via `pytorch-reader`; or `.safetensors`) into `name -> Tensor` (f32, CPU),
//! writing safetensors atomically, hashing files and recognising the architecture of a state
//! dict. Every error names the file.

use super::topology::{check_tensors, Topology};
use super::{Arch, Layer};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Container format of a weight file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// PyTorch zip (torch.save since 1.6).
    PthZip,
    /// PyTorch legacy pickle stream (before 1.6; torchvision's ImageNet files).
    PthLegacy,
    /// PyTorch tar (before 0.1.10) or bare pickle.
    PthOther,
    /// safetensors.
    Safetensors,
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WeightFormat::PthZip => "PyTorch zip (.pth, torch >= 1.6)",
            WeightFormat::PthLegacy => "PyTorch legacy pickle (.pth, torch < 1.6)",
            WeightFormat::PthOther => "PyTorch tar/pickle",
            WeightFormat::Safetensors => "safetensors",
        })
    }
}

/// Whether a state-dict entry is never used by the backbone (classifier, BN step counters).
pub fn is_ignored_entry(name: &str) -> bool {
    name.starts_with("fc.") || name.ends_with(".num_batches_tracked")
}

fn looks_like_safetensors(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 9];
    match f.read_exact(&mut head) {
        Ok(()) => Ok(head[8] == b'{'),
        Err(_) => Ok(false),
    }
}

/// Reads a state dict into `name -> Tensor` (f32, CPU), with the file's container format.
pub fn read_state_dict_with_format(path: &Path) -> Result<(WeightFormat, HashMap<String, Tensor>)> {
    if looks_like_safetensors(path)? {
        return Ok((WeightFormat::Safetensors, read_safetensors(path)?));
    }
    let reader = pytorch_reader::PytorchReader::new(path).map_err(|e| {
        Error::weights(
            path,
            format!("not a readable PyTorch or safetensors file: {e}"),
        )
    })?;
    let format = match reader.metadata().format_type {
        pytorch_reader::FileFormat::Zip => WeightFormat::PthZip,
        pytorch_reader::FileFormat::Legacy => WeightFormat::PthLegacy,
        _ => WeightFormat::PthOther,
    };
    let mut out = HashMap::new();
    for (name, t) in reader.tensors() {
        let bytes = t
            .read()
            .map_err(|e| Error::weights(path, format!("reading tensor {name}: {e}")))?;
        let values = to_f32(&bytes, t.dtype())
            .map_err(|m| Error::weights(path, format!("tensor {name}: {m}")))?;
        let tensor = Tensor::from_vec(values, t.shape(), &Device::Cpu)?;
        out.insert(name.clone(), tensor);
    }
    Ok((format, out))
}

/// Reads a torchvision state dict (`.pth` legacy or zip, or `.safetensors`) into
/// `name -> Tensor` (f32, CPU). Integer entries (`num_batches_tracked`) are converted too.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>> {
    read_state_dict_with_format(path).map(|(_, t)| t)
}

fn to_f32(bytes: &[u8], dtype: pytorch_reader::DType) -> std::result::Result<Vec<f32>, String> {
    use pytorch_reader::DType as D;
    let chunks = |n: usize| bytes.chunks_exact(n);
    Ok(match dtype {
        D::F32 => chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        D::F64 => chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        D::F16 => chunks(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        D::BF16 => chunks(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        D::I64 => chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        D::I32 => chunks(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
            .collect(),
        other => return Err(format!("unsupported element type {other:?}")),
    })
}

fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    use safetensors::Dtype;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::weights(path, format!("invalid safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            Dtype::F32 => pytorch_reader::DType::F32,
            Dtype::F64 => pytorch_reader::DType::F64,
            Dtype::F16 => pytorch_reader::DType::F16,
            Dtype::BF16 => pytorch_reader::DType::BF16,
            Dtype::I64 => pytorch_reader::DType::I64,
            Dtype::I32 => pytorch_reader::DType::I32,
            other => {
                return Err(Error::weights(
                    path,
                    format!("tensor {name}: unsupported element type {other:?}"),
                ))
            }
        };
        let values = to_f32(view.data(), dtype)
            .map_err(|m| Error::weights(path, format!("tensor {name}: {m}")))?;
        out.insert(
            name.clone(),
            Tensor::from_vec(values, view.shape(), &Device::Cpu)?,
        );
    }
    Ok(out)
}

/// Serialises tensors (converted to f32) as safetensors bytes, names sorted.
pub fn safetensors_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let values: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((name.clone(), t.dims().to_vec(), bytes));
    }
    data.sort_by(|a, b| a.0.cmp(&b.0));
    let views = data
        .iter()
        .map(|(n, shape, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Other(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None)
        .map_err(|e| Error::Other(format!("safetensors serialisation: {e}")))
}

/// Writes tensors as an f32 safetensors file, atomically.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let bytes = safetensors_bytes(tensors)?;
    crate::fsio::write_atomic(path, &bytes)
}

/// SHA-256 of a file's bytes, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Shapes of a state dict's entries.
pub fn shapes(tensors: &HashMap<String, Tensor>) -> HashMap<String, Vec<usize>> {
    tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect()
}

/// The standard architecture whose full state dict (through layer4) matches these shapes, if any.
pub fn detect_arch(shapes: &HashMap<String, Vec<usize>>) -> Option<Arch> {
    Arch::ALL.into_iter().find(|&arch| {
        Topology::new(arch, None)
            .map(|t| {
                check_tensors(&t.expected_state(Layer::L4), shapes, is_ignored_entry).is_none()
            })
            .unwrap_or(false)
    })
}
