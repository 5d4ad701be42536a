"""Fixture for `cras import-reference`: a checkpoint and a center bank written by the AUTHORS'
code (github.com/cqylunlun/CRAS), and the scores their `_predict` gives (dev-only; never run
in CI).

    /path/to/python dev/gen_reference_checkpoint.py --ref /path/to/CRAS-checkout

Needs torch, torchvision, tensorboard, opencv, scikit-learn, scikit-image, pandas, tqdm, click
(the authors' requirements). Steps, at a tiny configuration:
1. a seeded random ResNet18 with non-trivial BatchNorm statistics; its stages through layer2
   are saved in fp16 as a zip `.pth` (the backbone file; values exact in fp32);
2. a small generated dataset in MVTec AD layout (2 classes, 72x72 px);
3. the authors' `CRAS.load` (layers layer1 + layer2, 32 dimensions, input 64, resize 72) and
   their `trainer` for 2 epochs, which writes `ckpt_best_<epoch>.pth` and `center.pth` their
   way (it runs one all-ones forward through the train-mode backbone at load, as always);
4. their `_predict` on each test image alone (so its batch vote is the image's own match):
   image scores and blurred maps.
Output (tests/fixtures/reference_import/, about 1.6 MB): backbone.pth, ckpt_best.pth,
center.pth, test/<class>_<n>.png, expected.json (configuration, image names, scores) and
maps.bin (little-endian f32, [N, 64, 64]).
"""
import argparse
import glob
import json
import os
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "reference_import")
CLASSES = ["plaid", "spots"]
RESIZE, SIZE, DIMS, LAYERS = 72, 64, 32, ["layer1", "layer2"]


def texture(cls, rng, defect):
    """A 72x72 RGB image of class `cls`; `defect` paints a square. Returns (image, mask)."""
    y, x = np.mgrid[0:72, 0:72].astype(np.float32)
    if cls == "plaid":
        base = 0.5 + 0.25 * np.sin(x / 3.0 + rng.uniform(0, 6)) * np.cos(y / 5.0)
        rgb = np.stack([base, 0.8 * base, 0.3 + 0.2 * base], -1)
    else:
        base = 0.4 + 0.3 * (np.sin(x / 2.0) * np.sin(y / 2.0 + rng.uniform(0, 6)) > 0.3)
        rgb = np.stack([0.3 + 0.2 * base, base, 0.9 * base], -1)
    rgb = rgb + rng.normal(0, 0.03, rgb.shape)
    mask = np.zeros((72, 72), np.uint8)
    if defect:
        x0, y0 = rng.integers(12, 44, 2)
        rgb[y0:y0 + 14, x0:x0 + 14] = rng.uniform(0, 1, 3)
        mask[y0:y0 + 14, x0:x0 + 14] = 255
    return Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)), Image.fromarray(mask)


def make_dataset(root):
    rng = np.random.default_rng(3)
    tests = []
    for cls in CLASSES:
        for split, kind, n in [("train", "good", 6), ("test", "good", 2), ("test", "blot", 2)]:
            os.makedirs(os.path.join(root, cls, split, kind), exist_ok=True)
            for i in range(n):
                img, mask = texture(cls, rng, kind != "good")
                p = os.path.join(root, cls, split, kind, f"{i:03d}.png")
                img.save(p)
                if kind != "good":
                    os.makedirs(os.path.join(root, cls, "ground_truth", kind), exist_ok=True)
                    mask.save(os.path.join(root, cls, "ground_truth", kind, f"{i:03d}_mask.png"))
                if split == "test":
                    tests.append((cls, p))
    return tests


