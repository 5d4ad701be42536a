"""Parity fixture for `--reference-masks` on GREY masks (dev-only; never run in CI).

    pip install torch torchvision pillow numpy
    python dev/gen_grey_mask_fixture.py

Writes a 45x31 mask with grey levels 0, 60, 200 and 255 (tests/fixtures/preprocess/
grey_mask_45x31.png) and, per geometry, what the reference's dataset and metrics make of it:
PIL "L" -> Resize -> CenterCrop -> ToTensor, then `astype(int)` (only exact 1.0 counts).
Output: grey_mask__<name>.u8, one byte (0/1) per pixel, row-major.
"""
import os

import numpy as np
from PIL import Image
from torchvision import transforms

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "preprocess")
SETTINGS = [("short_20_16", 20, 16, False), ("square_16", 16, 16, True)]

m = np.zeros((31, 45), np.uint8)
m[4:20, 5:22] = 255          # a defect
m[8:14, 22:30] = 200         # a grey band next to it (anti-aliased annotation)
m[20:27, 30:42] = 60         # a faint grey region
m[2:29, 38] = 255            # a thin line
path = os.path.join(OUT, "grey_mask_45x31.png")
Image.fromarray(m, "L").save(path)
mask = Image.open(path).convert("L")
for name, resize, crop, square in SETTINGS:
    if square:
        geo = transforms.Resize((crop, crop))
    else:
        geo = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])
    t = transforms.ToTensor()(geo(mask))[0].numpy()
    truncated = t.astype(int).astype(np.uint8)  # the reference's astype(int): only 1.0 -> 1
    truncated.tofile(os.path.join(OUT, f"grey_mask__{name}.u8"))
    print(name, truncated.sum(), "of", truncated.size)
