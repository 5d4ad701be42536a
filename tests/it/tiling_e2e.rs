//! Tiled models end to end (`cras train --tile`): small defects on larger generated images,
//! trained tile by tile; the tiling stored in the model; each image's score the maximum of its
//! tiles' scores, its map the blend of their maps at the working resolution; evaluation at the
//! model's map side or at `--map-size`; the CLI's errors for impossible tilings.

use crate::common::tiny;
use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use cras::data::synth::{generate, SynthConfig};
use cras::data::Tiling;
use cras::eval::{evaluate, EvalOptions};
use cras::infer::ClassChoice;
use cras::infer::Predictor;
use cras::maps::{map_of, upsample_bilinear};
use cras::train::pipeline::train;

const SIDE: u32 = 96;

fn dataset(dir: &Path) {
    let cfg = SynthConfig {
        classes: 2,
        train_per_class: 4,
        test_good_per_class: 2,
        test_defect_per_class: 3,
        size: SIDE,
        defect_px: Some((6, 10)),
        seed: 5,
    };
    generate(&cfg, dir).unwrap();
}

fn first_file(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = dir.read_dir().unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.remove(0)
}

/// A tiny tiled model on the dataset under `dir` (working side left to the data: 96 px; tiles
/// of 48 px overlapping by 16: starts 0, 32, 48 -> 3 x 3 tiles, each scored at 32 px).
fn trained(dir: &Path, centers_per_tile: bool) -> (std::path::PathBuf, std::path::PathBuf, Tiling) {
    let data = dir.join("data");
    dataset(&data);
    let mut cfg = tiny::tiny_train_config(&data);
    cfg.preprocess.tiling = Some(Tiling {
        image_size: 0,
        tile: 48,
        overlap: 16,
        centers_per_tile,
    });
    let model = dir.join("tiled.safetensors");
    let summary = train(&cfg, &model, false, None).unwrap();
    let want = Tiling {
        image_size: SIDE,
        tile: 48,
        overlap: 16,
        centers_per_tile,
    };
    assert_eq!(summary.meta.preprocess.tiling, Some(want));
    assert_eq!(want.count(), 9);
    (data, model, want)
}

/// A defect test image of the model's first class, its tiled prediction, and the same tiles
/// scored one by one as ordinary inputs (each aligned with its own bank row) by the model with
/// its tiling removed.
fn tiled_and_by_tile(
    predictor: &Predictor,
    model: &Path,
    data: &Path,
    want: &Tiling,
) -> (cras::infer::Prediction, Vec<cras::infer::Prediction>) {
    let class = &predictor.meta.classes[0];
    let kind = data
        .join(class)
        .join("test")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.ends_with("good"))
        .unwrap();
    let img = cras::data::decode::decode_rgb(&first_file(&kind)).unwrap();
    let tiled = predictor
        .predict_images(std::slice::from_ref(&img), &ClassChoice::Match)
        .unwrap()
        .remove(0);
    let mut plain = Predictor::load(model, &Device::Cpu).unwrap();
    plain.meta.preprocess.tiling = None;
    let s = predictor.input_size();
    let views = Tensor::from_vec(want.views(&img, s as u32), (9, 3, s, s), &Device::Cpu).unwrap();
    let rows = (0..9).map(|j| want.center_row(tiled.class, j)).collect();
    let tiles = plain
        .predict_batch(&views, &ClassChoice::Stated(rows))
        .unwrap();
    (tiled, tiles)
}

