//! How a tiled model's center bank should treat tile position: one center map per class shared
//! by every tile (what `cras train --tile` does) or one per class AND tile position. Dev-only
//! figure for the README and the issue note, not run in CI.
//!
//! For a trained tiled model and its dataset (MVTec layout, with masks), both banks are built
//! from the model's own adapted features of every training tile (per class: the mean over all
//! tiles, or per tile position the mean over the images), then every test tile is aligned with
//! each bank exactly as scoring aligns it ([`CenterBank::align`], search over all positions of
//! the chosen center map) and the residual norm `|f - R|` of every patch is taken as a score:
//! the quantity the discriminator reads. Printed per class and overall: the AUROC of the
//! residual for image labels (image = max patch) and for patch labels (a patch is anomalous
//! when its window holds a mask pixel), the normal patches' median residual, and the bank sizes.
//!
//! `cargo run --release --example tile_centers -- MODEL.safetensors DATA_ROOT`

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, D};
use cras::data::{decode, discover};
use cras::infer::Predictor;
use cras::metrics::ranking::auroc;
use cras::model::{CenterAccumulator, CenterBank};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Residual scores and labels: per image (max patch) and per patch.
#[derive(Default)]
struct Scores {
    image: Vec<f32>,
    image_label: Vec<bool>,
    patch: Vec<f32>,
    patch_label: Vec<bool>,
}

impl Scores {
    fn extend(&mut self, o: &Scores) {
        self.image.extend(&o.image);
        self.image_label.extend(&o.image_label);
        self.patch.extend(&o.patch);
        self.patch_label.extend(&o.patch_label);
    }

    fn report(&self, class: &str, bank: &str) {
        let mut normal: Vec<f32> = self
            .patch
            .iter()
            .zip(&self.patch_label)
            .filter(|(_, &l)| !l)
            .map(|(&s, _)| s)
            .collect();
        normal.sort_by(f32::total_cmp);
        let median = normal.get(normal.len() / 2).copied().unwrap_or(f32::NAN);
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}", 100.0 * v));
        println!(
            "| {class} | {bank} | {} | {} | {median:.3} |",
            pct(auroc(&self.image, &self.image_label)),
            pct(auroc(&self.patch, &self.patch_label))
        );
    }
}

/// Adapted features of every tile of `path`: [T, P, D].
fn tile_features(p: &Predictor, path: &Path) -> Res<Tensor> {
    let img = decode::decode_rgb(path)?;
    let pre = &p.meta.preprocess;
    let (t, s) = (pre.views_per_image(), p.input_size());
    let x = Tensor::from_vec(pre.views(&img), (t, 3, s, s), &p.device)?;
    let g = p.extractor.descriptors(&x)?;
    let (_, n, d) = g.dims3()?;
    Ok(p.adaptor
        .forward(&g.reshape((t * n, d))?)?
        .reshape((t, n, d))?)
}

/// Per patch of every tile, whether its window of the working image holds a mask pixel: [T*P].
fn patch_labels(p: &Predictor, mask: Option<&Vec<u8>>) -> Vec<bool> {
    let tiling = p.meta.preprocess.tiling.expect("tiled model");
    let (n, g) = (tiling.image_size as usize, p.meta.grid);
    let mut out = Vec::new();
    for w in tiling.windows() {
        let cell = w.side as usize / g;
        for gy in 0..g {
            for gx in 0..g {
                let hit = mask.is_some_and(|m| {
                    (0..cell).any(|dy| {
                        let row = (w.y as usize + gy * cell + dy) * n + w.x as usize + gx * cell;
                        m[row..row + cell].iter().any(|&v| v > 0)
                    })
                });
                out.push(hit);
            }
        }
    }
    out
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let (model, data) = match args.as_slice() {
        [_, m, d] => (PathBuf::from(m), PathBuf::from(d)),
        _ => return Err("usage: tile_centers MODEL DATA_ROOT".into()),
    };
    let p = Predictor::load(&model, &Device::Cpu)?;
    let tiling = p.meta.preprocess.tiling.ok_or("not a tiled model")?;
    let t = tiling.count();
    let ds = discover(&data, Some(&p.meta.classes))?;
    let k_all = p.meta.classes.len();
    let (mut shared, mut per_pos) = (
        CenterAccumulator::new(k_all),
        CenterAccumulator::new(k_all * t),
    );
    for class in &ds.classes {
        let k = p.meta.class_index(&class.name)?;
        for path in &class.train {
            let f = tile_features(&p, path)?;
            shared.add(k, &f)?;
            for i in 0..t {
                per_pos.add(k * t + i, &f.narrow(0, i, 1)?)?;
            }
        }
    }
    let names: Vec<String> = (0..k_all * t).map(|i| format!("{i}")).collect();
    let shared = shared.finish(&p.meta.classes)?;
    let per_pos = per_pos.finish(&names)?;
    let mb = |b: &CenterBank| b.centers.elem_count() as f64 * 4.0 / 1e6;
    println!(
        "tiles per image {t}; bank shared {:.1} MB [{k_all}, P, D], per position {:.1} MB [{}, P, D]",
        mb(&shared),
        mb(&per_pos),
        k_all * t
    );
    println!("| class | bank | image AUROC of max residual | patch AUROC of residual | median normal residual |");
    println!("|---|---|---|---|---|");
    let mut pooled: [Scores; 2] = Default::default();
    for class in &ds.classes {
        let k = p.meta.class_index(&class.name)?;
        let mut rows: [Scores; 2] = Default::default();
        for item in &class.test {
            let f = tile_features(&p, &item.path)?;
            let pre = p.meta.preprocess.clone();
            let mask = pre.load_masks(item.masks())?;
            let labels = patch_labels(&p, mask.as_ref());
            for (b, (bank, classes)) in [
                (&shared, vec![k; t]),
                (&per_pos, (0..t).map(|i| k * t + i).collect()),
            ]
            .into_iter()
            .enumerate()
            {
                let r = bank.align(&f, &classes, p.meta.ablation.center_search)?;
                let res: Vec<f32> = (&f - &r)?
                    .sqr()?
                    .sum(D::Minus1)?
                    .sqrt()?
                    .flatten_all()?
                    .to_vec1()?;
                let row = &mut rows[b];
                row.image
                    .push(res.iter().copied().fold(f32::NEG_INFINITY, f32::max));
                row.image_label.push(item.is_anomalous());
                row.patch.extend(&res);
                row.patch_label.extend(&labels);
            }
        }
        for (b, name) in ["shared", "per position"].iter().enumerate() {
            rows[b].report(&class.name, name);
            pooled[b].extend(&rows[b]);
        }
    }
    for (b, name) in ["shared", "per position"].iter().enumerate() {
        pooled[b].report("all", name);
    }
    Ok(())
}
