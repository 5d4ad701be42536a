//! The training feature cache. The backbone is frozen and training images are not augmented,
//! so each image's patch descriptors g [P, D] are computed once and reused in every epoch.
//!
//! Storage: in memory when `len * P * D * bytes` fits the budget, else a memory-mapped
//! temporary file on disk (deleted when the cache is dropped). Element type f32 (exact: training
//! with and without the cache gives the same model) or f16 (half the memory).
//! `batch(indices)` returns an f32 tensor [b, P, D] on the requested device.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use half::f16;

use crate::{Error, Result};

/// Storage precision of cached descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CachePrecision {
    F32,
    F16,
}

impl CachePrecision {
    fn bytes(self) -> usize {
        match self {
            CachePrecision::F32 => 4,
            CachePrecision::F16 => 2,
        }
    }
}

enum Storage {
    Memory(Vec<u8>),
    Mapped {
        map: memmap2::MmapMut,
        _file: tempfile::NamedTempFile,
    },
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Memory(v) => v,
            Storage::Mapped { map, .. } => map,
        }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Storage::Memory(v) => v,
            Storage::Mapped { map, .. } => map,
        }
    }
}

/// Descriptors of `len` images, each [rows, dims].
pub struct FeatureCache {
    len: usize,
    rows: usize,
    dims: usize,
    precision: CachePrecision,
    storage: Storage,
    filled: Vec<bool>,
}

impl FeatureCache {
    /// Allocates the cache in memory if it fits `budget_bytes`, else in a memory-mapped file
    /// created in `spill_dir` (the system temp folder when None).
    pub fn new(
        len: usize,
        rows: usize,
        dims: usize,
        precision: CachePrecision,
        budget_bytes: u64,
        spill_dir: Option<&Path>,
    ) -> Result<Self> {
        let total = (len as u64) * (rows as u64) * (dims as u64) * precision.bytes() as u64;
        let storage = if total <= budget_bytes {
            Storage::Memory(vec![0u8; total as usize])
        } else {
            let dir = spill_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(std::env::temp_dir);
            let file = tempfile::Builder::new()
                .prefix("cras-feature-cache-")
                .tempfile_in(&dir)
                .map_err(|e| Error::io(&dir, e))?;
            file.as_file()
                .set_len(total)
                .map_err(|e| Error::io(file.path(), e))?;
            // SAFETY: the file is a private temporary file created just above and owned by this
            // struct; nothing else maps or truncates it while the map lives.
            let map = unsafe { memmap2::MmapMut::map_mut(file.as_file()) }
                .map_err(|e| Error::io(file.path(), e))?;
            tracing::info!(
                bytes = total,
                path = %file.path().display(),
                "feature cache exceeds the memory budget: using a memory-mapped file"
            );
            Storage::Mapped { map, _file: file }
        };
        Ok(Self {
            len,
            rows,
            dims,
            precision,
            storage,
            filled: vec![false; len],
        })
    }

    /// Whether the cache lives in a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the cache holds no images.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows (patch positions) per image.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Descriptor width.
    pub fn dims(&self) -> usize {
        self.dims
    }

    fn item_bytes(&self) -> usize {
        self.rows * self.dims * self.precision.bytes()
    }

    /// Stores image `i`'s descriptors g [rows, dims].
    pub fn put(&mut self, i: usize, g: &Tensor) -> Result<()> {
        if i >= self.len {
            return Err(Error::Other(format!(
                "feature cache index {i} out of range ({} images)",
                self.len
            )));
        }
        let dims = g.dims();
        if dims != [self.rows, self.dims] {
            return Err(Error::Other(format!(
                "feature cache expects [{}, {}] descriptors, got {dims:?}",
                self.rows, self.dims
            )));
        }
        let v: Vec<f32> = g.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let n = self.item_bytes();
        let precision = self.precision;
        let dst = &mut self.storage.bytes_mut()[i * n..(i + 1) * n];
        match precision {
            CachePrecision::F32 => dst.copy_from_slice(bytemuck::cast_slice(&v)),
            CachePrecision::F16 => {
                for (chunk, x) in dst.chunks_exact_mut(2).zip(&v) {
                    chunk.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
                }
            }
        }
        self.filled[i] = true;
        Ok(())
    }

    /// Decodes, preprocesses and describes the images at `paths` (streamed in batches of 16)
    /// and stores their descriptors as images 0.. in order (a tiled preprocessing: every tile
    /// of every image, in order).
    pub fn fill_from_images(
        &mut self,
        extractor: &crate::features::FeatureExtractor,
        paths: &[std::path::PathBuf],
        pre: &crate::data::Preprocess,
        progress: bool,
        device: &Device,
    ) -> Result<()> {
        let mut i = 0;
        // 16 network inputs per batch: 16 images, or one tiled image's tiles at a time.
        let images_per_batch = pre.images_per_batch(16);
        for batch in
            crate::data::loader::batches(paths.to_vec(), pre.clone(), images_per_batch, progress)
        {
            let batch = batch?;
            let g = extractor.descriptors(&batch.to_tensor(device)?)?;
            for j in 0..batch.len() * batch.views {
                self.put(i, &g.get(j)?)?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Descriptors of the given images as f32 [b, rows, dims] on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Tensor> {
        let n = self.item_bytes();
        let per = self.rows * self.dims;
        let mut out = Vec::with_capacity(indices.len() * per);
        let bytes = self.storage.bytes();
        for &i in indices {
            if i >= self.len || !self.filled[i] {
                return Err(Error::Other(format!(
                    "feature cache has no descriptors for image {i}"
                )));
            }
            let src = &bytes[i * n..(i + 1) * n];
            match self.precision {
                CachePrecision::F32 => out.extend(
                    src.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                ),
                CachePrecision::F16 => out.extend(
                    src.chunks_exact(2)
                        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
                ),
            }
        }
        Ok(Tensor::from_vec(
            out,
            (indices.len(), self.rows, self.dims),
            device,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Tensor {
        let v: Vec<f32> = (0..12).map(|j| (i * 100 + j) as f32 * 0.37 - 3.0).collect();
        Tensor::from_vec(v, (3, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn memory_and_mapped_f32_are_exact_and_equal() {
        let mut mem = FeatureCache::new(5, 3, 4, CachePrecision::F32, u64::MAX, None).unwrap();
        let mut map = FeatureCache::new(5, 3, 4, CachePrecision::F32, 0, None).unwrap();
        assert!(!mem.is_mapped() && map.is_mapped());
        for i in 0..5 {
            mem.put(i, &sample(i)).unwrap();
            map.put(i, &sample(i)).unwrap();
        }
        let a: Vec<f32> = mem
            .batch(&[4, 1], &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = map
            .batch(&[4, 1], &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut want: Vec<f32> = sample(4).flatten_all().unwrap().to_vec1().unwrap();
        want.extend(sample(1).flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(a, want);
        assert_eq!(b, want);
    }

    #[test]
    fn f16_is_close_and_errors_are_clear() {
        let mut c = FeatureCache::new(2, 3, 4, CachePrecision::F16, u64::MAX, None).unwrap();
        c.put(0, &sample(0)).unwrap();
        let got: Vec<f32> = c
            .batch(&[0], &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want: Vec<f32> = sample(0).flatten_all().unwrap().to_vec1().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-3 * w.abs().max(1.0), "{g} vs {w}");
        }
        let err = c.batch(&[1], &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("no descriptors for image 1"), "{err}");
        let bad = Tensor::zeros((2, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(c.put(0, &bad).unwrap_err().to_string().contains("[3, 4]"));
    }
}
