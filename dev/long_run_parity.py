"""Long-run training parity of cras with the AUTHORS' code (github.com/cqylunlun/CRAS); dev-only,
never run in CI. Two modes, both on `cras synth` data at a tiny configuration (the seeded random
ResNet18 of dev/gen_reference_checkpoint.py, layer1 + layer2, resize 72, crop 64, 32 dims):

  injected  The authors' loop (their `CRAS.load`, their center init through `trainer` with no
            epochs, then their `_train_discriminator` epoch after epoch) with every batch order
            and every noise draw injected (torch.normal patched), and cras's loop
            (examples/long_run_parity.rs: cras's center bank and `train_step`) fed the same
            descriptors, initial head, orders and noise. Prints, after every epoch, the largest
            differences of weights, Adam moments and BatchNorm running statistics, then those of
            the test patch scores. Pass several --example binaries (e.g. one built before a
            fix) to compare them. --control adds the authors' loop run again from an adaptor
            init moved by one ulp: the spread their own code gives a rounding-level difference.

      python dev/long_run_parity.py injected --example target/debug/examples/long_run_parity \\
          [--example /tmp/long_run_parity-prefix] --epochs 10 --seed 0 [--control]

            With --bench B (a dev/realistic_bench.py benchmark) it runs at that benchmark's
            configuration instead (WRN50-2, 160 px, 384 dims, noise 0.1; pass --batch 32).

  paired    The injected comparison end to end, seed after seed, on --bench: for each seed the
            authors' init, orders and noise (streamed to a sidecar file) drive both loops for
            --epochs (40), and both test score sets are turned into mean image / pixel AUROC by
            the same code; --control adds the authors' loop from an init one ulp away. The
            per-seed differences (common random numbers) resolve a gap between the loops with
            far fewer seeds than independent runs; one JSON line per seed goes to --results.

      python dev/long_run_parity.py paired --bench B --batch 32 --epochs 40 --seeds 0-19 \\
          --control --example target/release/examples/long_run_parity --results R.jsonl
      python dev/long_run_parity.py paired-report --results R.jsonl[,R2.jsonl]

  seeds     Both codes end to end, each with its own initialisation, shuffling and noise, for
            several seeds: the authors' code (center init + `_train_discriminator` + their
            `predict` and `_evaluate` on the last epoch) and `cras train --holdout 0` + `cras
            eval --batch-vote --reference-masks`; the authors' trained head is also scored by
            cras (`cras import-reference` + the same `cras eval`), which separates training from
            evaluation. Prints mean +- sd of mean image / pixel AUROC. A cras binary given twice
            with the same seed (e.g. before / after a fix) trains from the same init, order
            and noise: their per-seed difference is the change alone.

      python dev/long_run_parity.py seeds --cras target/debug/cras [--cras OTHER] --seeds 0,1,2,3,4

Needs the authors' requirements (torch, torchvision, tensorboard, opencv, scikit-learn,
scikit-image, pandas, tqdm, click) and `--ref` (their checkout, default /work/cras-ref). All
data and outputs go to a temporary folder (--work to keep them).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import fidelity_seeds as fsd  # the realistic benchmark's configuration and helpers

HERE = os.path.dirname(os.path.abspath(__file__))
SCORE_EPOCHS = (2, 5, 10, 15, 20, 25, 30)  # paired: also scored after these (1-based) epochs
RESIZE, SIZE, DIMS, LAYERS = 72, 64, 32, ["layer1", "layer2"]
SIGMA, K, LR = 0.015, 0.3, 1e-4
ADAPTOR = ["pre_projection.layers.0fc.weight", "pre_projection.layers.0fc.bias"]
# Parameters whose gradient is analytically zero (a shift that the next BatchNorm removes):
# both codes move them by Adam-amplified rounding noise (see tests/train_parity.rs).
ZERO_GRAD = {"pre_projection.layers.0fc.bias", "discriminator.body.block1.0.bias",
             "discriminator.body.block2.0.bias"}


def setup(ref, work, data_seed, classes, train, test):
    """Synthetic data, the backbone file, and the authors' modules imported."""
    sys.path.insert(0, ref)
    sys.path.insert(0, HERE)
    data = os.path.join(work, "data")
    if not os.path.isdir(data):
        subprocess.run([ARGS.cras[0] if getattr(ARGS, "cras", None) else "target/debug/cras",
                        "synth", "--out", data, "--classes", str(classes), "--train", str(train),
                        "--test-good", str(test), "--test-defect", str(test), "--size", "80",
                        "--seed", str(data_seed), "--log", "warn"], check=True)
    import gen_reference_checkpoint as grc
    weights = os.path.join(work, "backbone.pth")
    backbone = grc.make_backbone(weights)
    return data, weights, backbone, sorted(os.listdir(data))


