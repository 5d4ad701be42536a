//! [`BackboneBuilder`]: the unfolded network parameters (a torchvision state dict, f32 on the
//! CPU) before inference. It checks a weight file against the architecture, or draws
//! torchvision's initialisation from a seeded generator, moves BatchNorm running statistics
//! (reference quirk or offline recalibration) with train-mode passes, and folds every BatchNorm
//! into its convolution to build a [`ResNet`].

use super::topology::{self, check_tensors, ConvBn, Topology};
use super::weights::{is_ignored_entry, read_state_dict, sha256_file};
use super::{Arch, BackboneInfo, BnStats, Layer, ResNet, WeightSource};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// BatchNorm epsilon (torch default).
const BN_EPS: f64 = 1e-5;
/// BatchNorm momentum of the reference's single train-mode pass (torch default).
const BN_MOMENTUM: f64 = 0.1;

/// Options of [`BackboneBuilder::with_options`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BuildOptions {
    /// Non-standard width per group (reduced-width test networks only).
    pub width_per_group: Option<usize>,
    /// Last stage whose parameters are required (and kept). `L4` for a full torchvision file;
    /// a file truncated after `through` is accepted and later stages are then unavailable.
    pub through: Layer,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            width_per_group: None,
            through: Layer::L4,
        }
    }
}

/// Per-BatchNorm batch statistics of one train-mode pass: (mean, unbiased variance).
type BatchStats = HashMap<String, (Vec<f64>, Vec<f64>)>;

/// Unfolded network parameters (state dict) and configuration; BatchNorm not yet folded.
pub struct BackboneBuilder {
    topo: Topology,
    through: Layer,
    params: HashMap<String, Tensor>,
    info: BackboneInfo,
}

impl BackboneBuilder {
    /// Reads and checks a full torchvision state dict of `arch`, or draws a seeded
    /// torchvision-style random initialisation (announced with a warning).
    pub fn new(arch: Arch, source: &WeightSource) -> Result<Self> {
        Self::with_options(arch, source, BuildOptions::default())
    }

    /// The general constructor. Every expected tensor up to `opts.through` is checked for
    /// presence and shape; a mismatch is one error listing missing, unexpected and mis-shaped
    /// names (`fc.*`, `*.num_batches_tracked` and stages after `through` are ignored).
    pub fn with_options(arch: Arch, source: &WeightSource, opts: BuildOptions) -> Result<Self> {
        let topo = Topology::new(arch, opts.width_per_group)?;
        let expected = topo.expected_state(opts.through);
        let mut info = BackboneInfo {
            arch,
            weights_file: None,
            weights_sha256: None,
            random_init_seed: None,
            bn_stats: BnStats::Clean,
            recalibrated: false,
            input_size: 288,
            width_per_group: opts.width_per_group,
        };
        let params = match source {
            WeightSource::File(path) => {
                let mut tensors = read_state_dict(path)?;
                let later = |name: &str| {
                    Layer::ALL
                        .iter()
                        .filter(|l| **l > opts.through)
                        .any(|l| name.starts_with(&format!("{}.", l.name())))
                };
                let shapes = super::weights::shapes(&tensors);
                if let Some(msg) =
                    check_tensors(&expected, &shapes, |n| is_ignored_entry(n) || later(n))
                {
                    let wpg = opts
                        .width_per_group
                        .map(|w| format!(" (width per group {w})"))
                        .unwrap_or_default();
                    return Err(Error::weights(
                        path,
                        format!("not a {arch}{wpg} state dict: {msg}"),
                    ));
                }
                info.weights_file = Some(path.display().to_string());
                info.weights_sha256 = Some(sha256_file(path)?);
                let keep: std::collections::HashSet<&String> =
                    expected.iter().map(|(n, _)| n).collect();
                tensors.retain(|k, _| keep.contains(k));
                tensors
            }
            WeightSource::Random { seed } => {
                tracing::warn!(
                    "no weight file: {arch} uses a seeded random initialisation (seed {seed}); \
                     its features are NOT ImageNet features"
                );
                info.random_init_seed = Some(*seed);
                random_init(&topo, opts.through, *seed)?
            }
        };
        Ok(BackboneBuilder {
            topo,
            through: opts.through,
            params,
            info,
        })
    }

    /// What is known so far about the backbone.
    pub fn info(&self) -> &BackboneInfo {
        &self.info
    }

    /// The unfolded parameters (torchvision names, f32, CPU).
    pub fn state_dict(&self) -> &HashMap<String, Tensor> {
        &self.params
    }

    /// Applies the chosen BatchNorm statistics: the reference perturbation for
    /// [`BnStats::Reference`], nothing for [`BnStats::Clean`].
    pub fn apply_bn_stats(&mut self, stats: BnStats, input_size: usize) -> Result<()> {
        self.info.input_size = input_size;
        match stats {
            BnStats::Reference => self.perturb_bn_reference(input_size),
            BnStats::Clean => Ok(()),
        }
    }