def make_backbone(path):
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.2 * torch.randn(c, generator=g)
            m.running_mean.data = 0.3 * torch.randn(c, generator=g)
            m.running_var.data = 0.5 + torch.rand(c, generator=g)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith(("layer3.", "layer4.", "fc."))}
    half = {k: (v.half() if v.dtype == torch.float32 else v) for k, v in state.items()}
    torch.save(half, path)
    # What the authors' code sees: the fp16 values, in fp32, in a full network.
    full = net.state_dict()
    full.update({k: v.float() if v.dtype == torch.float16 else v for k, v in half.items()})
    net.load_state_dict(full)
    return net  # still in train mode, as torchvision returns it


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default=os.environ.get("CRAS_REF", "/work/cras-ref"))
    args = ap.parse_args()
    ref = os.path.abspath(args.ref)
    sys.path.insert(0, ref)
    import torch
    import cras as ref_cras  # the authors' module
    import utils as ref_utils
    from datasets.mvtec import MVTecDataset, DatasetSplit

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(os.path.join(OUT, "test"))
    work = tempfile.mkdtemp()
    cwd = os.getcwd()
    os.chdir(work)  # their trainer writes ./results/...
    try:
        data = os.path.join(work, "data")
        tests = make_dataset(data)
        device = torch.device("cpu")
        ref_utils.fix_seeds(0, device)
        backbone = make_backbone(os.path.join(OUT, "backbone.pth"))
        backbone.name, backbone.seed = "resnet18", None
        model = ref_cras.CRAS(device)
        model.load(backbone=backbone, layers_to_extract_from=LAYERS, device=device,
                   input_shape=(3, SIZE, SIZE), pretrain_embed_dimension=DIMS,
                   target_embed_dimension=DIMS, patchsize=3, meta_epochs=2, eval_epochs=1,
                   dsc_layers=3, train_backbone=False, pre_proj=1, noise=0.015, k=0.3,
                   lr=0.0001, limit=392)
        model.set_model_dir(os.path.join(work, "models", "backbone_0"), "tiny")

        def ds(classes, split):
            return MVTecDataset(data, classname=classes, resize=RESIZE, imagesize=SIZE, split=split)

        def dl(d, shuffle):
            return torch.utils.data.DataLoader(d, batch_size=4, shuffle=shuffle, num_workers=0)

        train = dl(ds(CLASSES, DatasetSplit.TRAIN), True)
        trains = [dl(ds([c], DatasetSplit.TRAIN), True) for c in CLASSES]
        testl = []
        for c in CLASSES:
            t = dl(ds([c], DatasetSplit.TEST), False)
            t.name = "tiny_" + c
            testl.append(t)
        best = model.trainer(train, trains, testl, CLASSES, "multi")
        ckpt = glob.glob(os.path.join(model.ckpt_dir, "ckpt_best_*.pth"))
        assert len(ckpt) == 1, ckpt
        shutil.copy(ckpt[0], os.path.join(OUT, "ckpt_best.pth"))
        shutil.copy(os.path.join(model.ckpt_dir, "center.pth"), os.path.join(OUT, "center.pth"))

        # Score with the SAVED files, loaded the authors' way (tester's loading code path).
        state = torch.load(ckpt[0], map_location=device)
        model.discriminator.load_state_dict(state["discriminator"])
        model.pre_projection.load_state_dict(state["pre_projection"])
        model.c2 = torch.load(os.path.join(model.ckpt_dir, "center.pth"), map_location=device)
        tf = ds([CLASSES[0]], DatasetSplit.TEST).transform_img
        names, scores, maps = [], [], []
        for n, (cls, p) in enumerate(tests):
            name = f"{cls}_{n}.png"
            shutil.copy(p, os.path.join(OUT, "test", name))
            img = tf(Image.open(p).convert("RGB")).unsqueeze(0)
            s, m = model._predict(img)
            names.append(name)
            scores.append(float(np.asarray(s[0]).reshape(-1)[0]))
            maps.append(np.asarray(m[0], dtype=np.float32))
        np.stack(maps).astype("<f4").tofile(os.path.join(OUT, "maps.bin"))
        meta = {
            "classes": CLASSES, "resize": RESIZE, "image_size": SIZE, "dims": DIMS,
            "layers": LAYERS, "backbone": "resnet18", "best_epoch": int(best[2]),
            "center_shape": list(model.c2.shape), "images": names, "scores": scores,
            "torch": torch.__version__,
        }
        with open(os.path.join(OUT, "expected.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(json.dumps(meta, indent=1))
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
