"""Both codes end to end over many seeds on a benchmark of realistic character; dev-only, never
in CI. The benchmark is dev/realistic_bench.py's (8 classes, 30 train images each, WRN50-2 with
re-estimated BatchNorm statistics); the configuration is the one issue 25 describes: layer2 +
layer3, resize 183 / crop 160, 384 dims, noise 0.1, k 0.3, 40 epochs, batch 32, multi-class,
hold-out 0, last epoch, the authors' evaluation (batch vote over 32, their masks).

  authors  The authors' code (github.com/cqylunlun/CRAS, checked out at --ref): their CRAS.load,
           center init (per-class shuffled loaders of batch 32), `_train_discriminator` over a
           shuffled multi-class DataLoader (drop_last False), their `predict` + `_evaluate` per
           class. One change for speed: `_embed` is memoised per image (the backbone runs in
           eval mode under no_grad, so its output for an image never changes); their
           shuffling, initialisation and noise draws are untouched.
  cras     `cras train --holdout 0 ...` + `cras eval --batch-vote --vote-group 32
           --reference-masks`.

Each seed writes <results>/<code>_<seed>.json: mean image / pixel AUROC, the per-class figures,
per-epoch mean loss / p_true / p_fake, and (authors) the first step's and the last epoch's
discriminator score quantiles for true and synthetic patches. Seeds already done are skipped,
so the run can be stopped and resumed. `report` prints the per-seed table (a row a seed), mean +-
standard error, the difference with Welch's t and its 95% interval, the per-class means, and the
curves averaged over seeds (loss, p_true / p_fake, score quantiles, center changes).

    python dev/fidelity_seeds.py authors --bench /work/bench/realistic --results R --seeds 0-7
    # their model, centers and test scores too, to score with cras (import-reference + eval)
    python dev/fidelity_seeds.py authors --bench B --results R --seeds 100 --keep K
    python dev/fidelity_seeds.py cras --cras target/release/cras --bench ... --results R --seeds 0-7
    python dev/fidelity_seeds.py report --results R[,R2...]
    # the authors' code on a GPU (float32, TF32 off); stop starting seeds at a Unix time
    python dev/fidelity_seeds.py authors --device cuda --deadline T ...

dev/gpu_fidelity.sh runs both codes over many seeds in one call on the GPU machine.
"""
import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS, CROP, RESIZE, DIMS = ["layer2", "layer3"], 160, 183, 384
NOISE, K, LR, EPOCHS, BATCH = 0.1, 0.3, 1e-4, 40, 32
STOP = 0  # --stop-after


def classes_of(bench):
    return sorted(d for d in os.listdir(bench) if os.path.isdir(os.path.join(bench, d, "train")))


def seeds_of(spec):
    out = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)


class Recorder:
    """Stands in for their TensorBoard wrapper: keeps the per-step scalars."""

    def __init__(self):
        self.rows = []
        self.logger = self
        self.g_iter = 0

    def add_scalar(self, name, value, step):
        self.rows.append((name, float(value), step))

    def step(self):
        pass


class Bar:
    def set_description_str(self, *_):
        pass


EMBED_CACHE, EMBED_SHAPES = {}, {}


def memoise_embed(model):
    """`_embed` answered from a per-image cache (keyed by the image tensor's bytes), shared by
    the seeds of one process: every seed loads the same backbone file, so its descriptors are
    the same."""
    import torch
    real, cache, shapes = model._embed, EMBED_CACHE, EMBED_SHAPES

    def embed(images, detach=True, provide_patch_shapes=False, evaluation=False):
        keys = [hashlib.sha1(im.detach().cpu().numpy().tobytes()).digest() for im in images]
        todo = [i for i, k in enumerate(keys) if k not in cache]
        if todo:
            feats, ps = real(images[todo], detach, provide_patch_shapes, evaluation)
            shapes["p"] = ps
            feats = feats.reshape(len(todo), -1, feats.shape[-1])
            for j, i in enumerate(todo):
                cache[keys[i]] = feats[j].clone()
        return torch.cat([cache[k] for k in keys]), shapes["p"]
    model._embed = embed


def quantiles(t):
    a = t.detach().flatten().cpu().numpy()
    return {"mean": float(a.mean()), "q": [float(x) for x in np.quantile(a, [0.05, 0.25, 0.5, 0.75, 0.95])]}


