"""Generates the metric and anomaly-map fixtures under tests/fixtures/metrics/.

Dev-only (never run in CI). How to run, from the repository root:

    pip install numpy scipy scikit-learn scikit-image torch
    python dev/gen_metrics_fixtures.py

Writes (all small, deterministic given the seeds below):
  ranking.json      score/label cases with scikit-learn's roc_auc_score, average_precision_score
                    and the F1max of precision_recall_curve (null where scikit-learn raises or
                    returns NaN, or warns without positives).
  pro.json          small map/mask sets with several regions per mask: exact AUPRO at FPR 0.3 by a
                    straightforward full threshold sweep (skimage.measure.label regions), the CRAS
                    reference PRO (a port of its compute_pro semantics, cv2.dilate replaced by the
                    equivalent scipy binary dilation) and the pixel AUROC / AP / F1max.
  anomaly_map.json  + *.bin (raw little-endian f32): PyTorch F.interpolate(bilinear,
                    align_corners=False) and scipy.ndimage.gaussian_filter outputs.
"""

import json
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage import measure
from sklearn import metrics

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "metrics")


def f32_list(a):
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def sk_auroc(labels, scores):
    try:
        value = float(metrics.roc_auc_score(labels, scores))
    except ValueError:  # older scikit-learn raises with one class ...
        return None
    return None if np.isnan(value) else value  # ... newer warns and returns NaN


def sk_ap(labels, scores):
    if not np.any(labels):
        return None  # scikit-learn warns "No positive class found" and returns a meaningless 0
    return float(metrics.average_precision_score(labels, scores))


def sk_f1max(labels, scores):
    if not np.any(labels):
        return None
    precision, recall, _ = metrics.precision_recall_curve(labels, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(np.max(f1))


def ranking_cases(rng):
    cases = []

    def add(name, scores, labels):
        scores = np.asarray(scores, dtype=np.float32)
        labels = np.asarray(labels, dtype=bool)
        cases.append(
            {
                "name": name,
                "scores": f32_list(scores),
                "labels": [bool(v) for v in labels],
                "auroc": sk_auroc(labels.astype(int), scores),
                "ap": sk_ap(labels.astype(int), scores),
                "f1max": sk_f1max(labels.astype(int), scores),
            }
        )

    labels = rng.random(300) < 0.3
    add("random", rng.normal(size=300) + 0.8 * labels, labels)
    labels = rng.random(400) < 0.4
    add("ties", np.round(rng.normal(size=400) + labels, 1), labels)
    labels = rng.random(2000) < 0.1
    add("heavy_ties", np.floor(rng.random(2000) * 12 + 3 * labels), labels)
    add("constant", np.full(50, 0.25), rng.random(50) < 0.5)
    add("all_positive", rng.random(30), np.ones(30, bool))
    add("all_negative", rng.random(30), np.zeros(30, bool))
    add("perfect", [0.1, 0.2, 0.8, 0.9], [False, False, True, True])
    add("inverted", [0.9, 0.8, 0.2, 0.1], [False, False, True, True])
    add("signed_zero_and_extremes", [-0.0, 0.0, 3e38, -3e38, -1.5, 0.0], [True, False, True, False, False, True])
    return cases


def regions_of(masks):
    """Per image: list of boolean region masks (8-connected, skimage default)."""
    out = []
    for mask in masks:
        lab = measure.label(mask, connectivity=2)
        out.append([lab == r for r in range(1, lab.max() + 1)])
    return out


def exact_aupro(maps, masks, limit=0.3):
    """Straightforward exact AUPRO: every distinct score as threshold (anomalous iff >= t)."""
    regions = [(img, r) for img, per_image in enumerate(regions_of(masks)) for r in per_image]
    assert regions, "AUPRO needs at least one defect region"
    negatives = masks == 0
    n_neg = negatives.sum()
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        binary = maps >= t
        fpr = np.logical_and(binary, negatives).sum() / n_neg
        points.append((fpr, np.mean([binary[img][r].mean() for img, r in regions])))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if x1 >= limit:
            y_at = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_at) / 2
            break
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def reference_pro(masks, amaps, num_th=200):
    """The CRAS authors' compute_pro semantics, without pandas (DataFrame.append is gone)."""
    rows = []
    min_th, max_th = amaps.min(), amaps.max()
    delta = (max_th - min_th) / num_th
    square = np.ones((5, 5), bool)
    per_image_regions = regions_of(masks)
    negatives = masks == 0
    for th in np.arange(min_th, max_th, delta):
        binary = amaps > th
        pros = []
        for img, regions in enumerate(per_image_regions):
            dilated = ndimage.binary_dilation(binary[img], structure=square)
            for r in regions:
                pros.append(dilated[r].sum() / r.sum())
        fpr = np.logical_and(negatives, binary).sum() / negatives.sum()
        rows.append((fpr, np.mean(pros), th))
    kept = np.array([(f, p) for f, p, _ in rows if f < 0.3])
    fpr = (kept[:, 0] - kept[:, 0].min()) / (kept[:, 0].max() - kept[:, 0].min() + 1e-10)
    return float(metrics.auc(fpr, kept[:, 1]))


