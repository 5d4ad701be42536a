#!/usr/bin/env python3
"""Training speed of the authors' CRAS code (github.com/cqylunlun/CRAS; a copy, never committed)
at the paper configuration (WRN50-2, layer2 + layer3, 288 px, dims 1536, batch 32), as their
`_train_discriminator` runs it: features recomputed every step (their backbone runs each step),
center search, noise, adaptor + discriminator update. Random weights and random images (speed does
not depend on them); the model is built as ../shared/bench/ref_speed.py builds it. dev-only.

usage: gpu_ref_train.py --ref-dir DIR [--device cuda] [--batch 32] [--steps 10] [--classes 15]
                        [--size 288]
Prints one JSON line: seconds per step and images per second over --steps timed steps (after
one warm-up step). Their cras.py imports tensorboard, tqdm, cv2 and more at the top: where some
are missing, run this through dev/gpu_ref_run.py (dev/gpu_check.sh does)."""
import argparse
import json
import sys
import time

import torch
import torchvision

ap = argparse.ArgumentParser()
ap.add_argument("--ref-dir", required=True)
ap.add_argument("--device", default="cuda")
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--steps", type=int, default=10)
ap.add_argument("--classes", type=int, default=15)
ap.add_argument("--size", type=int, default=288)
a = ap.parse_args()
sys.path.insert(0, a.ref_dir)
import cras  # noqa: E402  (the authors' module)


class Recorder:
    """Stands in for their TensorBoard wrapper."""

    def __init__(self):
        self.logger = self
        self.g_iter = 0

    def add_scalar(self, *_):
        pass

    def step(self):
        self.g_iter += 1


class Bar:
    def set_description_str(self, *_):
        pass


dev = torch.device(a.device)
torch.manual_seed(0)
net = torchvision.models.wide_resnet50_2(weights=None)
m = cras.CRAS(dev)
m.load(net, ["layer2", "layer3"], dev, (3, a.size, a.size), 1536, 1536)
P = (a.size // 8) ** 2
names = [f"class{k}" for k in range(a.classes)]
m.c2 = torch.randn(a.classes, P, 1536, device=dev)
m.class_names = names
m.logger = Recorder()
# Their loader yields CPU tensors and paths <root>/<class>/train/good/<file>; the class is [-4].
batches = [{"image": torch.randn(a.batch, 3, a.size, a.size),
            "image_path": [f"/d/{names[(s * a.batch + i) % a.classes]}/train/good/{i:03d}.png" for i in range(a.batch)]}
           for s in range(a.steps + 1)]
m._train_discriminator(batches[:1], 0, Bar(), "")  # warm-up (cuDNN autotune, allocator)
if dev.type == "cuda":
    torch.cuda.synchronize()
t = time.perf_counter()
m._train_discriminator(batches[1:], 1, Bar(), "")
if dev.type == "cuda":
    torch.cuda.synchronize()
s = (time.perf_counter() - t) / a.steps
print(json.dumps(dict(what="reference_cras_training", device=a.device, batch=a.batch, steps=a.steps,
                      threads=torch.get_num_threads(), s_per_step=s, img_per_s=a.batch / s)), flush=True)
