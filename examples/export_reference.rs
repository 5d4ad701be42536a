//! Dev aid for `dev/check_onnx.py`: scores images with the candle path (`Predictor`, exactly
//! as `cras predict` does) and writes the preprocessed inputs and the float outputs as `.npy`
//! files, so that an exported ONNX graph can be compared with them.
//!
//! Usage: `cargo run --release --example export_reference -- MODEL OUT_DIR IMAGE_DIR`
//!
//! Writes to OUT_DIR: `image.npy` f32 [N,3,S,S]; for the global match `score.npy` f32 [N],
//! `patch.npy` f32 [N,g,g], `map.npy` f32 [N,S,S], `class.npy` / `matched.npy` i64 [N],
//! `sim.npy` f32 [N]; `stated.npy` i64 [N] (-1 on even images, another class on odd ones) and
//! the same outputs for that choice as `stated_score.npy`, `stated_patch.npy`,
//! `stated_map.npy`, `stated_class.npy`; `paths.txt`.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Device;
use cras::infer::{ClassChoice, Prediction, Predictor};

fn npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> anyhow::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("{},", dims[0])
    } else {
        dims.join(", ")
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({tuple}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::fs::File::create(path)?;
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    f.write_all(data)?;
    Ok(())
}

fn f32s(dir: &Path, name: &str, shape: &[usize], v: &[f32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    npy(&dir.join(name), "<f4", shape, &bytes)
}

fn i64s(dir: &Path, name: &str, v: &[i64]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    npy(&dir.join(name), "<i8", &[v.len()], &bytes)
}

fn write_preds(
    dir: &Path,
    prefix: &str,
    p: &Predictor,
    preds: &[Prediction],
) -> anyhow::Result<()> {
    let (n, s, g) = (preds.len(), p.input_size(), p.meta.grid);
    let cat = |f: &dyn Fn(&Prediction) -> Vec<f32>| preds.iter().flat_map(f).collect::<Vec<f32>>();
    f32s(
        dir,
        &format!("{prefix}score.npy"),
        &[n],
        &cat(&|q| vec![q.score]),
    )?;
    f32s(
        dir,
        &format!("{prefix}patch.npy"),
        &[n, g, g],
        &cat(&|q| q.patch_scores.clone()),
    )?;
    f32s(
        dir,
        &format!("{prefix}map.npy"),
        &[n, s, s],
        &cat(&|q| p.anomaly_map(q)),
    )?;
    f32s(
        dir,
        &format!("{prefix}sim.npy"),
        &[n],
        &cat(&|q| vec![q.class_similarity]),
    )?;
    let class: Vec<i64> = preds.iter().map(|q| q.class as i64).collect();
    let matched: Vec<i64> = preds.iter().map(|q| q.matched as i64).collect();
    i64s(dir, &format!("{prefix}class.npy"), &class)?;
    i64s(dir, &format!("{prefix}matched.npy"), &matched)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model, out, images] = args.as_slice() else {
        anyhow::bail!("usage: export_reference MODEL OUT_DIR IMAGE_DIR");
    };
    let p = Predictor::load(model, &Device::Cpu)?;
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut stack = vec![images.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?.path();
            if e.is_dir() {
                stack.push(e);
            } else if e.extension().is_some_and(|x| x == "png") {
                paths.push(e);
            }
        }
    }
    paths.sort();
    anyhow::ensure!(!paths.is_empty(), "{}: no PNG images", images.display());
    std::fs::create_dir_all(out)?;
    let decoded: Vec<image::RgbImage> = paths
        .iter()
        .map(|q| cras::data::decode::decode_rgb(q))
        .collect::<cras::Result<_>>()?;
    let s = p.input_size();
    let pixels: Vec<f32> = decoded
        .iter()
        .flat_map(|im| p.meta.preprocess.image(im))
        .collect();
    f32s(out, "image.npy", &[paths.len(), 3, s, s], &pixels)?;
    let preds = p.predict_images(&decoded, &ClassChoice::Match)?;
    write_preds(out, "", &p, &preds)?;
    let k = p.meta.classes.len();
    let stated: Vec<i64> = preds
        .iter()
        .enumerate()
        .map(|(i, q)| {
            if i % 2 == 0 {
                -1
            } else {
                ((q.matched + 1) % k) as i64
            }
        })
        .collect();
    let used: Vec<usize> = stated
        .iter()
        .zip(&preds)
        .map(|(&c, q)| if c < 0 { q.matched } else { c as usize })
        .collect();
    i64s(out, "stated.npy", &stated)?;
    let spreds = p.predict_images(&decoded, &ClassChoice::Stated(used))?;
    write_preds(out, "stated_", &p, &spreds)?;
    let list: Vec<String> = paths.iter().map(|q| q.display().to_string()).collect();
    std::fs::write(out.join("paths.txt"), list.join("\n"))?;
    println!("{} images -> {}", paths.len(), out.display());
    Ok(())
}