def realistic(ref, bench):
    """The benchmark of dev/realistic_bench.py at its configuration (WRN50-2 from the bench's
    `wrn50_bnstats.pth`, layer2 + layer3, resize 183 / crop 160, 384 dims, noise 0.1)."""
    global RESIZE, SIZE, DIMS, LAYERS, SIGMA
    import torch
    import torchvision
    sys.path.insert(0, ref)
    RESIZE, SIZE, DIMS, LAYERS, SIGMA = fsd.RESIZE, fsd.CROP, fsd.DIMS, fsd.LAYERS, fsd.NOISE
    net = torchvision.models.wide_resnet50_2(weights=None)
    net.load_state_dict(torch.load(os.path.join(bench, "wrn50_bnstats.pth")))
    return bench, net, fsd.classes_of(bench)


def authors_model(backbone, seed, epochs, work):
    import torch
    import cras as ref_cras
    import utils as ref_utils
    device = torch.device("cpu")
    ref_utils.fix_seeds(seed, device)
    backbone.name, backbone.seed = ("wideresnet50" if DIMS == 384 else "resnet18"), None
    model = ref_cras.CRAS(device)
    model.load(backbone=backbone, layers_to_extract_from=LAYERS, device=device,
               input_shape=(3, SIZE, SIZE), pretrain_embed_dimension=DIMS,
               target_embed_dimension=DIMS, patchsize=3, meta_epochs=epochs, eval_epochs=1,
               dsc_layers=3, train_backbone=False, pre_proj=1, noise=SIGMA, k=K, lr=LR,
               limit=-1)
    model.set_model_dir(os.path.join(work, f"models_{seed}"), "synth")
    return model


def datasets(data, classes):
    from datasets.mvtec import MVTecDataset, DatasetSplit

    def ds(cls, split):
        return MVTecDataset(data, classname=cls, resize=RESIZE, imagesize=SIZE, split=split)
    return ds, DatasetSplit


def init_centers(model, ds, split, classes, batch):
    """The authors' center init: their `trainer` with zero epochs."""
    import torch
    model.meta_epochs = 0
    per_class = [torch.utils.data.DataLoader(ds([c], split.TRAIN), batch_size=batch, shuffle=False)
                 for c in classes]
    model.trainer(None, per_class, [], classes, "multi")


class Bar:
    def set_description_str(self, *_):
        pass


def weights_of(model):
    """The adaptor's and discriminator's state dicts (BatchNorm statistics included), prefixed."""
    out = {}
    for prefix, mod in [("pre_projection.", model.pre_projection), ("discriminator.", model.discriminator)]:
        for k, v in mod.state_dict().items():
            if "num_batches" not in k:
                out[prefix + k] = v.detach().clone().numpy()
    return out


def nudge_adaptor(model):
    """The control's init: every adaptor weight moved by one ulp."""
    import torch
    with torch.no_grad():
        for p_ in model.pre_projection.parameters():
            p_.copy_(torch.nextafter(p_, torch.full_like(p_, float("inf"))))


def class_of(item, classes):
    """An item's class index, from its path (<bench>/<class>/<split>/<kind>/<file>)."""
    return classes.index(item["image_path"].split(os.sep)[-4])


