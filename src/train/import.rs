//! Import of the authors' released models (`cras import-reference`): their checkpoint
//! (`ckpt_best_<epoch>.pth`, a dict `{"discriminator": state_dict, "pre_projection":
//! state_dict}` saved by `torch.save`), their center bank (`center.pth`, one tensor
//! `[K,P,D]`: K classes in training order, P patch positions, D dimensions) and the backbone
//! weight file they used, written as one self-contained cras model file.
//!
//! The checkpoint's nested names (`pre_projection.layers.0fc.weight`,
//! `discriminator.body.block1.0.weight`, ..., `discriminator.tail.0.weight`) are cras's own
//! head names. The backbone's BatchNorm statistics follow [`BnStats`]: `Reference` (the
//! default) reproduces the one all-ones forward the authors' code runs at load, at the input
//! size, so features equal theirs. The checkpoint holds no thresholds and no training figures;
//! a file named `ckpt_best_*` was chosen on the test set by their trainer, and the model is
//! marked "test-selected" then.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use super::config::TrainConfig;
use super::pipeline::training_extractor;
use crate::backbone::weights::{read_state_dict, sha256_file};
use crate::backbone::{Arch, BnStats};
use crate::data::Preprocess;
use crate::features::DescriptorConfig;
use crate::infer::Predictor;
use crate::model::{Ablation, Adaptor, CenterBank, Discriminator, ModelMeta};
use crate::{Error, Result};

/// What `cras import-reference` needs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImportConfig {
    /// The authors' checkpoint (`ckpt_best_<epoch>.pth` or `ckpt.pth`).
    pub checkpoint: PathBuf,
    /// Their `center.pth`.
    pub centers: PathBuf,
    /// The backbone weight file (torchvision `.pth`, legacy or zip, or `.safetensors`).
    pub weights: PathBuf,
    /// Class names in the order the authors trained them (their `-d` order).
    pub classes: Vec<String>,
    pub backbone: Arch,
    pub bn_stats: BnStats,
    pub preprocess: Preprocess,
    pub descriptor: DescriptorConfig,
    pub device: String,
}

impl ImportConfig {
    /// The paper's configuration (WRN50-2, layer2 + layer3, 329/288, 1536 dimensions, the
    /// reference BatchNorm statistics) for these files and classes.
    pub fn paper(
        checkpoint: impl Into<PathBuf>,
        centers: impl Into<PathBuf>,
        weights: impl Into<PathBuf>,
        classes: Vec<String>,
    ) -> Self {
        Self {
            checkpoint: checkpoint.into(),
            centers: centers.into(),
            weights: weights.into(),
            classes,
            backbone: Arch::WideResnet50_2,
            bn_stats: BnStats::Reference,
            preprocess: Preprocess::reference(),
            descriptor: DescriptorConfig::default(),
            device: "auto".into(),
        }
    }
}