def pixel_case(rng, name, n_images, height, width, quantize=None):
    maps = np.zeros((n_images, height, width), np.float32)
    masks = np.zeros((n_images, height, width), np.uint8)
    for i in range(n_images):
        noise = ndimage.gaussian_filter(rng.normal(size=(height, width)), 1.5)
        if i % 3 != 2:  # every third image is defect-free
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.integers(0, height), rng.integers(0, width)
                ry, rx = rng.integers(1, 5), rng.integers(1, 6)
                yy, xx = np.ogrid[:height, :width]
                blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
                masks[i][blob] = 1
            # Two regions touching only diagonally must merge (8-connectivity).
            if i == 0:
                masks[i, 1, 1] = masks[i, 2, 2] = 1
        signal = ndimage.gaussian_filter(masks[i].astype(float), 1.0)
        maps[i] = (noise + 2.5 * signal * rng.uniform(0.3, 1.2)).astype(np.float32)
    if quantize:
        maps = (np.round(maps / quantize) * quantize).astype(np.float32)
    flat_scores, flat_labels = maps.ravel(), masks.ravel().astype(int)
    return {
        "name": name,
        "width": width,
        "height": height,
        "maps": [f32_list(m) for m in maps],
        "masks": [[int(v) for v in m.ravel()] for m in masks],
        "aupro": exact_aupro(maps, masks),
        "aupro_reference": reference_pro(masks, maps),
        "pixel_auroc": sk_auroc(flat_labels, flat_scores),
        "pixel_ap": sk_ap(flat_labels, flat_scores),
        "pixel_f1max": sk_f1max(flat_labels, flat_scores),
        "image_regions": [len(r) for r in regions_of(masks)],
    }


def write_bin(name, array):
    np.asarray(array, dtype="<f4").tofile(os.path.join(OUT, name))


def anomaly_map_cases(rng):
    cases = []
    patch = rng.random((36, 36)).astype(np.float32)
    up = F.interpolate(torch.from_numpy(patch)[None, None], size=288, mode="bilinear", align_corners=False)
    amap = ndimage.gaussian_filter(up[0, 0].numpy(), sigma=4)
    write_bin("grid36_patch.bin", patch)
    write_bin("grid36_map288.bin", amap)
    cases.append({"name": "grid36", "in": [36, 36], "out": [288, 288], "sigma": 4.0,
                  "input": "grid36_patch.bin", "map": "grid36_map288.bin"})
    small = rng.normal(size=(5, 7)).astype(np.float32)
    up = F.interpolate(torch.from_numpy(small)[None, None], size=(23, 31), mode="bilinear", align_corners=False)
    up = up[0, 0].numpy()
    write_bin("small_input.bin", small)
    write_bin("small_upsampled.bin", up)
    write_bin("small_blur4.bin", ndimage.gaussian_filter(up, sigma=4))
    write_bin("small_blur1_5.bin", ndimage.gaussian_filter(up, sigma=1.5))
    cases.append({"name": "small", "in": [5, 7], "out": [23, 31], "input": "small_input.bin",
                  "upsampled": "small_upsampled.bin",
                  "blurred": [{"sigma": 4.0, "file": "small_blur4.bin"},
                              {"sigma": 1.5, "file": "small_blur1_5.bin"}]})
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20250517)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranking = ranking_cases(rng)
    with open(os.path.join(OUT, "ranking.json"), "w") as f:
        json.dump(ranking, f)
    pro = [
        pixel_case(rng, "blobs", 6, 24, 32),
        pixel_case(rng, "blobs_quantized", 6, 20, 26, quantize=0.1),
    ]
    with open(os.path.join(OUT, "pro.json"), "w") as f:
        json.dump(pro, f)
    with open(os.path.join(OUT, "anomaly_map.json"), "w") as f:
        json.dump(anomaly_map_cases(rng), f, indent=1)
    for c in pro:
        print(c["name"], {k: c[k] for k in ("aupro", "aupro_reference", "pixel_auroc", "image_regions")})


if __name__ == "__main__":
    main()