def state_of(model):
    out = weights_of(model)
    for tag, opt, mod in [("a", model.proj_opt, model.pre_projection), ("d", model.dsc_opt, model.discriminator)]:
        for i, p in enumerate(mod.parameters()):
            st = opt.state[p]
            out[f"adam.{tag}.m.{i}"] = st["exp_avg"].clone().numpy()
            out[f"adam.{tag}.v.{i}"] = st["exp_avg_sq"].clone().numpy()
    return out


def write_fixture(stem, meta, tensors):
    index, blobs, off = {}, [], 0
    for n, t in tensors.items():
        a = np.asarray(t, dtype="<f4")
        index[n] = {"shape": list(a.shape), "offset": off}
        blobs.append(a.tobytes())
        off += a.size
    with open(stem + ".bin", "wb") as f:
        f.write(b"".join(blobs))
    with open(stem + ".json", "w") as f:
        json.dump({"meta": meta, "tensors": index}, f)


def read_fixture(stem):
    meta = json.load(open(stem + ".json"))
    flat = np.fromfile(stem + ".bin", dtype="<f4")
    return {n: flat[e["offset"]:e["offset"] + int(np.prod(e["shape"]))].reshape(e["shape"])
            for n, e in meta["tensors"].items()}


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def run_injected(model, items, epochs, batch, after_epoch=None):
    """The authors' `_train_discriminator`, epoch after epoch, on the given batches, with
    torch.normal answering the given noise; their state after every epoch. `epochs` yields
    (order, [noise of each step]) per epoch."""
    import torch
    real_normal = torch.normal
    states = []
    try:
        for e, (order, queue) in enumerate(epochs):
            chunks = order.split(batch)
            queue = list(queue)

            def injected_normal(mean, std, size, *a, **kw):
                t = queue.pop(0)
                assert tuple(size) == tuple(t.shape) and std == SIGMA, (size, t.shape)
                return t.clone()
            torch.normal = injected_normal
            batches = [{"image": torch.stack([items[i]["image"] for i in chunk]),
                        "image_path": [items[i]["image_path"] for i in chunk]} for chunk in chunks]
            model._train_discriminator(batches, e, Bar(), "")
            assert not queue
            states.append(state_of(model))
            if after_epoch:
                after_epoch(e, model)
    finally:
        torch.normal = real_normal
    return states


def stored_draws(orders, noise, batch):
    """(order, noise list) per epoch from the dict of `injected`."""
    for e, order in enumerate(orders):
        yield order, [noise[f"noise.{e}.{s}"] for s in range(len(order.split(batch)))]


def authors_test_scores(model, test):
    """Per test image (alone, so its class vote is its own match): descriptors and the patch
    scores of the authors' `_predict` (captured at the discriminator's output)."""
    import torch
    captured = []
    hook = model.discriminator.register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    test_g, scores = [], []
    for i in range(len(test)):
        img = test[i]["image"].unsqueeze(0)
        with torch.no_grad():
            test_g.append(model._embed(img, evaluation=True)[0])
        model._predict(img)
        scores.append(captured.pop()[:, 0].numpy())
    hook.remove()
    return test_g, np.stack(scores)


def table(label, mine, states, ref_scores, labels_t):
    """Per-epoch differences of `mine` (keys e<epoch>.<name>, test_scores) from the authors'."""
    print(f"\n## {label}")
    print("| epoch | adaptor W | discriminator W | Adam m | Adam v | BN running stats | zero-grad biases |")
    print("|---|---|---|---|---|---|---|")
    zero_idx = {("a", 1), ("d", 1), ("d", 5)}  # the ZERO_GRAD parameters' optimiser slots
    for e, st in enumerate(states):
        def worst(keys):
            return max(rel(mine[f"e{e}.{k}"], st[k]) for k in keys)
        params = [k for k in st if not k.startswith("adam") and "running" not in k]
        adam_m = [k for k in st if ".m." in k and (k.split(".")[1], int(k.split(".")[-1])) not in zero_idx]
        row = [worst([k for k in params if k.startswith("pre_") and k not in ZERO_GRAD]),
               worst([k for k in params if k.startswith("disc") and k not in ZERO_GRAD]),
               worst(adam_m), worst([k.replace(".m.", ".v.") for k in adam_m]),
               worst([k for k in st if "running" in k]),
               max(float(np.abs(mine[f"e{e}.{k}"] - st[k]).max()) for k in ZERO_GRAD)]
        print(f"| {e + 1} | " + " | ".join(f"{x:.1e}" for x in row) + " |")
    s = mine["test_scores"]
    d = np.abs(s - ref_scores)
    q = np.quantile(d, [0.5, 0.99])
    print(f"test patch scores |diff|: median {q[0]:.1e}, 99% {q[1]:.1e}, max {d.max():.1e}; image "
          f"scores (max over patches) max|diff| {np.abs(s.max(1) - ref_scores.max(1)).max():.1e}; "
          f"image AUROC {auroc(labels_t, s.max(1)):.4f} vs authors' {auroc(labels_t, ref_scores.max(1)):.4f}")


