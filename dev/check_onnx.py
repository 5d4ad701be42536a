#!/usr/bin/env python3
"""Dev-only check of an exported cras ONNX graph (never run in CI).

    check_onnx.py MODEL.safetensors MODEL.onnx IMAGE_DIR [--ref-bin PATH] [--keep DIR]
    check_onnx.py --bench MODEL.onnx [--batches 1,8] [--iters 3]

Check mode: runs onnx.checker (full_check), then the candle reference
(`examples/export_reference`, the same Predictor path as `cras predict`, writing the
preprocessed inputs and float outputs as .npy), then the graph with ONNX Runtime (CPU) and
OpenVINO (CPU, f32 inference precision). Compares image scores (tolerance 1e-5), patch scores
and anomaly maps (1e-4; patches at f32 near-ties of the local alignment are reported apart),
class indices and similarities; with a `stated_class` input also the
stated-class run (-1 on even images). Exit status 1 when a tolerance is exceeded.

Bench mode: seconds per image for random inputs at each batch size with ONNX Runtime and
OpenVINO (default precision hint, i.e. bf16 where the CPU has it, and f32).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
from onnx import numpy_helper

TOL_SCORE, TOL_MAP = 1e-5, 1e-4


def ort_runner(path):
    so = ort.SessionOptions()
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return lambda feed: dict(zip(names, sess.run(None, feed)))


def ov_runner(path, f32=True):
    core = ov.Core()
    cfg = {"INFERENCE_PRECISION_HINT": "f32"} if f32 else {}
    compiled = core.compile_model(path, "CPU", cfg)
    req = compiled.create_infer_request()

    def run(feed):
        res = req.infer(feed)
        return {k.get_any_name(): np.asarray(v) for k, v in res.items()}

    return run


def adapted_features(path, image):
    """The adaptor output f [N,P,D] (by ONNX Runtime) and the center bank [K,P,D] of the graph."""
    m = onnx.load(path)
    mm = next(n.output[0] for n in m.graph.node if n.op_type == "MatMul"
              and any(i.startswith("adaptor.weight_t") for i in n.input))
    f = next(n.output[0] for n in m.graph.node if n.op_type == "Add" and mm in n.input)
    m.graph.output.append(onnx.helper.make_tensor_value_info(f, onnx.TensorProto.FLOAT, None))
    centers = next(numpy_helper.to_array(t) for t in m.graph.initializer
                   if t.name.startswith("centers"))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"image": image}
    if any(i.name == "stated_class" for i in sess.get_inputs()):
        feed["stated_class"] = np.full(image.shape[0], -1, dtype=np.int64)
    return sess.run([f], feed)[0].astype(np.float64), centers.astype(np.float64)


def tie_gap(f, centers, img, patch, k):
    """Cosine gap between the best and second-best center of class k for one patch."""
    u = centers[k] / np.linalg.norm(centers[k], axis=1, keepdims=True)
    cos = u @ (f[img, patch] / np.linalg.norm(f[img, patch]))
    top = np.sort(cos)[-2:]
    return top[1] - top[0]


def compare(tag, out, ref, feats, prefix=""):
    """Prints the differences; returns True when within tolerance.

    A patch whose two most similar centers are within ~1e-7 in cosine (an f32 near-tie) may be
    aligned with the other center by a different summation order; such patches are counted and
    their images' maps reported apart, and they do not fail the check."""
    ds = np.abs(out["image_score"] - ref[prefix + "score"]).max()
    dpatch = np.abs(out["patch_scores"] - ref[prefix + "patch"])
    dmap = np.abs(out["anomaly_map"] - ref[prefix + "map"]).reshape(len(dpatch), -1).max(axis=1)
    agree = (out["class_index"] == ref[prefix + "class"]).mean()
    magree = (out["matched_class"] == ref[prefix + "matched"]).mean()
    dsim = np.abs(out["class_similarity"] - ref[prefix + "sim"]).max()
    flat = dpatch.reshape(len(dpatch), -1)
    flips = np.argwhere(flat > TOL_MAP)
    gaps = [tie_gap(*feats, i, p, ref[prefix + "class"][i]) for i, p in flips]
    clean = np.ones(len(dpatch), bool)
    clean[flips[:, 0]] = False
    ties_ok = all(g < 1e-6 for g in gaps)
    dm_clean = dmap[clean].max() if clean.any() else 0.0
    ok = ds <= TOL_SCORE and dm_clean <= TOL_MAP and ties_ok and agree == 1 and magree == 1
    print(f"  {tag:<28} max|score| {ds:.2e}  max|map| {dmap.max():.2e} (images without a "
          f"near-tie flip: {dm_clean:.2e})  class agree {agree:.3f}  matched agree {magree:.3f}  "
          f"max|sim| {dsim:.2e}  {'OK' if ok else 'FAIL'}")
    if len(flips):
        print(f"  {'':<28} {len(flips)} of {flat.size} patches > {TOL_MAP:g}: alignment near-ties, "
              f"cosine gaps {', '.join(f'{g:.1e}' for g in gaps[:6])}")
    return ok