class CenterTrace:
    """Which center each training patch took in their `_train_discriminator`: wraps the loader
    to see each batch's image paths and `torch.argmax` (their center search, one call per image
    of the batch, in batch order) to see the indices. Neither draws random numbers."""

    def __init__(self, loader):
        self.loader, self.paths, self.picks = loader, [], []

    def __iter__(self):
        for item in self.loader:
            self.paths.extend(item["image_path"])
            yield item

    def __len__(self):
        return len(self.loader)

    def epoch(self, model, e):
        """Runs their epoch `e` under the trace; returns {image path: centers}."""
        import torch
        real = torch.argmax
        picks = self.picks = []

        def argmax(t, dim=None, **kw):
            out = real(t, dim=dim, **kw)
            if dim == 1 and t.dim() == 2:
                picks.append(out.clone())
            return out
        self.paths = []
        torch.argmax = argmax
        try:
            model._train_discriminator(self, e, Bar(), "")
        finally:
            torch.argmax = real
        if len(picks) != len(self.paths):
            raise RuntimeError(f"{len(picks)} center searches for {len(self.paths)} images")
        return {p: c.cpu().numpy() for p, c in zip(self.paths, picks)}


def share_changed(before, after):
    if not before:
        return None
    moved = sum(int((before[k] != after[k]).sum()) for k in after)
    return moved / sum(v.size for v in after.values())


def authors_model(args, seed, net=None):
    """Their model as their main.py builds it for `seed` (fresh backbone from the bench's file
    unless `net` is given), with the TensorBoard wrapper replaced and `_embed` memoised."""
    import torch
    import torchvision
    sys.path.insert(0, args.ref)
    import cras as ref_cras
    import utils as ref_utils
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":  # float32 as on the CPU: no TF32 in convolutions or products
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    ref_utils.fix_seeds(seed, device)
    if net is None:
        net = torchvision.models.wide_resnet50_2(weights=None)
        net.load_state_dict(torch.load(os.path.join(args.bench, "wrn50_bnstats.pth")))
        net.name, net.seed = "wideresnet50", None
    model = ref_cras.CRAS(device)
    model.load(backbone=net, layers_to_extract_from=LAYERS, device=device,
               input_shape=(3, CROP, CROP), pretrain_embed_dimension=DIMS, target_embed_dimension=DIMS,
               patchsize=3, meta_epochs=0, eval_epochs=1, dsc_layers=3, train_backbone=False,
               pre_proj=1, noise=NOISE, k=K, lr=LR, limit=-1)
    work = tempfile.mkdtemp(prefix="authors-")
    os.chdir(work)
    model.set_model_dir(os.path.join(work, "models"), "bench")
    model.logger = Recorder()
    memoise_embed(model)
    return model


def authors_data(args, classes):
    """Their dataset and loaders (batch 32, shuffled training loaders, drop_last False)."""
    import torch
    sys.path.insert(0, args.ref)
    from datasets.mvtec import MVTecDataset, DatasetSplit

    def ds(cls, split):
        return MVTecDataset(args.bench, classname=cls, resize=RESIZE, imagesize=CROP, split=split)

    def loader(d, shuffle):
        return torch.utils.data.DataLoader(d, batch_size=BATCH, shuffle=shuffle, drop_last=False)
    return ds, loader, DatasetSplit