#[test]
fn a_tiled_model_scores_each_image_as_the_maximum_of_its_tiles_and_maps_the_whole_image() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model, want) = trained(tmp.path(), false);
    let predictor = Predictor::load(&model, &Device::Cpu).unwrap();
    assert_eq!(
        predictor.meta.preprocess.tiling,
        Some(want),
        "stored in the file"
    );
    assert_eq!(predictor.map_size(), SIDE as usize);
    // One center map per class, shared by every tile position.
    let (k, p, _) = predictor.bank.centers.dims3().unwrap();
    assert_eq!((k, p), (2, predictor.meta.grid * predictor.meta.grid));

    let (tiled, tiles) = tiled_and_by_tile(&predictor, &model, &data, &want);
    let one = predictor
        .preprocess(&[image::RgbImage::new(SIDE, SIDE)])
        .unwrap();
    assert_eq!(one.dim(0).unwrap(), 9, "one image, nine tiles");
    let e = predictor
        .predict_batch(&one, &ClassChoice::Stated(vec![0, 1]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 stated classes for 1 images"), "{e}");
    let map = tiled
        .map
        .clone()
        .expect("a tiled prediction carries its blended map");
    assert_eq!(map.len(), (SIDE * SIDE) as usize);
    assert_eq!(tiled.patch_scores.len(), 9 * p);
    let max = tiles
        .iter()
        .map(|t| t.score)
        .fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(tiled.score, max, "image score = the maximum over its tiles");
    assert!(
        tiles.iter().any(|t| t.score != max),
        "tiles differ: the test can tell"
    );
    // The top-left corner is covered by tile 0 only, the bottom-right by tile 8 only.
    let (s, grid) = (predictor.input_size(), predictor.meta.grid);
    let tile_map =
        |i: usize| upsample_bilinear(&map_of(&tiles[i].patch_scores, grid, s), s, s, 48, 48);
    let n = SIDE as usize;
    assert!((map[0] - tile_map(0)[0]).abs() < 1e-6);
    assert!((map[n * n - 1] - tile_map(8)[48 * 48 - 1]).abs() < 1e-6);
    // Where tiles 0 and 1 overlap (x in 32..48, y < 32) the map is their mean.
    let (x, y) = (40usize, 10usize);
    let mean = (tile_map(0)[y * 48 + x] + tile_map(1)[y * 48 + (x - 32)]) / 2.0;
    assert!((map[y * n + x] - mean).abs() < 1e-6);

    // Evaluation: pixel metrics at the working side, or at --map-size.
    for (map_size, side) in [(None, SIDE as u64), (Some(48usize), 48)] {
        let out = tmp.path().join(format!("eval-{side}"));
        let opts = EvalOptions {
            map_size,
            progress: false,
            gallery_per_class: 1,
            ..EvalOptions::default()
        };
        let report = evaluate(&predictor, &model, &data, &out, &opts).unwrap();
        assert_eq!(report.config["map_size"], side);
        assert_eq!(report.config["preprocess"]["tiling"]["tile"], 48);
        let pooled = report
            .pooled
            .pixel_auroc
            .expect("masks present: pixel metrics");
        assert!((0.0..=1.0).contains(&pooled));
        let panel = image::open(
            out.join("gallery").join(
                std::fs::read_dir(out.join("gallery"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .find(|f| f.to_string_lossy().ends_with(".png"))
                    .unwrap(),
            ),
        )
        .unwrap();
        assert_eq!(
            panel.height(),
            side as u32,
            "gallery panels at the metrics' side"
        );
    }
}

#[test]
fn per_tile_centers_give_each_tile_position_its_own_center_map() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model, want) = trained(tmp.path(), true);
    let predictor = Predictor::load(&model, &Device::Cpu).unwrap();
    assert_eq!(
        predictor.meta.preprocess.tiling,
        Some(want),
        "stored in the file"
    );
    // 2 classes x 9 tile positions; row k * 9 + j is class k's map for tile j.
    let (rows, p, _) = predictor.bank.centers.dims3().unwrap();
    assert_eq!(rows, 18);
    let first = |r: usize| -> Vec<f32> {
        predictor
            .bank
            .centers
            .get(r)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    assert_ne!(
        first(0),
        first(1),
        "positions of one class have their own centers"
    );
    let (tiled, tiles) = tiled_and_by_tile(&predictor, &model, &data, &want);
    assert!(tiled.class < 2, "the image's class, not a bank row");
    assert_eq!(tiled.patch_scores.len(), 9 * p);
    let max = tiles
        .iter()
        .map(|t| t.score)
        .fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(
        tiled.score, max,
        "each tile aligned with its own position's centers"
    );
    for (j, t) in tiles.iter().enumerate() {
        assert_eq!(t.class, want.center_row(tiled.class, j));
    }
    // Calibrated thresholds are per class (2), not per bank row.
    let th = predictor.meta.thresholds.as_ref().unwrap();
    assert_eq!(th.per_class.len(), 2);
}

#[test]
fn impossible_tilings_are_named_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cras"))
            .args(["train", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(tmp.path().join("m.safetensors"))
            .args([
                "--backbone",
                "resnet18",
                "--image-size",
                "32",
                "--dims",
                "32",
            ])
            .args(["--epochs", "1", "--quiet"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run(&["--tile", "128"]);
    assert!(
        e.contains("tile") && e.contains("128") && e.contains("96"),
        "{e}"
    );
    let e = run(&["--tile", "48", "--tile-overlap", "48"]);
    assert!(e.contains("tile-overlap") && e.contains("48"), "{e}");
    let e = run(&["--tile-overlap", "8"]);
    assert!(e.contains("--tile"), "{e}");
    assert!(!tmp.path().join("m.safetensors").exists());
}
