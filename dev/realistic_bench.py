"""A benchmark of realistic character for fidelity and precision studies; dev-only, never in CI.

Builds, in MVTec AD's layout (<class>/train/good, <class>/test/<defect>, <class>/ground_truth):

- 6 texture classes cut from real photographs that Python packages ship (scikit-image's bundled
  images, scikit-learn's sample images): 256 px crops at random positions, scales, flips and
  small brightness changes; defects painted into them with pixel masks (a patch of another
  photograph, a scratch, a stain, a hole);
- 2 rendered object classes (a hex nut and a capsule on a textured tray, random pose and
  lighting); defects: a missing chunk, a crack, a discoloured spot, a foreign speck;
- 30 normal training images per class, 12 normal and 20 defective test images per class
  (5 of each of 4 defect kinds), PNG, masks 0/255;
- `wrn50_bnstats.pth`: a torchvision WRN50-2 with seeded random weights whose BatchNorm
  statistics are re-estimated on the training images (resize 183, crop 160, ImageNet
  normalisation), saved as a torchvision state dict that both codes load.

    python dev/realistic_bench.py --out /work/bench/realistic [--seed 0]
    # the backbone in small form (270 KB) and back, for the GPU machine (dev/gpu_fidelity.sh)
    python dev/realistic_bench.py --out B --export-bn bn.pt
    python dev/realistic_bench.py --out B2 --rebuild-backbone bn.pt

Needs numpy, scipy, pillow, scikit-image, scikit-learn, torch, torchvision.
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 256
TRAIN, TEST_GOOD, TEST_DEFECT = 30, 12, 20
RESIZE, CROP = 183, 160


def photographs():
    """Six real photographs shipped inside installed packages, as float RGB in [0, 1]."""
    import skimage.data as d
    from sklearn.datasets import load_sample_images
    out = {}
    for name in ["brick", "grass", "gravel", "coffee", "moon", "hubble_deep_field",
                 "immunohistochemistry", "chelsea", "astronaut", "camera", "text"]:
        try:
            img = getattr(d, name)()
        except Exception:  # not bundled (would need a download): try the next one
            continue
        out[name] = img
        if len(out) == 5:
            break
    samples = load_sample_images()
    out["china"] = samples.images[0]
    rgb = {}
    for k, v in out.items():
        v = np.asarray(v, dtype=np.float64)
        if v.max() > 1.5:
            v = v / 255.0
        if v.ndim == 2:
            v = np.stack([v] * 3, -1)
        rgb[k] = np.clip(v[..., :3], 0, 1)
    assert len(rgb) == 6, f"only {sorted(rgb)} found"
    return rgb


def crop_texture(src, rng):
    """A random 256 px view of a photograph: scale 0.8-1.2 of a 256-400 px window, flips,
    brightness +-5%."""
    h, w, _ = src.shape
    side = int(rng.integers(min(256, min(h, w) // 2), min(400, min(h, w)) + 1))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    patch = src[y:y + side, x:x + side]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1]
    img = Image.fromarray((patch * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float64) / 255.0
    return np.clip(a * rng.uniform(0.95, 1.05), 0, 1)


def blob_mask(rng, lo=12, hi=40):
    """A smooth random blob (0/1) somewhere in the image."""
    m = Image.new("L", (SIZE, SIZE), 0)
    cx, cy = rng.integers(40, SIZE - 40, size=2)
    r = rng.integers(lo, hi)
    pts = []
    for t in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        rr = r * rng.uniform(0.6, 1.3)
        pts.append((cx + rr * np.cos(t), cy + rr * np.sin(t)))
    ImageDraw.Draw(m).polygon(pts, fill=255)
    m = m.filter(ImageFilter.GaussianBlur(2))
    return (np.asarray(m) > 127).astype(np.float64)


def scratch_mask(rng):
    m = Image.new("L", (SIZE, SIZE), 0)
    pts = [tuple(rng.integers(30, SIZE - 30, size=2))]
    for _ in range(int(rng.integers(2, 5))):
        step = rng.integers(-50, 51, size=2)
        pts.append(tuple(np.clip(np.array(pts[-1]) + step, 5, SIZE - 5)))
    ImageDraw.Draw(m).line([tuple(map(int, p)) for p in pts], fill=255, width=int(rng.integers(3, 7)))
    return (np.asarray(m) > 127).astype(np.float64)


def paint_defect(img, kind, rng, other):
    """Paints defect `kind` into img (float RGB); returns (image, mask 0/1)."""
    if kind == "foreign":
        m = blob_mask(rng)
        img = img * (1 - m[..., None]) + other * m[..., None]
    elif kind == "scratch":
        m = scratch_mask(rng)
        tone = rng.choice([0.1, 0.9])
        img = img * (1 - 0.8 * m[..., None]) + 0.8 * tone * m[..., None]
    elif kind == "stain":
        m = blob_mask(rng, 15, 45)
        shift = rng.uniform(-0.35, 0.35, size=3)
        img = np.clip(img + 0.8 * m[..., None] * shift, 0, 1)
    elif kind == "hole":
        m = blob_mask(rng, 8, 22)
        img = img * (1 - m[..., None]) + 0.05 * m[..., None]
    else:
        raise ValueError(kind)
    return img, m


def tray(rng):
    """The object classes' background: a fine, slightly noisy grey surface."""
    base = rng.uniform(0.25, 0.35)
    noise = rng.normal(0, 0.03, (SIZE, SIZE))
    from scipy.ndimage import gaussian_filter
    g = base + gaussian_filter(noise, 1.5)
    return np.clip(np.stack([g, g * 1.02, g * 0.98], -1), 0, 1)