def injected(args):
    import torch
    import torch.nn.functional  # noqa: F401
    work = args.work or tempfile.mkdtemp(prefix="lrp-")
    os.makedirs(work, exist_ok=True)
    if args.bench:
        data, backbone, classes = realistic(args.ref, args.bench)
    else:
        data, _, backbone, classes = setup(args.ref, work, args.seed, args.classes, args.train, args.test)
    os.chdir(work)  # their trainer writes ./results
    torch.set_num_threads(args.threads)
    model = authors_model(backbone, args.seed, args.epochs, work)
    ds, split = datasets(data, classes)
    init = weights_of(model)
    init_centers(model, ds, split, classes, args.batch if args.bench else 4)
    train = ds(classes, split.TRAIN)
    items = [train[i] for i in range(len(train))]
    labels = [class_of(it, classes) for it in items]
    with torch.no_grad():
        g = torch.stack([model._embed(it["image"].unsqueeze(0), evaluation=False)[0] for it in items])
    n, p, d = g.shape
    gen = torch.Generator().manual_seed(1000 + args.seed)
    orders, noise = [], {}
    for e in range(args.epochs):
        orders.append(torch.randperm(n, generator=gen))
        for s, chunk in enumerate(orders[-1].split(args.batch)):
            noise[f"noise.{e}.{s}"] = torch.normal(0, SIGMA, (len(chunk) * p, d), generator=gen)
    states = run_injected(model, items, stored_draws(orders, noise, args.batch), args.batch)
    test = ds(classes, split.TEST)
    test_g, ref_scores = authors_test_scores(model, test)
    meta = {"epochs": args.epochs, "batch_size": args.batch, "lr": LR, "k": K, "classes": classes}
    tensors = {"g": g.numpy(), "labels": np.array(labels), "test_g": torch.stack(test_g).numpy(),
               "order": torch.stack(orders).numpy()}
    tensors.update({"init." + k: v for k, v in init.items()})
    tensors.update({k: v.numpy() for k, v in noise.items()})
    stem = os.path.join(work, "in")
    write_fixture(stem, meta, tensors)
    ref_c = model.c2.numpy()
    np.savez(os.path.join(work, "authors_states.npz"),
             **{f"e{e}.{k}": v for e, st in enumerate(states) for k, v in st.items()},
             test_scores=ref_scores)
    labels_t = np.array([int(test[i]["is_anomaly"]) for i in range(len(test))])
    print(f"# injected: {len(classes)} classes, {n} train images ({p} patches x {d} dims), "
          f"batch {args.batch}, {args.epochs} epochs, seed {args.seed}; relative max|diff| "
          f"(max|a-b| / max|authors|); 'zero-grad biases' = absolute, see ZERO_GRAD")
    for ex in args.example:
        out = os.path.join(work, "out_" + os.path.basename(ex))
        subprocess.run([ex, stem, out], check=True, stderr=subprocess.DEVNULL)
        mine = read_fixture(out)
        table(f"{ex} (centers: {rel(mine['centers'], ref_c):.1e})", mine, states, ref_scores, labels_t)
    if args.control:
        # The authors' loop again, its adaptor's initial weights moved by one ulp: how far their
        # own training carries a rounding-level difference.
        ctl = authors_model(backbone, args.seed, args.epochs, os.path.join(work, "control"))
        nudge_adaptor(ctl)
        init_centers(ctl, ds, split, classes, args.batch if args.bench else 4)
        ctl_states = run_injected(ctl, items, stored_draws(orders, noise, args.batch), args.batch)
        mine = {f"e{e}.{k}": v for e, st in enumerate(ctl_states) for k, v in st.items()}
        mine["test_scores"] = authors_test_scores(ctl, test)[1]
        table("control: the authors' code, adaptor init moved by 1 ulp", mine, states, ref_scores,
              labels_t)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def paired(args):
    """Both loops for 40 epochs (or --epochs) from the same draws, seed after seed, on the
    realistic benchmark: the authors' init of `seed`, batch orders and noise from a torch
    generator seeded 1000 + seed (the noise streamed to a sidecar file, gigabytes per seed),
    injected into their loop; cras's loop (the example) fed the same. Both test score sets
    go through the authors' segmentor; per-class image AUROC (max patch score) and pixel
    AUROC, averaged over classes, are appended to --results (JSON lines). --control adds the
    authors' loop again from an adaptor init one ulp away: the spread rounding alone gives."""
    import torch
    work = args.work or tempfile.mkdtemp(prefix="lrp-paired-")
    os.makedirs(work, exist_ok=True)
    data, backbone, classes = realistic(args.ref, args.bench)
    os.chdir(work)
    torch.set_num_threads(args.threads)
    ds, split = datasets(data, classes)
    train, test = ds(classes, split.TRAIN), ds(classes, split.TEST)
    items = [train[i] for i in range(len(train))]
    labels = [class_of(it, classes) for it in items]
    test_cls = np.array([class_of(test[i], classes) for i in range(len(test))])
    test_y = np.array([int(test[i]["is_anomaly"]) for i in range(len(test))])
    test_masks = np.stack([test[i]["mask_gt"][0].numpy() > 0.5 for i in range(len(test))])
    g = None
    for seed in fsd.seeds_of(args.seeds):
        model = authors_model(backbone, seed, args.epochs, work)
        fsd.memoise_embed(model)
        init = weights_of(model)
        init_centers(model, ds, split, classes, args.batch)
        if g is None:
            with torch.no_grad():
                g = torch.stack([model._embed(it["image"].unsqueeze(0))[0] for it in items])
        n, p, d = g.shape
        stem = os.path.join(work, f"in_{seed}")
        gen = torch.Generator().manual_seed(1000 + seed)
        orders, normal = [], torch.normal  # the real one: run_injected patches torch.normal

        def draws():
            with open(stem + ".noise.bin", "wb") as f:
                for _ in range(args.epochs):
                    orders.append(torch.randperm(n, generator=gen))
                    q = [normal(0, SIGMA, (len(c) * p, d), generator=gen) for c in orders[-1].split(args.batch)]
                    for t in q:
                        f.write(t.numpy().astype("<f4").tobytes())
                    yield orders[-1], q

        def replay():
            with open(stem + ".noise.bin", "rb") as f:
                for order in orders:
                    q = []
                    for c in order.split(args.batch):
                        a = np.frombuffer(f.read(len(c) * p * d * 4), dtype="<f4").reshape(len(c) * p, d)
                        q.append(torch.from_numpy(a.copy()))
                    yield order, q
        marks = [e for e in SCORE_EPOCHS if e < args.epochs]  # 1-based epochs scored on the way
        by_epoch = {e: {} for e in marks}

        def scorer(arm):
            def after(e, m):
                if e + 1 in by_epoch:
                    by_epoch[e + 1][arm] = test_metrics(m, authors_test_scores(m, test)[1], test_cls,
                                                        test_y, test_masks)
            return after
        run_injected(model, items, draws(), args.batch, scorer("authors"))
        test_g, ref_scores = authors_test_scores(model, test)
        meta = {"epochs": args.epochs, "batch_size": args.batch, "lr": LR, "k": K, "classes": classes,
                "score_epochs": [e - 1 for e in marks]}
        tensors = {"g": g.numpy(), "labels": np.array(labels), "test_g": torch.stack(test_g).numpy(),
                   "order": torch.stack(orders).numpy()}
        tensors.update({"init." + k: v for k, v in init.items()})
        write_fixture(stem, meta, tensors)
        out = stem + "_cras"
        # One cras side at a time across parallel runs (each holds its seed's states in memory).
        with open(os.path.join(tempfile.gettempdir(), "long_run_parity.lock"), "w") as lock:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
            subprocess.run([args.example[0], stem, out], check=True, stderr=subprocess.DEVNULL,
                           env=dict(os.environ, RAYON_NUM_THREADS=str(args.threads)))
        mine = read_fixture(out)
        for e in marks:
            by_epoch[e]["cras"] = test_metrics(model, mine[f"test_scores.{e - 1}"], test_cls, test_y, test_masks)
        row = {"seed": seed, "epochs": args.epochs,
               "authors": test_metrics(model, ref_scores, test_cls, test_y, test_masks),
               "cras": test_metrics(model, mine["test_scores"], test_cls, test_y, test_masks),
               "by_epoch": by_epoch}
        if args.control:
            ctl = authors_model(backbone, seed, args.epochs, work)
            fsd.memoise_embed(ctl)
            nudge_adaptor(ctl)
            init_centers(ctl, ds, split, classes, args.batch)
            run_injected(ctl, items, replay(), args.batch, scorer("control"))
            row["control"] = test_metrics(ctl, authors_test_scores(ctl, test)[1], test_cls, test_y, test_masks)
        for f in (stem + ".noise.bin", stem + ".bin", out + ".bin"):
            os.remove(f)
        print(json.dumps(row), flush=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(row) + "\n")


