"""Generates the parity fixtures of the backbone and the patch descriptor (dev only, never in CI).

How to run (from the repository root):
    pip install torch torchvision numpy
    python dev/gen_backbone_fixtures.py

Writes tests/fixtures/backbone/:
  * net.{legacy.pth,zip.pth,safetensors}: the UNPERTURBED state dict of torchvision's
    ResNet(Bottleneck, [3,4,6,3], width_per_group=4) with random non-trivial BatchNorm statistics,
    truncated after layer2 (torchvision's layer2 downsample alone is 131k weights; keeping the
    fixtures small), stored as float16 (values were rounded to float16 before any computation,
    so the float32 results below are exact for these weights). Legacy = torch.save with
    _use_new_zipfile_serialization=False (the format of torchvision's ImageNet files).
  * images.bin: 2 input images [2,3,32,32].
  * reference_layer2.bin: layer2 output after the reference's load-time BN
    perturbation (model.train(); model(ones[1,3,64,64]); model.eval()), run on the FULL network.
  * clean_layer2.bin: layer2 output with the untouched statistics.
  * desc_{small,full}_{l2,l3,out}.bin: random layer2/layer3-like maps and the descriptors the
    reference's own operations give (unfold, bilinear interpolate, adaptive_avg_pool1d twice),
    at dims 96 (non-uniform pooling bins) and at the real 1536 with the real channel counts.
All .bin files are raw little-endian float32; meta.json gives shapes and settings.
"""
import copy
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.resnet import Bottleneck, ResNet

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "backbone")
WIDTH_PER_GROUP = 4
PERTURB_SIZE = 64  # the all-ones image; 64 keeps layer4's train-mode BN valid (2x2 per channel)
IMAGE_SIZE = 32


def save_bin(name, t, meta):
    a = t.detach().cpu().float().contiguous().numpy().astype("<f4")
    a.tofile(os.path.join(OUT, name + ".bin"))
    meta[name] = list(a.shape)


def write_safetensors(path, tensors):
    """safetensors by hand: u64 header length, JSON header, raw little-endian bytes."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dtype = {torch.float16: ("F16", "<f2"), torch.int64: ("I64", "<i8")}[t.dtype]
        raw = t.numpy().astype(dtype[1]).tobytes()
        header[name] = {"dtype": dtype[0], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_net():
    torch.manual_seed(0)
    net = ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=WIDTH_PER_GROUP)
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.2 * torch.randn(c, generator=g)
            m.running_mean.data = 0.3 * torch.randn(c, generator=g)
            m.running_var.data = 0.5 + 1.5 * torch.rand(c, generator=g)
    for t in list(net.parameters()) + list(net.buffers()):
        if t.dtype == torch.float32:
            t.data = t.data.half().float()  # exact in the float16 files
    return net


def stage_outputs(net, x, upto):
    """Outputs of layer1..layer`upto` in eval mode."""
    outs = []
    with torch.no_grad():
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        for layer in [net.layer1, net.layer2, net.layer3, net.layer4][:upto]:
            h = layer(h)
            outs.append(h)
    return outs


def reference_descriptor(feats, dims, patch=3):
    """The reference chain with torch's own ops: unfold, align by bilinear interpolation of the
    unfolded planes, adaptive_avg_pool1d per layer, stack, adaptive_avg_pool1d again."""
    pad = (patch - 1) // 2
    unfolded, grids = [], []
    for f in feats:
        u = torch.nn.Unfold(kernel_size=patch, stride=1, padding=pad)(f)
        b, c, h, w = f.shape
        u = u.reshape(b, c, patch, patch, h * w).permute(0, 4, 1, 2, 3)  # [B, hw, C, p, p]
        unfolded.append(u)
        grids.append((h, w))
    h0, w0 = grids[0]
    for i in range(1, len(unfolded)):
        u = unfolded[i]
        b = u.shape[0]
        h, w = grids[i]
        u = u.reshape(b, h, w, *u.shape[2:]).permute(0, 3, 4, 5, 1, 2)
        base = u.shape
        u = u.reshape(-1, h, w).unsqueeze(1)
        u = F.interpolate(u, size=(h0, w0), mode="bilinear", align_corners=False).squeeze(1)
        u = u.reshape(*base[:-2], h0, w0).permute(0, 4, 5, 1, 2, 3)
        unfolded[i] = u.reshape(b, h0 * w0, *u.shape[-3:])
    rows = [u.reshape(-1, *u.shape[-3:]) for u in unfolded]
    pooled = [F.adaptive_avg_pool1d(r.reshape(len(r), 1, -1), dims).squeeze(1) for r in rows]
    stacked = torch.stack(pooled, dim=1)
    out = F.adaptive_avg_pool1d(stacked.reshape(len(stacked), 1, -1), dims).reshape(len(stacked), -1)
    b = feats[0].shape[0]
    return out.reshape(b, h0 * w0, dims)


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"width_per_group": WIDTH_PER_GROUP, "perturb_size": PERTURB_SIZE, "image_size": IMAGE_SIZE}
    net = make_net()
    state = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith(("layer3.", "layer4.", "fc."))}
    half = {k: (v.half() if v.dtype == torch.float32 else v) for k, v in state.items()}
    torch.save(half, os.path.join(OUT, "net.legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(half, os.path.join(OUT, "net.zip.pth"))
    write_safetensors(os.path.join(OUT, "net.safetensors"), half)

    torch.manual_seed(2)
    images = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    save_bin("images", images, meta)

    clean = copy.deepcopy(net).eval()
    save_bin("clean_layer2", stage_outputs(clean, images, 2)[1], meta)

    perturbed = copy.deepcopy(net)
    perturbed.train()
    with torch.no_grad():
        perturbed(torch.ones(1, 3, PERTURB_SIZE, PERTURB_SIZE))  # the reference's quirk
    perturbed.eval()
    save_bin("reference_layer2", stage_outputs(perturbed, images, 2)[1], meta)

    torch.manual_seed(3)
    for name, (b, c2, s2, c3, dims) in {"small": (2, 16, 8, 24, 96), "full": (1, 512, 4, 1024, 1536)}.items():
        l2f = torch.relu(torch.randn(b, c2, s2, s2))
        l3f = torch.relu(torch.randn(b, c3, s2 // 2, s2 // 2))
        save_bin(f"desc_{name}_l2", l2f, meta)
        save_bin(f"desc_{name}_l3", l3f, meta)
        save_bin(f"desc_{name}_out", reference_descriptor([l2f, l3f], dims), meta)
        meta[f"desc_{name}_dims"] = dims
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