def check(a):
    print(f"onnx.checker.check_model(full_check=True): {a.onnx}")
    onnx.checker.check_model(a.onnx, full_check=True)
    m = onnx.load(a.onnx, load_external_data=False)
    meta = {p.key: p.value for p in m.metadata_props}
    print(f"  ir {m.ir_version}, opset {[(o.domain, o.version) for o in m.opset_import]}, "
          f"ops {sorted({n.op_type for n in m.graph.node})}")
    print(f"  metadata keys {sorted(meta)}")
    inputs = [i.name for i in m.graph.input]
    refdir = a.keep or tempfile.mkdtemp(prefix="cras-ref-")
    subprocess.run([a.ref_bin, a.model, refdir, a.images], check=True)
    ref = {f[:-4]: np.load(os.path.join(refdir, f)) for f in os.listdir(refdir) if f.endswith(".npy")}
    image = ref["image"]
    print(f"  {image.shape[0]} images {image.shape[1:]}, candle reference in {refdir}")
    feats = adapted_features(a.onnx, image)
    ok = True
    for name, runner in [("onnxruntime", ort_runner(a.onnx)), ("openvino f32", ov_runner(a.onnx))]:
        outs = {k: [] for k in ["image_score", "patch_scores", "anomaly_map", "class_index",
                                "matched_class", "class_similarity"]}
        souts = {k: [] for k in outs}
        for i in range(0, image.shape[0], a.batch):
            feed = {"image": image[i:i + a.batch]}
            if "stated_class" in inputs:
                feed["stated_class"] = np.full(feed["image"].shape[0], -1, dtype=np.int64)
            for k, v in runner(feed).items():
                outs[k].append(v)
            if "stated_class" in inputs:
                feed["stated_class"] = ref["stated"][i:i + a.batch]
                for k, v in runner(feed).items():
                    souts[k].append(v)
        ok &= compare(f"{name} (global match)", {k: np.concatenate(v) for k, v in outs.items()}, ref, feats)
        if "stated_class" in inputs:
            ok &= compare(f"{name} (stated_class)", {k: np.concatenate(v) for k, v in souts.items()},
                          ref, feats, "stated_")
    return ok


def bench(a):
    m = onnx.load(a.onnx, load_external_data=False)
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    s = dims[2]
    runners = [("onnxruntime", lambda: ort_runner(a.onnx)),
               ("openvino (default hint)", lambda: ov_runner(a.onnx, f32=False)),
               ("openvino f32", lambda: ov_runner(a.onnx, f32=True))]
    rng = np.random.default_rng(0)
    for name, make in runners:
        t0 = time.perf_counter()
        run = make()
        setup = time.perf_counter() - t0
        for b in [int(x) for x in a.batches.split(",")]:
            feed = {"image": rng.standard_normal((b, 3, s, s), dtype=np.float32)}
            run(feed)  # warm-up
            t = time.perf_counter()
            for _ in range(a.iters):
                run(feed)
            dt = (time.perf_counter() - t) / a.iters
            print(f"  {name:<24} batch {b:>2}: {dt / b:.4f} s/image ({dt:.3f} s/batch; "
                  f"session setup {setup:.1f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4, help="batch size of the check runs")
    ap.add_argument("--ref-bin", default=os.path.join(os.path.dirname(__file__), "..", "target",
                                                       "release", "examples", "export_reference"))
    ap.add_argument("--keep", help="write the candle reference .npy files here")
    a = ap.parse_args()
    if a.bench:
        a.onnx = a.paths[0]
        bench(a)
        return 0
    if len(a.paths) != 3:
        ap.error("check mode needs MODEL.safetensors MODEL.onnx IMAGE_DIR")
    a.model, a.onnx, a.images = a.paths
    return 0 if check(a) else 1


if __name__ == "__main__":
    sys.exit(main())