def init_stats(args, classes):
    """Step 0 from each code's own seeded start, for seeds 0..N-1 (N = --init-seeds): the
    initialisation, the center bank, the first batch and its noise, as each code draws them."""
    import torch
    sys.path.insert(0, HERE)
    import long_run_parity as lrp
    ds, loader, split = authors_data(args, classes)
    out = {"authors": [], "cras": []}
    net = None
    for seed in range(args.init_seeds):
        model = authors_model(args, seed, net)
        net = model.backbone  # every later seed reads descriptors from the memo
        model.trainer(None, [loader(ds([c], split.TRAIN), True) for c in classes], [], classes, "multi")
        first = next(iter(loader(ds(classes, split.TRAIN), True)))
        model._train_discriminator([first], 0, Bar(), "")
        row = {k: v for k, v, _ in model.logger.rows}
        out["authors"].append(row)
        print("authors", seed, row, flush=True)
    train = ds(classes, split.TRAIN)
    items = [train[i] for i in range(len(train))]
    with torch.no_grad():
        g = torch.stack([model._embed(it["image"].unsqueeze(0))[0] for it in items])
    labels = [classes.index(it["image_path"].split(os.sep)[-4]) for it in items]
    stem = os.path.join(tempfile.mkdtemp(prefix="init-"), "in")
    lrp.write_fixture(stem, {"batch_size": BATCH, "classes": classes},
                      {"g": g.numpy(), "labels": np.array(labels)})
    lines = subprocess.run([args.example, "--init-stats", stem, str(args.init_seeds), str(NOISE)],
                           check=True, capture_output=True, text=True,
                           env=dict(os.environ, RAYON_NUM_THREADS=str(args.threads))).stdout
    out["cras"] = [json.loads(x) for x in lines.splitlines() if x.strip()]
    write_json(os.path.join(args.results, "init_stats.json"), out)
    from scipy import stats
    print(f"\nstep 0 from each code's own start, {args.init_seeds} seeds (mean +- s.e., sd)")
    for k in ("loss", "p_true", "p_fake"):
        a = np.array([r[k] for r in out["cras"]])
        b = np.array([r[k] for r in out["authors"]])
        t = stats.ttest_ind(a, b, equal_var=False)
        print(f"{k}: cras {a.mean():.4f} +- {a.std(ddof=1) / np.sqrt(len(a)):.4f} (sd {a.std(ddof=1):.4f}), "
              f"authors {b.mean():.4f} +- {b.std(ddof=1) / np.sqrt(len(b)):.4f} (sd {b.std(ddof=1):.4f}); "
              f"Welch t {t.statistic:.2f}, p {t.pvalue:.3f}")


