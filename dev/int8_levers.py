"""Dev-only (never in CI): standard int8 levers tried on cras's exported graph, measured as
dev/int8_probe.py measures (logit error of the image scores against the f32 graph, ONNX Runtime,
48 normal and 48 defective test images).

Builds its own QDQ graph from the f32 graph (the rule of `cras export --int8`: uint8 activations
per tensor over the calibrated min / max, int8 weights per output channel; it reproduces the
exported graph's error), calibrated on 32 training images spread over the classes, then:
- bias correction: each convolution's bias minus the mean shift its quantized weights cause
  on the calibration inputs (Nagel et al. 2019);
- per-channel equalization: for a Conv - Relu [- MaxPool] - Conv chain, channel i of the first
  convolution divided by s_i and the consumers' input channel i multiplied by it
  (s_i = act_max_i^alpha / w_max_i^(1 - alpha), SmoothQuant / DFQ), so that the per-tensor
  activation range suits every channel; the f32 graph is unchanged by it (checked);
- `--per-layer`: each convolution alone at int8, then the most sensitive kept at f32;
- `--auroc`: the mean per-class image AUROC of every test image at f32, int8, and int8 with the
  stem and layer1 at f32.

    cras export --model M --out f32.onnx
    python3 dev/int8_levers.py f32.onnx /path/realistic --alphas 0.5,0.8,1.0
    python3 dev/int8_levers.py f32.onnx /path/realistic --per-layer   # each conv alone at int8
    python3 dev/int8_levers.py f32.onnx /path/realistic --auroc       # image AUROC, all test images

Needs onnx, onnxruntime, numpy and pillow (and scikit-learn for --auroc).
"""
import argparse
import copy
import glob

import numpy as np
import onnx
from onnx import helper, numpy_helper as nh, TensorProto

from int8_common import logit, prep, session, test_images