def paired_report(args):
    """Mean +- standard error over seeds of each arm's AUROCs and of the per-seed differences
    (cras - authors, control - authors), with a paired t test of each difference."""
    from scipy import stats
    rows = [json.loads(x) for f in args.results.split(",") for x in open(f) if x.strip()]
    rows = sorted({r["seed"]: r for r in rows}.values(), key=lambda r: r["seed"])
    arms = [a for a in ("authors", "cras", "control") if all(a in r for r in rows)]
    n = len(rows)
    print(f"{n} seeds ({', '.join(str(r['seed']) for r in rows)}), {rows[0]['epochs']} epochs")
    print("| metric | " + " | ".join(arms) + " | cras - authors | p | " +
          ("control - authors | p |" if "control" in arms else ""))
    print("|---" * (1 + len(arms) + 2 * (len(arms) - 1)) + "|")

    def ms(v):
        v = np.asarray(v)
        return f"{v.mean():.4f} +- {v.std(ddof=1) / np.sqrt(len(v)):.4f}"
    for m in ("image_auroc", "pixel_auroc"):
        cells = [ms([r[a][m] for r in rows]) for a in arms]
        base = np.array([r["authors"][m] for r in rows])
        for a in [x for x in ("cras", "control") if x in arms]:
            d = np.array([r[a][m] for r in rows]) - base
            cells += [f"{d.mean():+.4f} +- {d.std(ddof=1) / np.sqrt(n):.4f} (sd {d.std(ddof=1):.4f})",
                      f"{stats.ttest_1samp(d, 0).pvalue:.2f}"]
        print(f"| {m} | " + " | ".join(cells) + " |")
    staged = [r for r in rows if r.get("by_epoch")]
    if staged:
        marks = sorted({int(e) for r in staged for e in r["by_epoch"]}) + [rows[0]["epochs"]]
        print(f"\nOn the way ({len(staged)} seeds): per-seed differences from the authors' loop, "
              "mean (sd), image AUROC / pixel AUROC")
        print("| epoch | cras - authors | control - authors |\n|---|---|---|")
        for e in marks:
            def arm(r, a):
                return r[a] if e == r["epochs"] else r["by_epoch"][str(e)][a]
            cells = []
            for a in ("cras", "control"):
                part = []
                for m in ("image_auroc", "pixel_auroc"):
                    d = np.array([arm(r, a)[m] - arm(r, "authors")[m] for r in staged
                                  if a in (r if e == r["epochs"] else r["by_epoch"][str(e)])])
                    part.append(f"{d.mean():+.4f} ({d.std(ddof=1) if len(d) > 1 else 0:.4f})")
                cells.append(" / ".join(part))
            print(f"| {e} | " + " | ".join(cells) + " |")
    for a in [x for x in ("cras", "control") if x in arms]:
        print(f"{a} - authors, image AUROC per seed: " +
              " ".join(f"{r['seed']}:{r[a]['image_auroc'] - r['authors']['image_auroc']:+.3f}" for r in rows))


