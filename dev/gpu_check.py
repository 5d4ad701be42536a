#!/usr/bin/env python3
"""Helpers of dev/gpu_check.sh (the device check, issue 23); dev-only, never in CI. Needs numpy
only (torch for `device` when present).

  gpu_check.py device OUT CRAS_BIN         device facts -> OUT/device.json (+ device.txt)
  gpu_check.py parity DIR OUT/parity.json  compare the CPU reference figures (DIR/ref) with the
                                           device's (DIR/dev): descriptors, one training step,
                                           image scores; tolerances below
  gpu_check.py plan OUT NTRAIN NTEST EPOCHS LEFT_S CLASSES
                                           epochs (and classes) that fit the time left
  gpu_check.py summary OUT                 every figure of the run -> OUT/summary.json and a
                                           table on stdout

Tolerances (f32, the same binary on the device's CPU and on its GPU; cuBLAS / cuDNN sum in
another order than the CPU, so each is 10x the CPU-vs-PyTorch tolerance of the parity tests):
  descriptors and each layer     max|gpu - cpu| / max|cpu| < 1e-3  (tests/it/backbone_parity: 1e-4)
  training step 0 loss           relative < 1e-4                   (tests/it/train_parity: 1e-5)
  training step 0 p_true/p_fake  absolute < 1e-3 (a share of patches: a few may cross 0.5)
  weights after the step         checksum sum|w| relative < 1e-5; worst tensor max|diff| < 1e-3
                                 (Adam's first step moves a weight by +-lr whatever the gradient's
                                 size, so a gradient near 0 may move it either way: up to 2e-4)
  image scores                   |gpu - cpu| < 1e-4 * max(1, |cpu|), the same class for every
                                 image (tests/it/engine_parity: 1e-5 between CPU engines)
"""
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys

import numpy as np

TOL = {
    "descriptor_rel": 1e-3,
    "loss_rel": 1e-4,
    "share_abs": 1e-3,
    "checksum_rel": 1e-5,
    "weight_abs": 1e-3,
    "score_abs": 1e-4,
}
CUDA_LIB_DIRS = ["/usr/local/cuda-13.0/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib"]


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def sh(cmd, timeout=30):
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
        return (r.stdout + r.stderr).strip()
    except Exception as e:  # a hung or missing tool: the fact is the failure
        return f"ERROR: {e}"


# ---------------------------------------------------------------- device facts

