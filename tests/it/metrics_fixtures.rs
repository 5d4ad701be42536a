//! Parity of the exact metrics with scikit-learn / scikit-image on the fixtures written by
//! `dev/gen_metrics_fixtures.py`: ranking metrics to 1e-6 (including ties, constant scores and
//! one-class inputs), exact AUPRO against a brute-force Python sweep, and the CRAS reference PRO.

use cras::metrics::{pro, ranking, EvalAccumulator};
use serde::Deserialize;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics");

#[derive(Deserialize)]
struct RankingCase {
    name: String,
    scores: Vec<f32>,
    labels: Vec<bool>,
    auroc: Option<f64>,
    ap: Option<f64>,
    f1max: Option<f64>,
}

#[derive(Deserialize)]
struct PixelCase {
    name: String,
    width: usize,
    height: usize,
    maps: Vec<Vec<f32>>,
    masks: Vec<Vec<u8>>,
    aupro: f64,
    aupro_reference: f64,
    pixel_auroc: Option<f64>,
    pixel_ap: Option<f64>,
    pixel_f1max: Option<f64>,
    image_regions: Vec<usize>,
}

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = format!("{FIXTURES}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_close(what: &str, got: Option<f64>, want: Option<f64>, tol: f64) {
    match (got, want) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= tol, "{what}: got {g}, want {w}"),
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn ranking_metrics_match_scikit_learn() {
    let cases: Vec<RankingCase> = load("ranking.json");
    assert!(cases.len() >= 8);
    for c in &cases {
        let n = &c.name;
        assert_close(
            &format!("{n} auroc"),
            ranking::auroc(&c.scores, &c.labels),
            c.auroc,
            1e-6,
        );
        assert_close(
            &format!("{n} ap"),
            ranking::average_precision(&c.scores, &c.labels),
            c.ap,
            1e-6,
        );
        let best = ranking::f1_max(&c.scores, &c.labels);
        assert_close(&format!("{n} f1max"), best.map(|b| b.f1), c.f1max, 1e-6);
        if let Some(b) = best {
            // The reported threshold reproduces the reported F1, precision and recall.
            let at = ranking::confusion_at(&c.scores, &c.labels, b.threshold);
            assert_close(&format!("{n} f1 at threshold"), at.f1, Some(b.f1), 1e-12);
            assert_close(&format!("{n} recall"), at.recall, Some(b.recall), 1e-12);
            assert_close(
                &format!("{n} precision"),
                at.precision,
                Some(b.precision),
                1e-12,
            );
        }
        // The ROC curve's trapezoid area is the AUROC.
        if let Some(roc) = ranking::roc_curve(&c.scores, &c.labels) {
            let area: f64 = roc
                .windows(2)
                .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
                .sum();
            assert_close(&format!("{n} roc area"), Some(area), c.auroc, 1e-9);
        }
    }
}

#[test]
fn aupro_and_pixel_metrics_match_python() {
    let cases: Vec<PixelCase> = load("pro.json");
    for c in &cases {
        let n = &c.name;
        let maps: Vec<&[f32]> = c.maps.iter().map(|m| &m[..]).collect();
        let masks: Vec<&[u8]> = c.masks.iter().map(|m| &m[..]).collect();
        for (i, mask) in masks.iter().enumerate() {
            let (_, sizes) = pro::label_regions(mask, c.width, c.height);
            assert_eq!(sizes.len(), c.image_regions[i], "{n} image {i} regions");
        }
        let got = pro::aupro(&maps, &masks, c.width, c.height, 0.3);
        assert_close(&format!("{n} aupro"), got, Some(c.aupro), 1e-9);
        let got = pro::aupro_reference(&maps, &masks, c.width, c.height, 200);
        assert_close(
            &format!("{n} reference pro"),
            got,
            Some(c.aupro_reference),
            1e-9,
        );

        // Pooled pixel metrics (the maps are not square, so through the ranking functions).
        let flat: Vec<f32> = c.maps.concat();
        let gt: Vec<bool> = c.masks.concat().iter().map(|&m| m != 0).collect();
        assert_close(
            &format!("{n} pixel auroc"),
            ranking::auroc(&flat, &gt),
            c.pixel_auroc,
            1e-6,
        );
        assert_close(
            &format!("{n} pixel ap"),
            ranking::average_precision(&flat, &gt),
            c.pixel_ap,
            1e-6,
        );
        assert_close(
            &format!("{n} pixel f1max"),
            ranking::f1_max(&flat, &gt).map(|b| b.f1),
            c.pixel_f1max,
            1e-6,
        );
    }
}

#[test]
fn accumulator_reproduces_fixture_metrics_on_square_crops() {
    // Square crops of the first case, checked against the standalone functions, which the
    // tests above tie to scikit-learn.
    let c: Vec<PixelCase> = load("pro.json");
    let c = &c[0];
    let side = c.height.min(c.width);
    let crop = |v: &[f32]| -> Vec<f32> {
        (0..side)
            .flat_map(|y| v[y * c.width..y * c.width + side].to_vec())
            .collect()
    };
    let crop_mask = |v: &[u8]| -> Vec<u8> {
        (0..side)
            .flat_map(|y| v[y * c.width..y * c.width + side].to_vec())
            .collect()
    };
    let maps: Vec<Vec<f32>> = c.maps.iter().map(|m| crop(m)).collect();
    let masks: Vec<Vec<u8>> = c.masks.iter().map(|m| crop_mask(m)).collect();
    let mut acc = EvalAccumulator::new(side);
    let mut image_scores = Vec::new();
    let mut image_labels = Vec::new();
    for (map, mask) in maps.iter().zip(&masks) {
        let score = map.iter().copied().fold(f32::MIN, f32::max);
        let anomalous = mask.contains(&1);
        acc.push(score, anomalous, map, Some(mask)).unwrap();
        image_scores.push(score);
        image_labels.push(anomalous);
    }
    let m = acc.compute(0.3);
    let flat: Vec<f32> = maps.concat();
    let gt: Vec<bool> = masks.concat().iter().map(|&v| v != 0).collect();
    let map_refs: Vec<&[f32]> = maps.iter().map(|m| &m[..]).collect();
    let mask_refs: Vec<&[u8]> = masks.iter().map(|m| &m[..]).collect();
    assert_eq!(m.pixel_auroc, ranking::auroc(&flat, &gt));
    assert_eq!(m.pixel_ap, ranking::average_precision(&flat, &gt));
    assert_eq!(m.aupro, pro::aupro(&map_refs, &mask_refs, side, side, 0.3));
    assert_eq!(m.image_auroc, ranking::auroc(&image_scores, &image_labels));
    assert!(m.mad.is_some() && m.aupro.is_some());
}