/// The head tensors of the checkpoint at `path`, checked for presence and shape.
fn read_head(path: &Path, dims: usize) -> Result<HashMap<String, Tensor>> {
    let t = read_state_dict(path)?;
    let d = dims;
    let expected: [(&str, Vec<usize>); 13] = [
        ("pre_projection.layers.0fc.weight", vec![d, d]),
        ("pre_projection.layers.0fc.bias", vec![d]),
        ("discriminator.body.block1.0.weight", vec![d, 2 * d]),
        ("discriminator.body.block1.0.bias", vec![d]),
        ("discriminator.body.block1.1.weight", vec![d]),
        ("discriminator.body.block1.1.bias", vec![d]),
        ("discriminator.body.block1.1.running_mean", vec![d]),
        ("discriminator.body.block1.1.running_var", vec![d]),
        ("discriminator.body.block2.0.weight", vec![d / 2, d]),
        ("discriminator.body.block2.0.bias", vec![d / 2]),
        ("discriminator.body.block2.1.weight", vec![d / 2]),
        ("discriminator.body.block2.1.bias", vec![d / 2]),
        ("discriminator.tail.0.weight", vec![1, d / 2]),
    ];
    let mut problems = Vec::new();
    for (name, shape) in &expected {
        match t.get(*name) {
            None => problems.push(format!("{name} missing")),
            Some(x) if x.dims() != shape.as_slice() => problems.push(format!(
                "{name} has shape {:?}, expected {shape:?} for --dims {d}",
                x.dims()
            )),
            Some(_) => {}
        }
    }
    for name in [
        "discriminator.body.block2.1.running_mean",
        "discriminator.body.block2.1.running_var",
    ] {
        match t.get(name) {
            None => problems.push(format!("{name} missing")),
            Some(x) if x.dims() != [d / 2] => problems.push(format!(
                "{name} has shape {:?}, expected [{}]",
                x.dims(),
                d / 2
            )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        let mut names: Vec<&String> = t.keys().collect();
        names.sort();
        let shown: Vec<&str> = names.iter().take(8).map(|s| s.as_str()).collect();
        return Err(Error::checkpoint(
            path,
            format!(
                "not a CRAS reference checkpoint with one adaptor layer and a 3-layer \
                 discriminator ({}); it holds {} tensors ({}{})",
                problems.join("; "),
                names.len(),
                shown.join(", "),
                if names.len() > 8 { ", ..." } else { "" }
            ),
        ));
    }
    Ok(t)
}

/// A copy of the zip `.pth` at `path`, whose pickle root is a bare tensor (`torch.save(t, f)`,
/// as the authors save `center.pth`), rewritten with the root wrapped in `{"centers": t}` so
/// that the state-dict reader takes it. Pickle protocol 2 (torch's default) only.
fn wrap_root_tensor(path: &Path) -> Result<tempfile::NamedTempFile> {
    use std::io::{Read, Write};
    let bad = |m: String| Error::checkpoint(path, m);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        bad(format!(
            "not a zip .pth ({e}); a center bank saved in the legacy format must be re-saved \
             with a current torch.save"
        ))
    })?;
    let pkl_name = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("/data.pkl") || n == "data.pkl")
        .ok_or_else(|| bad("no data.pkl in the zip: not a torch.save file".into()))?;
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name)
        .and_then(|mut f| f.read_to_end(&mut pkl).map_err(Into::into))
        .map_err(|e| bad(format!("reading {pkl_name}: {e}")))?;
    if pkl.len() < 4 || pkl[..2] != [0x80, 2] || pkl[pkl.len() - 1] != b'.' {
        return Err(bad(format!(
            "{pkl_name}: expected a protocol-2 pickle (torch.save's default)"
        )));
    }
    const KEY: &[u8] = b"centers";
    let mut wrapped = vec![0x80, 2, b'}', b'X'];
    wrapped.extend_from_slice(&(KEY.len() as u32).to_le_bytes());
    wrapped.extend_from_slice(KEY);
    wrapped.extend_from_slice(&pkl[2..pkl.len() - 1]);
    wrapped.extend_from_slice(b"s.");
    let tmp = tempfile::Builder::new()
        .suffix(".pth")
        .tempfile()
        .map_err(|e| Error::Other(format!("temporary file for {}: {e}", path.display())))?;
    let io = |e: zip::result::ZipError| Error::Other(format!("rewriting {}: {e}", path.display()));
    let mut out = zip::ZipWriter::new(tmp.reopen().map_err(|e| Error::io(tmp.path(), e))?);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(io)?;
        if entry.name().map_err(io)? == pkl_name.as_str() {
            drop(entry);
            out.start_file(pkl_name.as_str(), stored).map_err(io)?;
            out.write_all(&wrapped)
                .map_err(|e| Error::io(tmp.path(), e))?;
        } else {
            out.raw_copy_file(entry).map_err(io)?;
        }
    }
    out.finish().map_err(io)?;
    Ok(tmp)
}