    /// Reference quirk: one train-mode forward of an all-ones `[1,3,S,S]` image; every
    /// BatchNorm's running mean/var moves toward that pass's batch statistics with momentum 0.1
    /// (unbiased variance), each BN normalising with its batch statistics during the pass, as
    /// torch does. The pass covers every stage this builder holds (`through`) whose output is
    /// at least 2x2 (layer4 needs S >= 64; below that torch itself refuses a train-mode pass and
    /// layer4's statistics are left untouched). BNs after layer3 do not affect layer2/layer3
    /// outputs, so a file truncated after layer3 gives the same features as the reference's
    /// whole-network pass.
    pub fn perturb_bn_reference(&mut self, input_size: usize) -> Result<()> {
        if input_size < 32 {
            return Err(Error::config(
                "input size",
                input_size,
                "must be at least 32",
            ));
        }
        let ones = Tensor::ones((1, 3, input_size, input_size), DType::F32, &Device::Cpu)?;
        let through = Layer::ALL
            .into_iter()
            .filter(|l| *l <= self.through && input_size >= 2 * l.stride())
            .max()
            .unwrap_or(Layer::L1);
        let stats = self.train_pass(&ones, through)?;
        for (bn, (mean, var)) in stats {
            self.update_running(&bn, |old_m, old_v, i| {
                (
                    (1.0 - BN_MOMENTUM) * old_m + BN_MOMENTUM * mean[i],
                    (1.0 - BN_MOMENTUM) * old_v + BN_MOMENTUM * var[i],
                )
            })?;
        }
        self.info.bn_stats = BnStats::Reference;
        self.info.input_size = input_size;
        Ok(())
    }

    /// OFFLINE-DEMO AID, not part of the method: resets every BatchNorm's running statistics
    /// and re-estimates them as the average of the batch statistics of `batches` (`[B,3,S,S]`
    /// normalised images; torch's cumulative average, `momentum=None`). Makes a randomly
    /// initialised backbone produce activations of sane scale; recorded in the info.
    pub fn recalibrate_bn(&mut self, batches: &[Tensor]) -> Result<()> {
        if batches.is_empty() {
            return Err(Error::config(
                "recalibration batches",
                0,
                "need at least one batch",
            ));
        }
        let mut sums: HashMap<String, (Vec<f64>, Vec<f64>)> = HashMap::new();
        for batch in batches {
            let batch = batch.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            let stats = self.train_pass(&batch, self.through)?;
            for (bn, (m, v)) in stats {
                let entry = sums
                    .entry(bn)
                    .or_insert_with(|| (vec![0.0; m.len()], vec![0.0; v.len()]));
                entry.0.iter_mut().zip(&m).for_each(|(a, b)| *a += b);
                entry.1.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
            }
        }
        let n = batches.len() as f64;
        for (bn, (m, v)) in sums {
            self.update_running(&bn, |_, _, i| (m[i] / n, v[i] / n))?;
        }
        self.info.recalibrated = true;
        Ok(())
    }

    /// Folds every BatchNorm into its convolution (eval mode, eps 1e-5) for the stages up to
    /// `last_layer`, drops later stages and moves the network to `device`.
    pub fn build(self, last_layer: Layer, device: &Device) -> Result<ResNet> {
        if last_layer > self.through {
            return Err(Error::config(
                "last layer",
                last_layer,
                format!("the weights only go up to {}", self.through),
            ));
        }
        let mut folded = HashMap::new();
        for cb in self.topo.conv_bns(last_layer) {
            let (w, b) = self.fold(cb)?;
            folded.insert(
                cb.conv.clone(),
                (w.to_device(device)?, b.to_device(device)?),
            );
        }
        Ok(ResNet::from_parts(
            self.info,
            self.topo,
            last_layer,
            folded,
            device.clone(),
        ))
    }

    fn param(&self, name: &str) -> Result<&Tensor> {
        self.params
            .get(name)
            .ok_or_else(|| Error::Other(format!("backbone parameter {name} is missing")))
    }

    fn vec64(&self, name: &str) -> Result<Vec<f64>> {
        Ok(self.param(name)?.to_dtype(DType::F64)?.to_vec1()?)
    }