def authors_seed(args, seed, classes):
    import torch
    import cv2
    cv2.imwrite = lambda *a, **k: True  # their per-image visualisations: not needed here
    model = authors_model(args, seed)
    ds, loader, DatasetSplit = authors_data(args, classes)
    per_class = [loader(ds([c], DatasetSplit.TRAIN), True) for c in classes]
    model.trainer(None, per_class, [], classes, "multi")  # center init only (meta_epochs 0)
    train = CenterTrace(loader(ds(classes, DatasetSplit.TRAIN), True))
    captured = []
    hook = model.discriminator.register_forward_hook(
        lambda m, i, o: captured.append(o.detach().clone()) if m.training else None)
    epochs, first, last, centers = [], None, [], {}
    for e in range(STOP or EPOCHS):
        start = len(model.logger.rows)
        now = train.epoch(model, e)
        rows = model.logger.rows[start:]
        row = {k: float(np.mean([v for n, v, _ in rows if n == k])) for k in ("loss", "p_true", "p_fake")}
        row["true_scores"] = quantiles(torch.cat([s[:len(s) // 2] for s in captured]))
        row["fake_scores"] = quantiles(torch.cat([s[len(s) // 2:] for s in captured]))
        row["center_changed"] = share_changed(centers, now)
        centers = now
        epochs.append(row)
        if first is None:
            s = captured[0]
            first = {"true": quantiles(s[:len(s) // 2]), "fake": quantiles(s[len(s) // 2:])}
        if e == EPOCHS - 1:
            last = {"true": row["true_scores"], "fake": row["fake_scores"]}
        captured.clear()
    hook.remove()
    if STOP:
        return {"code": "authors", "seed": seed, "epochs": epochs, "scores_first_step": first}
    ia, pa, kept = {}, {}, {}
    for c in classes:
        t = loader(ds([c], DatasetSplit.TEST), False)
        images, scores, segs, labels, masks = model.predict(t)
        kept.update({row[2]: float(v) for row, v in zip(t.dataset.data_to_iterate, scores)})
        i_auc, _, p_auc, _, _ = model._evaluate(images, scores, segs, labels, masks, "bench_" + c)
        ia[c], pa[c] = float(i_auc), float(p_auc)
    if args.keep:
        keep_authors_model(model, kept, os.path.join(args.keep, f"authors_{seed}"))
    return {"code": "authors", "seed": seed, "image_auroc": float(np.mean(list(ia.values()))),
            "pixel_auroc": float(np.mean(list(pa.values()))), "per_class_image": ia,
            "per_class_pixel": pa, "epochs": epochs, "scores_first_step": first,
            "scores_last_epoch": last}


def keep_authors_model(model, scores, out):
    """Writes the trained model as their trainer saves it (`ckpt.pth`: the discriminator's and
    the adaptor's state dicts; `center.pth`: the center bank), for `cras import-reference`, and
    their raw image score of every test image (`scores.json`, by path)."""
    import torch
    os.makedirs(out, exist_ok=True)
    state = {"discriminator": model.discriminator.state_dict(),
             "pre_projection": model.pre_projection.state_dict()}
    torch.save(state, os.path.join(out, "ckpt.pth"))
    torch.save(model.c2, os.path.join(out, "center.pth"))
    write_json(os.path.join(out, "scores.json"), scores)


def cras_seed(args, seed, classes):
    work = tempfile.mkdtemp(prefix="cras-")
    model, log, out = (os.path.join(work, n) for n in ("m.safetensors", "train.jsonl", "eval"))
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    subprocess.run([args.cras, "train", "--data", args.bench, "--out", model,
                    "--weights", os.path.join(args.bench, "wrn50_bnstats.pth"),
                    "--backbone", "wide_resnet50_2", "--layers", ",".join(LAYERS), "--dims", str(DIMS),
                    "--image-size", str(CROP), "--resize", str(RESIZE), "--noise", str(NOISE),
                    "--holdout", "0", "--epochs", str(EPOCHS), "--batch-size", str(BATCH),
                    "--seed", str(seed), "--reference-masks", "--device", "cpu", "--log", "warn",
                    "--quiet", "--train-log", log] + (["--stop-after", str(STOP)] if STOP else []),
                   check=True, stdout=subprocess.DEVNULL, env=env)
    steps = [json.loads(line) for line in open(log)]
    epochs = [{k: s.get(k) for k in ("loss", "p_true", "p_fake", "true_scores", "fake_scores", "center_changed")}
              for s in steps if s.get("kind") == "epoch"]
    first = next(s for s in steps if s.get("kind") == "step")
    first = {k: first[k] for k in ("loss", "p_true", "p_fake")}
    if STOP:
        shutil.rmtree(work, ignore_errors=True)
        return {"code": "cras", "seed": seed, "epochs": epochs, "first_step": first}
    subprocess.run([args.cras, "eval", "--model", model, "--data", args.bench, "--out", out,
                    "--batch-vote", "--vote-group", str(BATCH), "--reference-masks", "--gallery", "0",
                    "--device", "cpu", "--log", "warn", "--quiet"], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    m = json.load(open(os.path.join(out, "metrics.json")))
    shutil.rmtree(work, ignore_errors=True)
    per = {c["name"]: c for c in m["classes"]}
    return {"code": "cras", "seed": seed, "image_auroc": m["mean"]["image_auroc"],
            "pixel_auroc": m["mean"]["pixel_auroc"],
            "per_class_image": {c: v.get("image_auroc") for c, v in per.items()},
            "per_class_pixel": {c: v.get("pixel_auroc") for c, v in per.items()},
            "epochs": epochs, "first_step": first}


def run(args):
    classes = classes_of(args.bench)
    os.makedirs(args.results, exist_ok=True)
    took = 0.0
    for s in seeds_of(args.seeds):
        path = os.path.join(os.path.abspath(args.results), f"{args.mode}_{s}.json")
        if os.path.exists(path):
            continue
        if args.deadline and time.time() + took > args.deadline:
            print(f"{args.mode}: seed {s} would end after the deadline; stopping", flush=True)
            break
        start = time.time()
        r = (authors_seed if args.mode == "authors" else cras_seed)(args, s, classes)
        r["device"], r["seconds"] = args.device if args.mode == "authors" else "cpu", time.time() - start
        took = r["seconds"]
        write_json(path, r)
        print(args.mode, s, r.get("image_auroc"), r.get("pixel_auroc"),
              [round(e["loss"], 4) for e in r["epochs"]], flush=True)


def report(args):
    from scipy import stats
    runs = {}
    for folder in args.results.split(","):  # several folders: a later one's seed wins
        for p in sorted(glob.glob(os.path.join(folder, "*.json"))):
            r = json.load(open(p))
            if "code" in r:
                runs.setdefault(r["code"], {})[r["seed"]] = r
    codes = sorted(runs)
    seeds = sorted(set().union(*[set(v) for v in runs.values()]))
    metrics = [m for m in ("image_auroc", "pixel_auroc")
               if all(m in r for c in codes for r in runs[c].values())]
    print_seed_table(runs, codes, seeds, metrics)
    for metric in metrics:
        vals = {c: np.array([r[metric] for r in runs[c].values()]) for c in codes}
        for c in codes:
            v = vals[c]
            se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
            print(f"{metric} {c}: {v.mean():.4f} +- {se:.4f} (n {len(v)}, sd {v.std(ddof=1):.4f})")
        if len(codes) == 2 and min(len(v) for v in vals.values()) > 1:
            print_difference(metric, vals["cras"], vals["authors"])
    print_per_class(runs, codes)
    # The curves: only runs that logged their epochs (seeds recorded before the logs were kept
    # carry their AUROCs alone).
    runs = {c: {s: r for s, r in v.items() if r.get("epochs")} for c, v in runs.items()}
    if any(len(v) < 2 for v in runs.values()):
        print("\n(fewer than two logged runs of a code: no curves)")
        return
    print("\nper-epoch mean loss / p_true / p_fake, averaged over seeds (mean +- s.e.)")
    print("| epoch | " + " | ".join(f"{c} loss | {c} p_true | {c} p_fake" for c in codes) + " |")
    print("|---" * (1 + 3 * len(codes)) + "|")
    for e in [x for x in [0, 1, 2, 4, 6, 9, 14, 19, 29, 39] if x < max(len(r["epochs"]) for c in codes for r in runs[c].values())]:
        cells = []
        for c in codes:
            for k in ("loss", "p_true", "p_fake"):
                v = np.array([r["epochs"][e][k] for r in runs[c].values() if len(r["epochs"]) > e])
                cells.append(f"{v.mean():.4f} +- {v.std(ddof=1) / np.sqrt(len(v)):.4f}" if len(v) > 1 else "-")
        print(f"| {e + 1} | " + " | ".join(cells) + " |")
    print_instruments(runs, codes)
    if args.plot:
        plot_curves(runs, codes, args.plot)
    if len(codes) == 2:
        def mid(r):
            return np.mean([x["loss"] for x in r["epochs"][4:14]] or [x["loss"] for x in r["epochs"][1:]])
        a = np.array([mid(r) for r in runs["cras"].values()])
        b = np.array([mid(r) for r in runs["authors"].values()])
        t = stats.ttest_ind(a, b, equal_var=False)
        print(f"\nloss averaged over epochs 5-14: cras {a.mean():.4f} +- {a.std(ddof=1) / np.sqrt(len(a)):.4f} "
              f"({len(a)}), authors {b.mean():.4f} +- {b.std(ddof=1) / np.sqrt(len(b)):.4f} ({len(b)}); "
              f"Welch t {t.statistic:.2f}, p {t.pvalue:.3f}")


def print_seed_table(runs, codes, seeds, metrics):
    """One row per seed: each code's figures ("-" where that code has no run of the seed)."""
    cols = [(c, m) for m in metrics for c in codes]
    print("\n| seed | " + " | ".join(f"{c} {m}" for c, m in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for s in seeds:
        cells = [f"{runs[c][s][m]:.3f}" if s in runs[c] else "-" for c, m in cols]
        print(f"| {s} | " + " | ".join(cells) + " |")


def print_difference(metric, a, b):
    """cras (a) - authors (b): mean +- s.e., Welch's t and p, the 95% interval (Welch's degrees
    of freedom)."""
    from scipy import stats
    t = stats.ttest_ind(a, b, equal_var=False)
    d = a.mean() - b.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    h = stats.t.ppf(0.975, df) * se
    print(f"{metric} cras - authors: {d:+.4f} +- {se:.4f} (Welch t {t.statistic:.2f}, p {t.pvalue:.3f}; "
          f"95% interval [{d - h:+.4f}, {d + h:+.4f}])")


def plot_curves(runs, codes, path):
    """Per epoch, mean +- s.e. over seeds: loss, true / synthetic score medians, and the share of
    patches whose center changed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("loss", None, "mean training loss"), ("true_scores", 2, "median score, true patches"),
              ("fake_scores", 2, "median score, synthetic patches"),
              ("center_changed", None, "share of patches that changed center")]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, (key, q, title) in zip(axes, panels):
        for c, colour in zip(codes, ("tab:blue", "tab:orange")):
            xs, ms, ss = [], [], []
            for e in range(max(len(r["epochs"]) for r in runs[c].values())):
                v = [r["epochs"][e].get(key) for r in runs[c].values() if len(r["epochs"]) > e]
                v = np.array([x if q is None else x["q"][q] for x in v if x is not None])
                if len(v) > 1:
                    xs.append(e + 1)
                    ms.append(v.mean())
                    ss.append(v.std(ddof=1) / np.sqrt(len(v)))
            xs, ms, ss = map(np.array, (xs, ms, ss))
            ax.plot(xs, ms, color=colour, label=f"{c} ({len(runs[c])} seeds)")
            ax.fill_between(xs, ms - ss, ms + ss, color=colour, alpha=0.25)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=80)
    os.replace(path + ".tmp.png", path)


def print_per_class(runs, codes):
    """Per class: each code's mean image / pixel AUROC over the seeds that recorded classes."""
    from scipy import stats
    if len(codes) != 2:
        return
    for kind in ("per_class_image", "per_class_pixel"):
        have = {c: [r[kind] for r in runs[c].values() if r.get(kind)] for c in codes}
        if min(len(v) for v in have.values()) < 2:
            continue
        print(f"\n{kind} (mean over seeds; n = {', '.join(f'{c} {len(have[c])}' for c in codes)})")
        print("| class | " + " | ".join(codes) + " | cras - authors | p |")
        print("|---" * 5 + "|")
        for cls in sorted(have[codes[0]][0]):
            v = {c: np.array([x[cls] for x in have[c] if x.get(cls) is not None]) for c in codes}
            t = stats.ttest_ind(v["cras"], v["authors"], equal_var=False)
            print(f"| {cls} | " + " | ".join(f"{v[c].mean():.3f}" for c in codes)
                  + f" | {v['cras'].mean() - v['authors'].mean():+.3f} | {t.pvalue:.2f} |")


def print_instruments(runs, codes):
    """Per-epoch share of patches that changed center, and the true / synthetic score medians;
    then the last epoch's score quantiles: mean over the seeds that logged them."""
    def value(r, e, key, q=None):
        x = r["epochs"][e].get(key) if len(r["epochs"]) > e else None
        return None if x is None else (x if q is None else x["q"][q])

    def cell(c, e, key, q=None):
        v = np.array([x for x in (value(r, e, key, q) for r in runs[c].values()) if x is not None])
        return f"{v.mean():.4f} +- {v.std(ddof=1) / np.sqrt(len(v)):.4f} ({len(v)})" if len(v) > 1 else "-"
    print("\nper epoch: share of patches whose center changed; true / synthetic score median (mean +- s.e. (n))")
    print("| epoch | " + " | ".join(f"{c} changed | {c} true median | {c} fake median" for c in codes) + " |")
    print("|---" * (1 + 3 * len(codes)) + "|")
    for e in [1, 2, 4, 6, 9, 14, 19, 29, 39]:
        cells = [cell(c, e, k, q) for c in codes for k, q in
                 (("center_changed", None), ("true_scores", 2), ("fake_scores", 2))]
        if any(x != "-" for x in cells):
            print(f"| {e + 1} | " + " | ".join(cells) + " |")
    print("\nlast epoch, score quantiles 5 / 25 / 50 / 75 / 95 % (mean over seeds)")
    for c in codes:
        for kind in ("true_scores", "fake_scores"):
            qs = [r["epochs"][-1][kind]["q"] for r in runs[c].values() if r["epochs"][-1].get(kind)]
            if qs:
                print(f"{c} {kind}: " + " / ".join(f"{x:.4f}" for x in np.mean(qs, axis=0)) + f" ({len(qs)} seeds)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["authors", "cras", "report", "init"])
    ap.add_argument("--init-seeds", type=int, default=100)
    ap.add_argument("--example", default="target/release/examples/long_run_parity")
    ap.add_argument("--ref", default=os.environ.get("CRAS_REF", "/work/cras-ref"))
    ap.add_argument("--bench", default="/work/bench/realistic")
    ap.add_argument("--results", required=True)
    ap.add_argument("--cras", default="target/release/cras")
    ap.add_argument("--seeds", default="0-7")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="authors: the torch device their code runs on (cuda: TF32 off)")
    ap.add_argument("--deadline", type=float, default=0,
                    help="a Unix time: start no seed that would end after it (the last seed's duration)")
    ap.add_argument("--keep", help="authors: also write each seed's checkpoint, centers and test scores here")
    ap.add_argument("--plot", help="report: also draw the curves into this PNG (needs matplotlib)")
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="40 in the study; fewer for a smoke test")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="train only this many epochs of the schedule and skip evaluation (loss curves)")
    a = ap.parse_args()
    a.bench, a.results, a.cras, a.example = (os.path.abspath(x) for x in (a.bench, a.results, a.cras, a.example))
    EPOCHS, STOP = a.epochs, a.stop_after
    if a.mode == "init":
        os.makedirs(a.results, exist_ok=True)
        init_stats(a, classes_of(a.bench))
    else:
        (report if a.mode == "report" else run)(a)
