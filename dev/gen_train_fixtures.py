"""Parity fixtures for CRAS training steps (dev-only; never run in CI).

    pip install torch numpy
    python dev/gen_train_fixtures.py

Builds the reference head at small dimensions with torch (Linear adaptor, the reference's
discriminator layout, AdamW for the adaptor, Adam with coupled L2 for the discriminator), feeds
it given descriptors, centers, class indices and noise, runs TWO training steps following the
reference's semantics (center search over all positions, distance-guided synthesis, one batch
for true and fake rows, BCE), and records every input, the initial weights and the expected
loss, updated weights, optimiser-independent BatchNorm running statistics, the aligned centers
and the fake features. Output: tests/fixtures/train/step.json + step.bin (little-endian f32).
"""
import json, os
import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(7)
B, P, D, K = 2, 9, 16, 2
SIGMA, KMIX = 0.015, 0.3
out_dir = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "train")
os.makedirs(out_dir, exist_ok=True)

g = torch.randn(2, B, P, D)                 # two steps' descriptors
classes = torch.tensor([[0, 1], [1, 1]])    # per step, per image
centers = torch.randn(K, P, D) * 0.5
noise = torch.randn(2, B * P, D) * SIGMA

adaptor = torch.nn.Linear(D, D)
torch.nn.init.xavier_normal_(adaptor.weight)
disc = torch.nn.Sequential(
    torch.nn.Linear(2 * D, D), torch.nn.BatchNorm1d(D), torch.nn.LeakyReLU(0.2),
    torch.nn.Linear(D, D // 2), torch.nn.BatchNorm1d(D // 2), torch.nn.LeakyReLU(0.2),
    torch.nn.Linear(D // 2, 1, bias=False), torch.nn.Sigmoid())
for m in disc:
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.xavier_normal_(m.weight)

names = {
    "pre_projection.layers.0fc.weight": adaptor.weight, "pre_projection.layers.0fc.bias": adaptor.bias,
    "discriminator.body.block1.0.weight": disc[0].weight, "discriminator.body.block1.0.bias": disc[0].bias,
    "discriminator.body.block1.1.weight": disc[1].weight, "discriminator.body.block1.1.bias": disc[1].bias,
    "discriminator.body.block2.0.weight": disc[3].weight, "discriminator.body.block2.0.bias": disc[3].bias,
    "discriminator.body.block2.1.weight": disc[4].weight, "discriminator.body.block2.1.bias": disc[4].bias,
    "discriminator.tail.0.weight": disc[6].weight,
}
buffers = {
    "discriminator.body.block1.1.running_mean": disc[1].running_mean,
    "discriminator.body.block1.1.running_var": disc[1].running_var,
    "discriminator.body.block2.1.running_mean": disc[4].running_mean,
    "discriminator.body.block2.1.running_var": disc[4].running_var,
}
tensors = {"g": g, "classes": classes.float(), "centers": centers, "noise": noise}
for n, t in names.items():
    tensors["init." + n] = t.detach().clone()

opt_a = torch.optim.AdamW(adaptor.parameters(), lr=1e-4)
opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, weight_decay=1e-5)
adaptor.train(); disc.train()
losses = []
for step in range(2):
    opt_a.zero_grad(); opt_d.zero_grad()
    f = adaptor(g[step].reshape(B * P, D))
    r = torch.zeros_like(f)
    for i in range(B):
        bank = centers[classes[step, i]]
        sim = torch.mm(F.normalize(f[i * P:(i + 1) * P], dim=1), F.normalize(bank, dim=1).T)
        r[i * P:(i + 1) * P] = bank[torch.argmax(sim, dim=1)]
    n = noise[step]
    scale = torch.norm(n, dim=1) / torch.norm(f - r, dim=1)
    scale = scale / scale.mean()
    scale = (scale - 1) * KMIX + 1
    fake = f + (scale.unsqueeze(1) * n).detach()
    trues = torch.cat([f, f - r], dim=1)
    fakes = torch.cat([fake, fake - r], dim=1)
    scores = disc(torch.cat([trues, fakes]))
    ts, fs = scores[:B * P], scores[B * P:]
    loss = torch.nn.BCELoss()(ts, torch.zeros_like(ts)) + torch.nn.BCELoss()(fs, torch.ones_like(fs))
    loss.backward()
    opt_a.step(); opt_d.step()
    losses.append(loss.item())
    tensors[f"step{step}.r"] = r.detach().clone()
    tensors[f"step{step}.fake"] = fake.detach().clone()
for n, t in {**names, **buffers}.items():
    tensors["final." + n] = t.detach().clone()

index, blobs, offset = {}, [], 0
for n, t in tensors.items():
    a = t.detach().cpu().numpy().astype("<f4")
    index[n] = {"shape": list(a.shape), "offset": offset}
    blobs.append(a.tobytes())
    offset += a.size
with open(os.path.join(out_dir, "step.bin"), "wb") as fh:
    fh.write(b"".join(blobs))
meta = {"B": B, "P": P, "D": D, "K": K, "sigma": SIGMA, "k": KMIX, "losses": losses, "tensors": index}
with open(os.path.join(out_dir, "step.json"), "w") as fh:
    json.dump(meta, fh, indent=1)
print("losses", losses, "floats", offset)