/// The center bank `[K,P,D]` of `path`, checked against the classes, grid and dims. The file
/// may hold the bare tensor (the authors' `center.pth`) or a one-tensor state dict.
fn read_centers(path: &Path, k: usize, p: usize, d: usize) -> Result<Tensor> {
    let t = match read_state_dict(path) {
        Ok(t) => t,
        Err(first) => {
            let tmp = wrap_root_tensor(path).map_err(|e| {
                Error::checkpoint(path, format!("cannot read a center bank: {first}; {e}"))
            })?;
            read_state_dict(tmp.path())
                .map_err(|e| Error::checkpoint(path, format!("cannot read a center bank: {e}")))?
        }
    };
    if t.len() != 1 {
        return Err(Error::checkpoint(
            path,
            format!(
                "expected one tensor (the authors' center.pth), found {}",
                t.len()
            ),
        ));
    }
    let c = t.into_values().next().expect("one tensor");
    if c.dims() != [k, p, d] {
        return Err(Error::checkpoint(
            path,
            format!(
                "center bank of shape {:?}, expected [{k}, {p}, {d}] ({k} classes given, {p} \
                 patch positions at this --image-size and --layers, --dims {d})",
                c.dims()
            ),
        ));
    }
    Ok(c)
}

/// Reads the authors' files per `cfg`, checks them against each other, and writes the cras
/// model file `out`. Returns the written model's metadata.
pub fn import_reference(cfg: &ImportConfig, out: &Path) -> Result<ModelMeta> {
    cfg.preprocess.validate()?;
    if cfg.classes.is_empty() {
        return Err(Error::config(
            "classes",
            "",
            "give the classes in training order",
        ));
    }
    if cfg.descriptor.dims < 2 {
        return Err(Error::config(
            "dims",
            cfg.descriptor.dims,
            "must be at least 2",
        ));
    }
    let device = crate::device::select(&cfg.device)?;
    let head = read_head(&cfg.checkpoint, cfg.descriptor.dims)?;
    let train_cfg = TrainConfig {
        backbone: cfg.backbone,
        weights: Some(cfg.weights.clone()),
        bn_stats: cfg.bn_stats,
        preprocess: cfg.preprocess.clone(),
        descriptor: cfg.descriptor.clone(),
        device: cfg.device.clone(),
        progress: false,
        ..TrainConfig::paper(PathBuf::new())
    };
    let extractor = training_extractor(&train_cfg, &[], &device)?;
    let grid = extractor.grid_side(cfg.preprocess.crop as usize);
    let centers = read_centers(
        &cfg.centers,
        cfg.classes.len(),
        grid * grid,
        cfg.descriptor.dims,
    )?;
    let on_device: HashMap<String, Tensor> = head
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_device(&device)?)))
        .collect::<Result<_>>()?;
    let adaptor = Adaptor::from_named(&on_device)?;
    let discriminator = Discriminator::from_named(&on_device)?;
    let bank = CenterBank::new(centers.to_device(&device)?)?;
    let file_name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let config = serde_json::json!({
        "imported_from_reference": {
            "checkpoint": cfg.checkpoint.display().to_string(),
            "checkpoint_sha256": sha256_file(&cfg.checkpoint).ok(),
            "centers": cfg.centers.display().to_string(),
            "centers_sha256": sha256_file(&cfg.centers).ok(),
        },
        "import": cfg,
    });
    let mut meta = ModelMeta::describe(
        &cfg.classes,
        &extractor,
        &cfg.preprocess,
        Ablation::default(),
        config,
    );
    meta.test_selected = file_name(&cfg.checkpoint).starts_with("ckpt_best");
    let predictor = Predictor::from_parts(meta, extractor, adaptor, discriminator, bank, &device);
    predictor.save(out)?;
    Ok(predictor.meta)
}