def render_object(kind, rng):
    """A hex nut or a capsule at a random pose and light on a tray; returns (image, object mask)."""
    img = tray(rng)
    m = Image.new("L", (SIZE, SIZE), 0)
    dr = ImageDraw.Draw(m)
    cx, cy = SIZE / 2 + rng.uniform(-12, 12, size=2)
    ang = rng.uniform(0, 2 * np.pi)
    if kind == "nut":
        r = rng.uniform(78, 86)
        pts = [(cx + r * np.cos(ang + i * np.pi / 3), cy + r * np.sin(ang + i * np.pi / 3)) for i in range(6)]
        dr.polygon(pts, fill=255)
        hole = rng.uniform(34, 38)
        dr.ellipse([cx - hole, cy - hole, cx + hole, cy + hole], fill=0)
        colour = np.array([0.72, 0.70, 0.66])
    else:
        length, rad = rng.uniform(95, 105), rng.uniform(36, 40)
        d = np.array([np.cos(ang), np.sin(ang)])
        a, b = np.array([cx, cy]) - d * length / 2, np.array([cx, cy]) + d * length / 2
        dr.line([tuple(a), tuple(b)], fill=255, width=int(2 * rad))
        for p in (a, b):
            dr.ellipse([p[0] - rad, p[1] - rad, p[0] + rad, p[1] + rad], fill=255)
        colour = np.array([0.85, 0.35, 0.25])
    mask = np.asarray(m.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float64) / 255.0
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    light = rng.uniform(0, 2 * np.pi)
    shade = 0.8 + 0.25 * (np.cos(light) * (xx - cx) + np.sin(light) * (yy - cy)) / SIZE
    grain = rng.normal(0, 0.015, (SIZE, SIZE))
    obj = np.clip(colour[None, None] * (shade + grain)[..., None], 0, 1)
    if kind == "capsule":  # the two halves in two colours
        side = (np.cos(ang) * (xx - cx) + np.sin(ang) * (yy - cy)) > 0
        obj[side] = np.clip(obj[side] * np.array([0.3, 1.6, 2.4]), 0, 1)
    img = img * (1 - mask[..., None]) + obj * mask[..., None]
    return img, mask


def object_defect(img, objmask, kind, rng):
    """A defect on the object: missing chunk, crack, discoloured spot, foreign speck."""
    ys, xs = np.nonzero(objmask > 0.5)
    i = rng.integers(len(ys))
    cy, cx = ys[i], xs[i]
    m = Image.new("L", (SIZE, SIZE), 0)
    dr = ImageDraw.Draw(m)
    if kind == "crack":
        pts = [(cx, cy)]
        for _ in range(3):
            pts.append((pts[-1][0] + rng.integers(-25, 26), pts[-1][1] + rng.integers(-25, 26)))
        dr.line([tuple(map(int, p)) for p in pts], fill=255, width=3)
    else:
        r = {"chunk": 20, "spot": 14, "speck": 7}[kind] * rng.uniform(0.8, 1.3)
        dr.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    m = (np.asarray(m) > 127).astype(np.float64)
    if kind in ("crack", "chunk", "spot"):
        m = m * (objmask > 0.5)  # on the object only
    if kind == "chunk":
        img = img * (1 - m[..., None]) + tray(rng) * m[..., None]
    elif kind == "crack":
        img = img * (1 - 0.85 * m[..., None])
    elif kind == "spot":
        img = np.clip(img + m[..., None] * np.array([-0.25, 0.15, 0.3]), 0, 1)
    else:
        img = img * (1 - m[..., None]) + np.array([0.1, 0.1, 0.08]) * m[..., None]
    return img, m


def save(path, a, mode="RGB"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if mode == "L":
        Image.fromarray((a > 0.5).astype(np.uint8) * 255, "L").save(path)
    else:
        Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8), "RGB").save(path)


