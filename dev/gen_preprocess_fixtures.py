"""Generate the preprocessing parity fixtures under tests/fixtures/preprocess/.

How to run (dev only, never in CI; the outputs are committed):
    pip install torch torchvision pillow numpy
    python dev/gen_preprocess_fixtures.py

It draws a few small images with numpy (odd and non-square sizes; modes L, LA, RGB, RGBA,
16-bit gray, and a JPEG; one mask), saves them, and records with Pillow + torchvision:
  <name>.rgb                      Pillow's Image.open(f).convert("RGB") as raw uint8 HWC
  <name>__<setting>.u8            uint8 HWC after Resize + CenterCrop (or Resize((s, s)))
  <name>__<setting>.f32           float32 CHW after ToTensor + Normalize(ImageNet), little-endian
  mask__<setting>.f32             float32 HW: the mask after Resize + CenterCrop + ToTensor
manifest.json lists every image (file, width, height) and setting (resize, crop, mode).
"""

import json
import os

import numpy as np
from PIL import Image
from torchvision import transforms

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "preprocess")
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
SETTINGS = [
    {"name": "r40c32", "resize": 40, "crop": 32, "mode": "ShorterSideThenCenterCrop"},
    {"name": "r37c32", "resize": 37, "crop": 32, "mode": "ShorterSideThenCenterCrop"},
    {"name": "sq32", "resize": 32, "crop": 32, "mode": "Square"},
]


def smooth_noise(rng, h, w, c):
    """Smooth gradients plus sharp noise: exercises every filter tap."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = 127 + 100 * np.sin(xx / 3.0 + yy / 5.0)
    out = np.stack([base + rng.normal(0, 40, (h, w)) + 20 * k for k in range(c)], -1)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_images(rng):
    imgs = {}
    imgs["rgb_45x31"] = Image.fromarray(smooth_noise(rng, 31, 45, 3), "RGB")
    imgs["gray_33x50"] = Image.fromarray(smooth_noise(rng, 50, 33, 1)[..., 0], "L")
    imgs["la_40x40"] = Image.fromarray(smooth_noise(rng, 40, 40, 2), "LA")
    imgs["rgba_52x47"] = Image.fromarray(smooth_noise(rng, 47, 52, 4), "RGBA")
    imgs["rgb_20x24_upscale"] = Image.fromarray(smooth_noise(rng, 24, 20, 3), "RGB")
    g16 = (smooth_noise(rng, 44, 36, 1)[..., 0].astype(np.uint16) * 3)  # 0..765: clipping matters
    imgs["gray16_36x44"] = Image.fromarray(g16)  # uint16 -> mode "I;16"
    return imgs


def save_f32(path, tensor):
    np.asarray(tensor, dtype="<f4").tofile(path)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    manifest = {"settings": SETTINGS, "images": [], "mask": None}
    files = []
    for name, img in make_images(rng).items():
        files.append((name, f"{name}.png"))
        img.save(os.path.join(OUT, f"{name}.png"))
    jpg = Image.fromarray(smooth_noise(rng, 38, 48, 3), "RGB")
    jpg.save(os.path.join(OUT, "jpeg_48x38.jpg"), quality=90)
    files.append(("jpeg_48x38", "jpeg_48x38.jpg"))

    for name, fname in files:
        rgb = Image.open(os.path.join(OUT, fname)).convert("RGB")
        np.asarray(rgb, dtype=np.uint8).tofile(os.path.join(OUT, f"{name}.rgb"))
        manifest["images"].append({"name": name, "file": fname, "width": rgb.width, "height": rgb.height})
        for s in SETTINGS:
            if s["mode"] == "Square":
                geo = transforms.Resize((s["crop"], s["crop"]))
            else:
                geo = transforms.Compose([transforms.Resize(s["resize"]), transforms.CenterCrop(s["crop"])])
            resized = geo(rgb)
            np.asarray(resized, dtype=np.uint8).tofile(os.path.join(OUT, f"{name}__{s['name']}.u8"))
            t = transforms.Normalize(MEAN, STD)(transforms.ToTensor()(resized))
            save_f32(os.path.join(OUT, f"{name}__{s['name']}.f32"), t.numpy())

    # A 0/255 mask with a blob and a thin line: its resize yields fractional borders.
    yy, xx = np.mgrid[0:31, 0:45]
    m = (((xx - 20) ** 2 + (yy - 14) ** 2) < 60) | ((xx == 35) & (yy > 3))
    Image.fromarray((m * 255).astype(np.uint8), "L").save(os.path.join(OUT, "mask_45x31.png"))
    manifest["mask"] = {"file": "mask_45x31.png", "width": 45, "height": 31}
    mask = Image.open(os.path.join(OUT, "mask_45x31.png")).convert("L")
    for s in SETTINGS:
        if s["mode"] == "Square":
            geo = transforms.Resize((s["crop"], s["crop"]))
        else:
            geo = transforms.Compose([transforms.Resize(s["resize"]), transforms.CenterCrop(s["crop"])])
        t = transforms.ToTensor()(geo(mask))[0]
        save_f32(os.path.join(OUT, f"mask__{s['name']}.f32"), t.numpy())

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