def device(out, cras):
    facts = {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
             "python": sys.version.split()[0]}
    try:
        with open("/proc/meminfo") as f:
            facts["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            facts["cpu_model"] = m.group(1) if m else None
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        q = sh("nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm,"
               "power.limit,pstate --format=csv,noheader")
        facts["gpus"] = [dict(zip(["name", "driver", "memory", "compute_cap", "max_sm_clock",
                                   "power_limit", "pstate"], [v.strip() for v in line.split(",")]))
                         for line in q.splitlines() if line.strip()]
        m = re.search(r"CUDA Version:\s*([0-9.]+)", sh("nvidia-smi"))
        facts["driver_cuda"] = m.group(1) if m else None
    else:
        facts["gpus"] = []
        facts["nvidia_smi"] = "not found"
    libs = {}
    for d in CUDA_LIB_DIRS:
        for pat in ["libcublas.so*", "libcublasLt.so*", "libcurand.so*", "libnvrtc.so*",
                    "libcudart.so*", "libcudnn.so*", "libcuda.so*"]:
            for p in sorted(glob.glob(os.path.join(d, pat))):
                libs.setdefault(os.path.basename(p).split(".so")[0], []).append(p)
    facts["cuda_libs"] = libs
    facts["ld_library_path"] = os.environ.get("LD_LIBRARY_PATH", "")
    ldd = sh(f"ldd {cras}")
    facts["cras_ldd_not_found"] = [l.strip() for l in ldd.splitlines() if "not found" in l]
    facts["cras_ldd_cuda"] = [l.strip() for l in ldd.splitlines()
                              if re.search(r"cu|nvrtc", l.split("=>")[0])]
    facts["cras_version"] = sh(f"{cras} --version")
    src = os.path.join(os.path.dirname(cras), "cras.source")  # written by dev/gpu_prepare.sh
    facts["cras_source"] = open(src).read().strip() if os.path.exists(src) else None
    try:
        import torch
        facts["torch"] = torch.__version__
        facts["torch_cuda"] = torch.version.cuda
        facts["torch_cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            facts["torch_device"] = torch.cuda.get_device_name(0)
            facts["cudnn"] = torch.backends.cudnn.version()
    except Exception as e:  # torch missing or broken: record it
        facts["torch"] = f"unavailable: {e}"
    write_json(os.path.join(out, "device.json"), facts)
    with open(os.path.join(out, "device.txt"), "w") as f:
        f.write(sh("nvidia-smi") + "\n\n" + sh("nvidia-smi -q | head -80") + "\n\n" + ldd + "\n")
    print(json.dumps({k: facts.get(k) for k in ["gpus", "driver_cuda", "cpus", "torch",
                                                  "torch_cuda_available", "cras_ldd_not_found"]}))


# ---------------------------------------------------------------- parity

def read_safetensors(path):
    """name -> float64 array of every float tensor of a .safetensors file (numpy only)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    kinds = {"F32": np.float32, "F64": np.float64, "F16": np.float16}
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] not in kinds:
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=kinds[t["dtype"]]).astype(np.float64).reshape(t["shape"])
    return out


def first_step(log):
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "step":
                return r
    raise ValueError(f"{log}: no step line")


def scores(path):
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("{"):
                r = json.loads(line)
                out[r.get("path") or r.get("name")] = r
    return out


def check(res, name, value, tol, extra=None):
    ok = bool(np.isfinite(value) and value <= tol)
    res["checks"][name] = dict(value=float(value), tol=tol, ok=ok, **(extra or {}))
    return ok


def parity(d, out):
    ref, dev = os.path.join(d, "ref"), os.path.join(d, "dev")
    res = {"checks": {}, "errors": [], "tolerances": TOL}
    try:
        for p in sorted(glob.glob(os.path.join(ref, "embed_*.npy"))):
            a, b = np.load(p).astype(np.float64), np.load(os.path.join(dev, os.path.basename(p))).astype(np.float64)
            if a.shape != b.shape:
                res["errors"].append(f"{os.path.basename(p)}: shapes {a.shape} vs {b.shape}")
                continue
            rel = np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)
            check(res, "descriptor " + os.path.basename(p)[:-4], rel, TOL["descriptor_rel"], {"shape": list(a.shape)})
    except Exception as e:
        res["errors"].append(f"descriptors: {e}")
    try:
        s0, s1 = first_step(os.path.join(ref, "train.jsonl")), first_step(os.path.join(dev, "train.jsonl"))
        res["step0"] = {"cpu": s0, "device": s1}
        check(res, "step0 loss", abs(s1["loss"] - s0["loss"]) / max(abs(s0["loss"]), 1e-12), TOL["loss_rel"])
        for k in ["p_true", "p_fake"]:
            check(res, "step0 " + k, abs(s1[k] - s0[k]), TOL["share_abs"])
    except Exception as e:
        res["errors"].append(f"training step: {e}")
    try:
        wa, wb = read_safetensors(os.path.join(ref, "model.safetensors")), read_safetensors(os.path.join(dev, "model.safetensors"))
        if sorted(wa) != sorted(wb):
            res["errors"].append(f"model tensors differ: {sorted(set(wa) ^ set(wb))}")
        common = sorted(set(wa) & set(wb))
        ca, cb = sum(np.abs(wa[k]).sum() for k in common), sum(np.abs(wb[k]).sum() for k in common)
        res["weights"] = {"tensors": len(common), "checksum_cpu": float(ca), "checksum_device": float(cb)}
        check(res, "weights checksum", abs(cb - ca) / max(ca, 1e-12), TOL["checksum_rel"])
        worst = max(((np.abs(wa[k] - wb[k]).max(), k) for k in common if wa[k].shape == wb[k].shape), default=(0.0, ""))
        check(res, "weights worst tensor", worst[0], TOL["weight_abs"], {"tensor": worst[1]})
    except Exception as e:
        res["errors"].append(f"weights: {e}")
    try:
        sa, sb = scores(os.path.join(ref, "predict.jsonl")), scores(os.path.join(dev, "predict.jsonl"))
        if not sa or sorted(sa) != sorted(sb):
            res["errors"].append(f"scored images differ: {len(sa)} vs {len(sb)}")
        keys = sorted(set(sa) & set(sb))
        worst = max((abs(sb[k]["score"] - sa[k]["score"]) / max(1.0, abs(sa[k]["score"])) for k in keys), default=float("nan"))
        check(res, "image scores", worst, TOL["score_abs"], {"images": len(keys)})
        same = sum(sa[k]["class"] == sb[k]["class"] for k in keys)
        res["checks"]["image classes"] = dict(value=same, tol=len(keys), ok=same == len(keys) and len(keys) > 0)
    except Exception as e:
        res["errors"].append(f"scores: {e}")
    res["ok"] = not res["errors"] and all(c["ok"] for c in res["checks"].values()) and len(res["checks"]) >= 6
    write_json(out, res)
    for k, c in res["checks"].items():
        print(f"  {k:34s} {c['value']:<12.4g} tol {c['tol']:<8g} {'ok' if c['ok'] else 'FAIL'}")
    for e in res["errors"]:
        print("  error:", e)
    print("parity:", "PASS" if res["ok"] else "FAIL")


# ---------------------------------------------------------------- training plan

def plan(out, n_train, n_test, epochs, left, classes):
    """Epochs (and, if even one epoch of every class would not fit, the number of classes) of the
    training step that leave time for the evaluation, from this run's own `cras bench` figures
    (the largest f32 batch measured), each estimate x1.5. Prints "EPOCHS TRAIN_LIMIT_S CLASSES";
    writes OUT/train_plan.json."""
    n_train, n_test, epochs, left, classes = int(n_train), int(n_test), int(epochs), float(left), int(classes)
    benches = [load(p) for p in glob.glob(os.path.join(out, "cras_bench_f32_b*.json"))]
    benches = [b for b in benches if b and b.get("training_images_per_s_cached")]
    res = {"wanted_epochs": epochs, "left_s": left, "train_images": n_train, "test_images": n_test,
           "classes": classes, "all_classes": classes}
    if not benches:
        res.update(epochs=epochs, train_limit_s=max(30, left - 60), basis="no bench figures: a fixed 60 s for eval")
    else:
        b = max(benches, key=lambda b: b["batch_size"])
        # + 30 s: pixel metrics over 1725 maps of 288 px took 15 s on 2 busy cores here
        eval_fixed, eval_var = 30, 1.5 * n_test / b["inference_images_per_s"]
        cache_fixed, cache_var = 20, 1.5 * n_train / b["descriptors_images_per_s"]
        per_epoch = 1.5 * n_train / b["training_images_per_s_cached"]
        fit = int((left - eval_fixed - eval_var - cache_fixed - cache_var) // per_epoch)
        share = 1.0
        if fit < 1:  # not even one epoch of every class: fewer classes, one epoch
            share = max(0.0, (left - eval_fixed - cache_fixed) / (eval_var + cache_var + per_epoch))
            res["classes"] = max(1, min(classes, int(classes * share)))
            share = res["classes"] / classes
        res.update(epochs=max(1, min(epochs, fit)), train_limit_s=max(30, left - eval_fixed - share * eval_var),
                   est_eval_s=eval_fixed + share * eval_var, est_cache_s=cache_fixed + share * cache_var,
                   est_epoch_s=share * per_epoch, basis=f"cras bench f32 batch {b['batch_size']}")
    write_json(os.path.join(out, "train_plan.json"), res)
    print(res["epochs"], int(res["train_limit_s"]), res["classes"])


# ---------------------------------------------------------------- summary

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None


def last_json_line(path):
    """The last line of a log that is a JSON object (the python scripts print one)."""
    try:
        with open(path) as f:
            lines = [l for l in f if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except Exception:
        return None


def fmt(v, nd=1):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def summary(out):
    steps = []
    if os.path.exists(os.path.join(out, "steps.jsonl")):
        with open(os.path.join(out, "steps.jsonl")) as f:
            steps = [json.loads(l) for l in f if l.strip()]
    s = {"steps": steps, "device": load(os.path.join(out, "device.json")),
         "parity": load(os.path.join(out, "parity.json")), "cras_bench": {}, "authors": {}}
    for p in sorted(glob.glob(os.path.join(out, "cras_bench_*.json"))):
        s["cras_bench"][os.path.basename(p)[11:-5]] = load(p)
    for p in sorted(glob.glob(os.path.join(out, "authors_*.json"))):
        s["authors"][os.path.basename(p)[8:-5]] = load(p)
    s["synth"] = load(os.path.join(out, "synth.json"))
    epochs = []
    if os.path.exists(os.path.join(out, "train_log.jsonl")):
        with open(os.path.join(out, "train_log.jsonl")) as f:
            epochs = [r for r in map(json.loads, f) if r.get("kind") == "epoch"]
    s["train"] = {"epochs": epochs, "run": load(os.path.join(out, "train.json")),
                  "plan": load(os.path.join(out, "train_plan.json"))}
    s["eval"] = load(os.path.join(out, "eval.json"))
    write_json(os.path.join(out, "summary.json"), s)

    dev = s["device"] or {}
    gpu = (dev.get("gpus") or [{}])
    print("\n==== device check summary ====")
    print(f"device: {gpu[0].get('name', 'no GPU')}  driver {gpu[0].get('driver', '-')}  CUDA {dev.get('driver_cuda', '-')}"
          f"  cpus {dev.get('cpus')}  torch {dev.get('torch')}")
    print("\nsteps:")
    for st in steps:
        flag = "TIMEOUT" if st.get("timed_out") else ("ok" if st.get("rc") == 0 else
                                                      st.get("note") if st.get("rc") is None else f"rc={st.get('rc')}")
        print(f"  {st['step']:22s} {fmt(st.get('seconds')):>7s} s  (limit {st.get('limit_s')} s)  {flag}")
    par = s["parity"]
    print("\nparity (device vs its CPU, f32):", "-" if par is None else ("PASS" if par.get("ok") else "FAIL"))
    if par:
        for k, c in par.get("checks", {}).items():
            print(f"  {k:34s} {c['value']:<12.4g} tol {c['tol']:<8g} {'ok' if c['ok'] else 'FAIL'}")
        for e in par.get("errors", []):
            print("  error:", e)
    print("\ninference / training speed (img/s; latency in ms):")
    print(f"  {'what':34s} {'infer img/s':>11s} {'lat b1 ms':>9s} {'desc img/s':>10s} {'train img/s':>11s}")
    for k, b in sorted(s["cras_bench"].items()):
        if b:
            print(f"  {'cras ' + k:34s} {fmt(b.get('inference_images_per_s')):>11s} {fmt(b.get('latency_batch1_ms')):>9s}"
                  f" {fmt(b.get('descriptors_images_per_s')):>10s} {fmt(b.get('training_images_per_s_cached')):>11s}")
    for st in steps:
        if st["step"].startswith("cras_bench") and st.get("rc") != 0:
            print(f"  {st['step']:34s} not measured: {st.get('note', '')[:150]}")
    for k, a in sorted(s["authors"].items()):
        if a:
            lat = a.get("s_per_img", 0) * 1000 if a.get("batch") == 1 else None
            tr = a.get("img_per_s") if k.startswith("train") else None
            inf = None if tr else a.get("img_per_s")
            print(f"  {'authors ' + k:34s} {fmt(inf):>11s} {fmt(lat):>9s} {'':>10s} {fmt(tr):>11s}")
    ratios = {}
    au = s["authors"]
    for k in sorted(au):
        b = k[len("infer_b"):]
        c, a = s["cras_bench"].get(f"f32_b{b}"), au[k]
        if k.startswith("infer_b") and c and a and a.get("img_per_s"):
            ratios[f"inference img/s, batch {b}"] = c["inference_images_per_s"] / a["img_per_s"]
    c, a = s["cras_bench"].get("f32_b1"), au.get("infer_b1")
    if c and a and a.get("s_per_img"):
        ratios["latency, batch 1 (their ms / ours)"] = a["s_per_img"] * 1000 / c["latency_batch1_ms"]
    if epochs and au.get("train") and au["train"].get("img_per_s"):
        later = epochs[1:] or epochs
        rate = sum(e["images"] for e in later) / max(sum(e["seconds"] for e in later), 1e-9)
        ratios["training epoch img/s (ours: cached features)"] = rate / au["train"]["img_per_s"]
        r = s["train"]["run"]
        if r and r.get("seconds") and r.get("images"):
            ratios["whole training command img/s x epochs"] = (
                r["images"] * r["epochs"] / r["seconds"]) / au["train"]["img_per_s"]
    s["ratios"] = ratios
    if ratios:
        print("  speed ratios, cras / authors' code on the same device (> 1: cras faster):")
    for k, v in ratios.items():
        print(f"    {k:46s} {v:.2f}x")
    if s["synth"]:
        print(f"\nsynthetic set: {s['synth'].get('line', '')}")
    if epochs or s["train"]["run"]:
        pl = s["train"]["plan"] or {}
        net = (s["train"]["run"] or {}).get("net") or "the paper configuration"
        cls = (s["train"]["run"] or {}).get("classes") or "every class"
        print(f"\ntraining ({net}; {cls}; planned for the time left: {pl.get('epochs', '-')} of"
              f" {pl.get('wanted_epochs', '-')} epochs, {pl.get('classes', '-')} of {pl.get('all_classes', '-')}"
              f" classes, {pl.get('basis', '')}):")
        for e in epochs:
            print(f"  epoch {e['epoch'] + 1}: {e['seconds']:.1f} s, {e['images'] / max(e['seconds'], 1e-9):.1f} img/s,"
                  f" loss {e['loss']:.4f}, p_true {e['p_true']:.3f}, p_fake {e['p_fake']:.3f}")
        r = s["train"]["run"]
        if r:
            spent = sum(e["seconds"] for e in epochs)
            print(f"  whole command {r.get('seconds', 0):.1f} s (feature cache, centers and writing: about "
                  f"{r.get('seconds', 0) - spent:.1f} s)")
    ev = s["eval"]
    if ev:
        print(f"\neval: {ev.get('seconds', 0):.1f} s for {ev.get('images', '-')} images"
              f" ({fmt(ev.get('images_per_s'))} img/s whole command, {fmt(ev.get('scoring_images_per_s'))} img/s"
              f" scoring pass with decoding); mean image AUROC {fmt(ev.get('image_auroc'), 3)},"
              f" pixel AUROC {fmt(ev.get('pixel_auroc'), 3)} (random backbone: not a quality figure)")
    write_json(os.path.join(out, "summary.json"), s)
    print("\nfigures: summary.json (everything), one JSON per step beside it")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "device":
        device(sys.argv[2], sys.argv[3])
    elif cmd == "parity":
        parity(sys.argv[2], sys.argv[3])
    elif cmd == "plan":
        plan(*sys.argv[2:8])
    elif cmd == "summary":
        summary(sys.argv[2])
    else:
        sys.exit(__doc__)