def test_metrics(model, scores, cls, y, masks):
    """Mean over classes of image AUROC (max patch score) and pixel AUROC (the authors'
    segmentor: bilinear upsampling, Gaussian sigma 4), from patch scores [T, P]."""
    import torch
    side = int(round(np.sqrt(scores.shape[1])))
    maps = np.stack(model.anomaly_segmentor.convert_to_segmentation(
        torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)).reshape(-1, side, side)))
    ia, pa = [], []
    for c in sorted(set(cls.tolist())):
        k = cls == c
        ia.append(auroc(y[k], scores[k].max(1)))
        pa.append(auroc(masks[k].ravel(), maps[k].ravel()))
    return {"image_auroc": float(np.mean(ia)), "pixel_auroc": float(np.mean(pa)),
            "per_class_image": [float(x) for x in ia]}


def auroc(y, s):
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, s))


def authors_end_to_end(model, ds, split, classes, epochs, batch):
    """Their center init, `epochs` of `_train_discriminator` with their own shuffling and
    noise, then their `predict` + `_evaluate` per class on the last epoch's head."""
    import torch
    init_centers(model, ds, split, classes, batch)
    train = torch.utils.data.DataLoader(ds(classes, split.TRAIN), batch_size=batch, shuffle=True)
    for e in range(epochs):
        model._train_discriminator(train, e, Bar(), "")
    ia, pa = [], []
    for c in classes:
        t = torch.utils.data.DataLoader(ds([c], split.TEST), batch_size=batch, shuffle=False)
        images, scores, segs, labels, masks = model.predict(t)
        i_auc, _, p_auc, _, _ = model._evaluate(images, scores, segs, labels, masks, "synth_" + c)
        ia.append(i_auc)
        pa.append(p_auc)
    return float(np.mean(ia)), float(np.mean(pa))