def make_class(out, name, normal, defect, kinds, rng):
    for i in range(TRAIN):
        save(f"{out}/{name}/train/good/{i:03d}.png", normal(rng)[0])
    for i in range(TEST_GOOD):
        save(f"{out}/{name}/test/good/{i:03d}.png", normal(rng)[0])
    per = TEST_DEFECT // len(kinds)
    for kind in kinds:
        for i in range(per):
            img, m = defect(kind, rng)
            if m.sum() < 20:  # a defect must be visible: redraw
                img, m = defect(kind, rng)
            save(f"{out}/{name}/test/{kind}/{i:03d}.png", img)
            save(f"{out}/{name}/ground_truth/{kind}/{i:03d}_mask.png", m, "L")


def make_data(out, seed):
    rng = np.random.default_rng(seed)
    photos = photographs()
    names = sorted(photos)
    for n in names:
        src = photos[n]
        others = [photos[o] for o in names if o != n]

        def normal(r, src=src):
            return crop_texture(src, r), None

        def defect(kind, r, src=src, others=others):
            other = crop_texture(others[r.integers(len(others))], r)
            return paint_defect(crop_texture(src, r), kind, r, other)
        make_class(out, n, normal, defect, ["foreign", "scratch", "stain", "hole"], rng)
    for obj in ["nut", "capsule"]:
        def normal(r, obj=obj):
            return render_object(obj, r)

        def defect(kind, r, obj=obj):
            img, om = render_object(obj, r)
            return object_defect(img, om, kind, r)
        make_class(out, obj, normal, defect, ["chunk", "crack", "spot", "speck"], rng)
    return names + ["nut", "capsule"]


def make_backbone(out, classes, seed):
    """WRN50-2, seeded random weights, BatchNorm statistics re-estimated on the training images."""
    import torch
    import torchvision
    from torchvision import transforms
    torch.manual_seed(seed)
    net = torchvision.models.wide_resnet50_2(weights=None)
    tf = transforms.Compose([transforms.Resize(RESIZE), transforms.CenterCrop(CROP), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    imgs = []
    for c in classes:
        d = f"{out}/{c}/train/good"
        imgs += [tf(Image.open(os.path.join(d, f)).convert("RGB")) for f in sorted(os.listdir(d))]
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
    net.train()
    with torch.no_grad():
        x = torch.stack(imgs)
        for i in range(0, len(x), 16):
            net(x[i:i + 16])
    path = f"{out}/wrn50_bnstats.pth"
    torch.save(net.state_dict(), path + ".tmp")
    os.replace(path + ".tmp", path)
    return path


BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def state_sha256(state):
    """SHA-256 over a state dict's names and tensor bytes, names sorted."""
    import hashlib
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def export_bn(out, path, seed):
    """The backbone file in small form, to send where 263 MB cannot go: the BatchNorm buffers
    (the only values not drawn by `torch.manual_seed(seed)` + the constructor) and the SHA-256 of
    the whole state dict, which `rebuild_backbone` checks."""
    import torch
    state = torch.load(os.path.join(out, "wrn50_bnstats.pth"))
    buffers = {k: v for k, v in state.items() if k.endswith(BN_BUFFERS)}
    digest = state_sha256(state)
    torch.save({"seed": seed, "buffers": buffers, "sha256": digest}, path)
    print(f"{path}: {len(buffers)} buffers, sha256 {digest}")


def rebuild_backbone(out, path):
    """`wrn50_bnstats.pth` in `out` from `export_bn`'s file; returns whether it is the original
    to the bit (the seeded initialisation is torch's; another torch version may draw otherwise)."""
    import torch
    import torchvision
    small = torch.load(path)
    torch.manual_seed(small["seed"])
    state = torchvision.models.wide_resnet50_2(weights=None).state_dict()
    state.update(small["buffers"])
    target = os.path.join(out, "wrn50_bnstats.pth")
    torch.save(state, target + ".tmp")
    os.replace(target + ".tmp", target)
    same = state_sha256(state) == small["sha256"]
    print(f"{target}: {'identical to the original' if same else 'DIFFERS from the original'}")
    return same


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export-bn", metavar="FILE",
                    help="write --out's backbone in small form (BatchNorm buffers + hash) to FILE")
    ap.add_argument("--rebuild-backbone", metavar="FILE",
                    help="rebuild --out's wrn50_bnstats.pth from an --export-bn FILE (exit 3 if it differs)")
    a = ap.parse_args()
    if a.export_bn:
        export_bn(a.out, a.export_bn, a.seed)
        raise SystemExit(0)
    if a.rebuild_backbone:
        raise SystemExit(0 if rebuild_backbone(a.out, a.rebuild_backbone) else 3)
    cls = make_data(a.out, a.seed)
    print("classes:", ",".join(cls))
    print("backbone:", make_backbone(a.out, cls, a.seed))