    fn fold(&self, cb: &ConvBn) -> Result<(Tensor, Tensor)> {
        let gamma = self.vec64(&format!("{}.weight", cb.bn))?;
        let beta = self.vec64(&format!("{}.bias", cb.bn))?;
        let mean = self.vec64(&format!("{}.running_mean", cb.bn))?;
        let var = self.vec64(&format!("{}.running_var", cb.bn))?;
        let scale: Vec<f64> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| g / (v + BN_EPS).sqrt())
            .collect();
        let bias: Vec<f32> = (0..scale.len())
            .map(|i| (beta[i] - mean[i] * scale[i]) as f32)
            .collect();
        let w = self
            .param(&format!("{}.weight", cb.conv))?
            .to_dtype(DType::F64)?;
        let scale_t = Tensor::from_vec(scale, (cb.c_out, 1, 1, 1), &Device::Cpu)?;
        let w = w.broadcast_mul(&scale_t)?.to_dtype(DType::F32)?;
        Ok((w, Tensor::from_vec(bias, cb.c_out, &Device::Cpu)?))
    }

    /// Sets a BN's running (mean, var) per channel from `f(old_mean, old_var, channel)`.
    fn update_running(
        &mut self,
        bn: &str,
        f: impl Fn(f64, f64, usize) -> (f64, f64),
    ) -> Result<()> {
        let old_m = self.vec64(&format!("{bn}.running_mean"))?;
        let old_v = self.vec64(&format!("{bn}.running_var"))?;
        let (m, v): (Vec<f32>, Vec<f32>) = (0..old_m.len())
            .map(|i| {
                let (m, v) = f(old_m[i], old_v[i], i);
                (m as f32, v as f32)
            })
            .unzip();
        let n = m.len();
        self.params.insert(
            format!("{bn}.running_mean"),
            Tensor::from_vec(m, n, &Device::Cpu)?,
        );
        self.params.insert(
            format!("{bn}.running_var"),
            Tensor::from_vec(v, n, &Device::Cpu)?,
        );
        Ok(())
    }

    /// One train-mode forward (every BN normalises with its batch statistics) up to stage
    /// `through`; returns each BN's batch mean and unbiased variance.
    fn train_pass(&self, x: &Tensor, through: Layer) -> Result<BatchStats> {
        let mut stats = BatchStats::new();
        topology::run(&self.topo, x, &[through], |cb, h| {
            let y = h.conv2d(
                self.param(&format!("{}.weight", cb.conv))?,
                cb.padding,
                cb.stride,
                1,
                1,
            )?;
            let (n, c, hh, ww) = y.dims4()?;
            let count = n * hh * ww;
            if count < 2 {
                return Err(Error::config(
                    "BatchNorm statistics input",
                    format!("{n}x{hh}x{ww}"),
                    format!("{} needs more than one value per channel", cb.bn),
                ));
            }
            let flat = y.transpose(0, 1)?.flatten_from(1)?.to_dtype(DType::F64)?;
            let mean = flat.mean_keepdim(1)?;
            let var = flat.broadcast_sub(&mean)?.sqr()?.mean_keepdim(1)?;
            let gamma = self
                .param(&format!("{}.weight", cb.bn))?
                .reshape((1, c, 1, 1))?;
            let beta = self
                .param(&format!("{}.bias", cb.bn))?
                .reshape((1, c, 1, 1))?;
            let mean32 = mean.to_dtype(DType::F32)?.reshape((1, c, 1, 1))?;
            let inv_std = (var.clone() + BN_EPS)?
                .sqrt()?
                .recip()?
                .to_dtype(DType::F32)?
                .reshape((1, c, 1, 1))?;
            let out = y
                .broadcast_sub(&mean32)?
                .broadcast_mul(&inv_std)?
                .broadcast_mul(&gamma)?
                .broadcast_add(&beta)?;
            let unbias = count as f64 / (count - 1) as f64;
            let mean_v: Vec<f64> = mean.flatten_all()?.to_vec1()?;
            let var_v: Vec<f64> = (var * unbias)?.flatten_all()?.to_vec1()?;
            stats.insert(cb.bn.clone(), (mean_v, var_v));
            Ok(out)
        })?;
        Ok(stats)
    }
}

/// torchvision's initialisation from a seeded generator: conv weights kaiming-normal
/// (fan_out, ReLU gain: std = sqrt(2 / (c_out k k))), BN weight 1, bias 0, running mean 0,
/// var 1. Values are drawn in forward order, so they do not depend on `through`.
fn random_init(topo: &Topology, through: Layer, seed: u64) -> Result<HashMap<String, Tensor>> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
    let mut out = HashMap::new();
    for cb in topo.conv_bns(through) {
        let shape = cb.weight_shape();
        let fan_out = cb.c_out * cb.kernel * cb.kernel;
        let normal = rand_distr::Normal::new(0.0f32, (2.0 / fan_out as f32).sqrt())
            .map_err(|e| Error::Other(format!("random init of {}: {e}", cb.conv)))?;
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
        out.insert(
            format!("{}.weight", cb.conv),
            Tensor::from_vec(values, shape, &Device::Cpu)?,
        );
        let c = cb.c_out;
        let cpu = &Device::Cpu;
        out.insert(
            format!("{}.weight", cb.bn),
            Tensor::ones(c, DType::F32, cpu)?,
        );
        out.insert(
            format!("{}.bias", cb.bn),
            Tensor::zeros(c, DType::F32, cpu)?,
        );
        out.insert(
            format!("{}.running_mean", cb.bn),
            Tensor::zeros(c, DType::F32, cpu)?,
        );
        out.insert(
            format!("{}.running_var", cb.bn),
            Tensor::ones(c, DType::F32, cpu)?,
        );
    }
    Ok(out)
}
