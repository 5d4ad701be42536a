//! [`ModelSlot`]: the model being served, swappable at run time.
//!
//! Readers take an `Arc<LoadedModel>` snapshot ([`ModelSlot::current`]) and keep using it for
//! the whole batch, so a reload never changes the model under a running batch. A reload
//! ([`ModelSlot::reload`]) loads the new file beside the old one and swaps the pointer only when
//! the load succeeded; on failure the old model keeps serving and the error says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use candle_core::Device;

use crate::infer::engine::EngineOptions;
use crate::infer::Predictor;
use crate::Result;

/// One loaded model with where it came from.
pub struct LoadedModel {
    /// The predictor.
    pub predictor: Predictor,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// 1 for the model loaded at start, +1 per successful reload.
    pub generation: u64,
    /// When it was loaded (seconds since the Unix epoch).
    pub loaded_unix: u64,
}

/// The served model behind an atomically swapped pointer.
pub struct ModelSlot {
    current: RwLock<Arc<LoadedModel>>,
    device: Device,
    engine: EngineOptions,
}

impl ModelSlot {
    /// Loads the model at `path` onto `device`, scored by the engine `engine` asks for.
    pub fn load(path: &Path, device: &Device, engine: &EngineOptions) -> Result<Self> {
        let predictor = Predictor::load_with(path, device, engine)?;
        let model = LoadedModel {
            predictor,
            path: path.to_path_buf(),
            generation: 1,
            loaded_unix: crate::model::file::now_unix(),
        };
        Ok(Self {
            current: RwLock::new(Arc::new(model)),
            device: device.clone(),
            engine: *engine,
        })
    }

    /// The model serving now.
    pub fn current(&self) -> Arc<LoadedModel> {
        // A poisoned lock only means a panic elsewhere while holding it; the pointer is intact.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads the model at `path` beside the current one and swaps it in; returns the new
    /// generation. On error the current model stays.
    pub fn reload(&self, path: &Path) -> Result<u64> {
        let predictor = Predictor::load_with(path, &self.device, &self.engine)?;
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        let generation = slot.generation + 1;
        *slot = Arc::new(LoadedModel {
            predictor,
            path: path.to_path_buf(),
            generation,
            loaded_unix: crate::model::file::now_unix(),
        });
        Ok(generation)
    }
}