def cras_train(binary, data, weights, seed, epochs, batch, work):
    model = os.path.join(work, f"cras_{seed}.safetensors")
    subprocess.run([binary, "train", "--data", data, "--out", model, "--weights", weights,
                    "--backbone", "resnet18", "--layers", ",".join(LAYERS), "--dims", str(DIMS),
                    "--image-size", str(SIZE), "--resize", str(RESIZE), "--holdout", "0",
                    "--epochs", str(epochs), "--batch-size", str(batch), "--seed", str(seed),
                    "--reference-masks", "--device", "cpu", "--log", "warn", "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    return model


def cras_eval(binary, model, data, batch, work):
    """`cras eval` the reference way (batch vote over the training batch size, their masks);
    the mean over classes of image and pixel AUROC. Deletes the model file."""
    out = os.path.join(work, "eval")
    subprocess.run([binary, "eval", "--model", model, "--data", data, "--out", out,
                    "--batch-vote", "--vote-group", str(batch), "--reference-masks",
                    "--gallery", "0", "--device", "cpu", "--log", "warn", "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)
    m = json.load(open(os.path.join(out, "metrics.json")))
    shutil.rmtree(out, ignore_errors=True)
    os.remove(model)
    return m["mean"]["image_auroc"], m["mean"]["pixel_auroc"]


def import_authors(binary, model, weights, classes, work):
    """The authors' trained head and centers as a cras model file (`cras import-reference`)."""
    import torch
    ckpt, centers = os.path.join(work, "ckpt.pth"), os.path.join(work, "center.pth")
    torch.save({"discriminator": model.discriminator.state_dict(),
                "pre_projection": model.pre_projection.state_dict()}, ckpt)
    torch.save(model.c2, centers)
    out = os.path.join(work, "imported.safetensors")
    subprocess.run([binary, "import-reference", "--checkpoint", ckpt, "--centers", centers,
                    "--weights", weights, "--classes", ",".join(classes), "--out", out,
                    "--backbone", "resnet18", "--layers", ",".join(LAYERS), "--dims", str(DIMS),
                    "--image-size", str(SIZE), "--resize", str(RESIZE), "--reference-masks",
                    "--device", "cpu", "--log", "warn"], check=True, stdout=subprocess.DEVNULL)
    return out


def seeds(args):
    work = args.work or tempfile.mkdtemp(prefix="lrp-seeds-")
    os.makedirs(work, exist_ok=True)
    data, weights, backbone, classes = setup(args.ref, work, 0, args.classes, args.train, args.test)
    os.chdir(work)
    ds, split = datasets(data, classes)
    results = {}
    for s in [int(x) for x in args.seeds.split(",")]:
        if not args.skip_authors:
            model = authors_model(backbone, s, args.epochs, work)
            results.setdefault("authors", []).append(
                authors_end_to_end(model, ds, split, classes, args.epochs, args.batch))
            print("authors", s, results["authors"][-1], flush=True)
            # The same trained head scored by cras: separates training from evaluation.
            imported = import_authors(args.cras[0], model, weights, classes, work)
            results.setdefault("authors' head, cras eval", []).append(
                cras_eval(args.cras[0], imported, data, args.batch, work))
            print("authors' head, cras eval", s, results["authors' head, cras eval"][-1], flush=True)
        for b in args.cras:
            model = cras_train(b, data, weights, s, args.epochs, args.batch, work)
            results.setdefault(b, []).append(cras_eval(b, model, data, args.batch, work))
            print(b, s, results[b][-1], flush=True)
    print(f"\n# {len(classes)} classes x {args.train} train images, {args.epochs} epochs, batch "
          f"{args.batch}, hold-out 0, last epoch; mean over classes, then mean +- sd over seeds")
    print("| code | seeds | image AUROC | pixel AUROC |\n|---|---|---|---|")
    for name, r in results.items():
        r = np.array(r)
        print(f"| {name} | {len(r)} | {r[:, 0].mean():.4f} +- {r[:, 0].std(ddof=1):.4f} "
              f"| {r[:, 1].mean():.4f} +- {r[:, 1].std(ddof=1):.4f} |")
    print(json.dumps(results))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["injected", "seeds", "paired", "paired-report"])
    ap.add_argument("--results", help="paired: append one JSON line per seed here")
    ap.add_argument("--ref", default=os.environ.get("CRAS_REF", "/work/cras-ref"))
    ap.add_argument("--work", help="keep data and outputs here (default: a temporary folder)")
    ap.add_argument("--example", action="append", default=[], help="cras side (injected)")
    ap.add_argument("--cras", action="append", default=[], help="cras binaries (seeds)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--train", type=int, default=16)
    ap.add_argument("--test", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench", help="injected: run on this dev/realistic_bench.py benchmark at its "
                    "configuration (pass --batch 32) instead of synthetic data")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (injected)")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--skip-authors", action="store_true")
    ap.add_argument("--control", action="store_true",
                    help="injected: also the authors' loop from an init moved by one ulp")
    ARGS = ap.parse_args()
    ARGS.example = [os.path.abspath(x) for x in ARGS.example]
    ARGS.cras = [os.path.abspath(x) for x in ARGS.cras] or [os.path.abspath("target/debug/cras")]
    if ARGS.results and ARGS.mode == "paired":
        ARGS.results = os.path.abspath(ARGS.results)
    {"injected": injected, "seeds": seeds, "paired": paired, "paired-report": paired_report}[ARGS.mode](ARGS)