ap = argparse.ArgumentParser()
ap.add_argument('f32')
ap.add_argument('data')
ap.add_argument('--alphas', default='0.5')
ap.add_argument('--per-kind', type=int, default=48)
ap.add_argument('--calib', type=int, default=32)
ap.add_argument('--auroc', action='store_true', help='image AUROC on every test image: f32, int8, int8 with stem + layer1 f32')
ap.add_argument('--per-layer', action='store_true', help='each convolution alone at int8, then the most sensitive kept f32')
a = ap.parse_args()
paths, chosen = test_images(a.data, a.per_kind)
X = np.stack([prep(p) for p in chosen])
train = sorted(glob.glob(f'{a.data}/*/train/good/*.png'))
classes = sorted({p.split('/')[-4] for p in train})
cal = []
for i in range(a.calib):
    c = classes[i % len(classes)]
    mine = [p for p in train if p.split('/')[-4] == c]
    cal.append(mine[(i // len(classes)) * 3 % len(mine)])
C = np.stack([prep(p) for p in cal])


def scores(m, x=X):
    s = session(m)
    return np.concatenate([s.run(['image_score'], {'image': x[i:i + 16]})[0]
                           for i in range(0, len(x), 16)]).ravel()


def conv_inputs(m):
    return [n.input[0] for n in m.graph.node if n.op_type == 'Conv']


def conv_names(m):
    """Each convolution's module path (`layer1.0.conv2`), in graph order."""
    return [n.input[1].rsplit('.weight', 1)[0] for n in m.graph.node if n.op_type == 'Conv']


def stats(m, names, x=C):
    """Per-tensor min/max and per-channel max of the named values over x."""
    m = copy.deepcopy(m)
    have = {o.name for o in m.graph.output}
    for nm in names:
        if nm not in have:
            m.graph.output.append(helper.make_tensor_value_info(nm, TensorProto.FLOAT, None))
    s = session(m)
    out = {}
    for i in range(0, len(x), 8):
        vals = s.run(names, {'image': x[i:i + 8]})
        for nm, v in zip(names, vals):
            lo, hi, ch = v.min(), v.max(), v.max(axis=(0, 2, 3))
            mu = v.mean(axis=(0, 2, 3)) * len(v)
            if nm in out:
                o = out[nm]
                out[nm] = (min(o[0], lo), max(o[1], hi), np.maximum(o[2], ch), o[3] + mu)
            else:
                out[nm] = (lo, hi, ch, mu)
    return out


def equalize(m, alpha):
    m = copy.deepcopy(m)
    g = m.graph
    prod = {o: n for n in g.node for o in n.output}
    cons = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    init = {i.name: i for i in g.initializer}
    chains = []
    for n in g.node:
        if n.op_type != 'Relu':
            continue
        src = prod.get(n.input[0])
        if src is None or src.op_type != 'Conv':
            continue
        v = n.output[0]
        users = cons.get(v, [])
        if len(users) == 1 and users[0].op_type == 'MaxPool':
            v = users[0].output[0]
            users = cons.get(v, [])
        if users and all(u.op_type == 'Conv' and u.input[0] == v for u in users):
            chains.append((src, v, users))
    st = stats(m, [v for _, v, _ in chains])
    for src, v, users in chains:
        amax = st[v][2].astype(np.float64)
        wmax = np.zeros_like(amax)
        for u in users:
            w = nh.to_array(init[u.input[1]])
            wmax = np.maximum(wmax, np.abs(w).max(axis=(0, 2, 3)))
        s = np.where((amax > 0) & (wmax > 0), amax ** alpha / np.maximum(wmax, 1e-12) ** (1 - alpha), 1.0)
        s = s / np.exp(np.mean(np.log(s)))  # geometric mean 1
        s = s.astype(np.float32)
        wa = nh.to_array(init[src.input[1]]) / s[:, None, None, None]
        ba = nh.to_array(init[src.input[2]]) / s
        init[src.input[1]].CopyFrom(nh.from_array(wa.astype(np.float32), src.input[1]))
        init[src.input[2]].CopyFrom(nh.from_array(ba.astype(np.float32), src.input[2]))
        for u in users:
            wb = nh.to_array(init[u.input[1]]) * s[None, :, None, None]
            init[u.input[1]].CopyFrom(nh.from_array(wb.astype(np.float32), u.input[1]))
    return m, len(chains)


def qdq(m, acts=True, weights=True, bias_correct=False, only=None, st=None):
    """The QDQ graph of `m`; `only`: the (1-based) convolutions to quantize, the rest stay f32."""
    m = copy.deepcopy(m)
    g = m.graph
    init = {i.name: i for i in g.initializer}
    st = st or stats(m, conv_inputs(m))
    new_nodes = []
    k = 0
    for n in g.node:
        if n.op_type == 'Conv':
            k += 1
        if n.op_type == 'Conv' and (only is None or k in only):
            xin = n.input[0]
            if acts:
                lo, hi, _, _ = st[xin]
                lo, hi = min(lo, 0.0), max(hi, 0.0)
                sc = np.float32((hi - lo) / 255.0)
                zp = np.uint8(np.clip(np.round(-lo / sc), 0, 255))
                g.initializer.append(nh.from_array(np.array(sc, np.float32), f'q{k}_as'))
                g.initializer.append(nh.from_array(np.array(zp, np.uint8), f'q{k}_az'))
                new_nodes.append(helper.make_node('QuantizeLinear', [xin, f'q{k}_as', f'q{k}_az'], [f'q{k}_xq']))
                new_nodes.append(helper.make_node('DequantizeLinear', [f'q{k}_xq', f'q{k}_as', f'q{k}_az'], [f'q{k}_x']))
                n.input[0] = f'q{k}_x'
            if weights:
                w = nh.to_array(init[n.input[1]])
                mx = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
                sc = np.where(mx > 0, mx / 127.0, 1.0).astype(np.float32)
                q = np.clip(np.round(w / sc[:, None, None, None]), -127, 127).astype(np.int8)
                if bias_correct:
                    mu = st[xin][3] / len(C)
                    dw = q.astype(np.float32) * sc[:, None, None, None] - w
                    corr = (dw.sum(axis=(2, 3)) * mu[None, :]).sum(axis=1)
                    b = nh.to_array(init[n.input[2]]) - corr.astype(np.float32)
                    g.initializer.append(nh.from_array(b.astype(np.float32), f'q{k}_b'))
                    n.input[2] = f'q{k}_b'
                g.initializer.append(nh.from_array(q, f'q{k}_w'))
                g.initializer.append(nh.from_array(sc, f'q{k}_ws'))
                g.initializer.append(nh.from_array(np.zeros(len(sc), np.int8), f'q{k}_wz'))
                new_nodes.append(helper.make_node('DequantizeLinear', [f'q{k}_w', f'q{k}_ws', f'q{k}_wz'], [f'q{k}_wf'], axis=0))
                n.input[1] = f'q{k}_wf'
        new_nodes.append(n)
    del g.node[:]
    g.node.extend(new_nodes)
    return m


f32 = onnx.load(a.f32)
ref = logit(scores(f32))


def report(name, m):
    d = logit(scores(m)) - ref
    e = np.abs(d)
    gd, b = d[:a.per_kind], d[a.per_kind:]
    print(f'{name:34s} all: median {np.median(e):.3f} mean {e.mean():.3f} max {e.max():.3f} | '
          f'normal median {np.median(abs(gd)):.3f} | defective median {np.median(abs(b)):.3f} '
          f'mean signed {b.mean():+.3f}', flush=True)


def per_layer():
    st = stats(f32, conv_inputs(f32))
    names = conv_names(f32)
    ms = []
    for k in range(1, len(names) + 1):
        d = logit(scores(qdq(f32, only={k}, st=st))) - ref
        ms.append(float(np.mean(d ** 2)))
        print(f'only {names[k - 1]:28s} rms {np.sqrt(ms[-1]):.4f}', flush=True)
    order = np.argsort(ms)[::-1]
    print('sum of the single-layer mean squares', f'{sum(ms):.4f}')
    for keep in [0, 1, 2, 4, 8, 12]:
        q = set(range(1, len(names) + 1)) - {int(i) + 1 for i in order[:keep]}
        report(f'{keep} most sensitive at f32', qdq(f32, only=q, st=st))


def auroc():
    """Mean per-class image AUROC on every test image: f32, int8 everywhere, int8 with the stem
    and layer1 (the most sensitive convolutions, --per-layer) at f32."""
    from sklearn.metrics import roc_auc_score
    allx = np.stack([prep(p) for p in paths])
    cls = np.array([p.split('/')[-4] for p in paths])
    y = np.array(['/good/' not in p for p in paths])
    st = stats(f32, conv_inputs(f32))
    late = {k for k, nm in enumerate(conv_names(f32), 1) if not nm.startswith(('conv1', 'layer1.'))}
    base = None
    for name, m in [('f32', f32), ('int8', qdq(f32, st=st)), ('int8, stem + layer1 f32', qdq(f32, only=late, st=st))]:
        sc = scores(m, allx)
        au = np.mean([roc_auc_score(y[cls == c], sc[cls == c]) for c in sorted(set(cls))])
        base = au if base is None else base
        print(f'{name:28s} image AUROC {au:.4f} (d {100 * (au - base):+.2f} points)', flush=True)


def levers():
    report('own qdq', qdq(f32))
    report('own qdq, acts only', qdq(f32, weights=False))
    report('own qdq, bias corrected', qdq(f32, bias_correct=True))
    report('own qdq, weights only, bias corrected', qdq(f32, acts=False, bias_correct=True))
    for al in [float(x) for x in a.alphas.split(',')]:
        e, n = equalize(f32, al)
        report(f'equalized f32 a={al} ({n} chains)', e)
        report(f'equalized qdq a={al}', qdq(e))
        report(f'equalized acts only a={al}', qdq(e, weights=False))
        report(f'equalized weights only a={al}', qdq(e, acts=False))


if a.per_layer:
    per_layer()
elif a.auroc:
    auroc()
else:
    levers()
