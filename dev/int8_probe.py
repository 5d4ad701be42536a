"""Dev-only (never in CI): where an int8 graph's error comes from. Variants of `cras export --int8`'s
QDQ graph against the f32 graph of the same model, in ONNX Runtime on test images of a dataset:
as exported; weights int8 only (activation QDQ removed); activations uint8 only (weights back to
float); the stem's input at f32; activation ranges widened by 1.5x-4x. Prints the logit error of
the image scores against f32 (median, mean, max), for normal and defective images apart.

    cras export --model M --out f32.onnx && cras export --model M --int8 --out int8.onnx
    python3 dev/int8_probe.py f32.onnx int8.onnx /path/realistic --resize 183 --crop 160

Needs onnx, onnxruntime, numpy and pillow.
"""
import argparse
import copy

import numpy as np
import onnx
from onnx import numpy_helper as nh

from int8_common import logit, prep, session, test_images

ap = argparse.ArgumentParser()
ap.add_argument('f32')
ap.add_argument('int8')
ap.add_argument('data')
ap.add_argument('--resize', type=int, default=183)
ap.add_argument('--crop', type=int, default=160)
ap.add_argument('--per-kind', type=int, default=48, help='normal and defective images each')
a = ap.parse_args()
X = np.stack([prep(p, a.resize, a.crop) for p in test_images(a.data, a.per_kind)[1]])


def scores(model):
    s = session(model)
    return np.concatenate([s.run(['image_score'], {'image': X[i:i + 16]})[0]
                           for i in range(0, len(X), 16)]).ravel()


ref = logit(scores(onnx.load(a.f32)))
q = onnx.load(a.int8)


def report(name, m):
    d = logit(scores(m)) - ref
    e = np.abs(d)
    g, b = d[:a.per_kind], d[a.per_kind:]
    print(f'{name:34s} all: median {np.median(e):.3f} mean {e.mean():.3f} max {e.max():.3f} | '
          f'normal median {np.median(abs(g)):.3f} max {abs(g).max():.3f} | defective median '
          f'{np.median(abs(b)):.3f} max {abs(b).max():.3f} mean signed {b.mean():+.3f}', flush=True)


def strip(m, which):
    """Removes the activations' Quantize/Dequantize pairs ('act') or dequantizes the weights back to
    float initializers ('w')."""
    m = copy.deepcopy(m)
    g = m.graph
    prod = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    rename = {}
    for n in g.node:
        if n.op_type != 'DequantizeLinear':
            continue
        src = prod.get(n.input[0])
        if which == 'act' and src is not None and src.op_type == 'QuantizeLinear':
            rename[n.output[0]] = src.input[0]
        if which == 'w' and src is None:
            w = nh.to_array(inits[n.input[0]]).astype(np.float32)
            s = nh.to_array(inits[n.input[1]]).astype(np.float32)
            w = w * s.reshape(-1, *([1] * (w.ndim - 1)))
            g.initializer.append(nh.from_array(w, n.output[0] + '_float'))
            rename[n.output[0]] = n.output[0] + '_float'
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    return m


def stem_at_f32(m):
    m = copy.deepcopy(m)
    prod = {o: n for n in m.graph.node for o in n.output}
    conv = next(n for n in m.graph.node if n.op_type == 'Conv')
    conv.input[0] = prod[prod[conv.input[0]].input[0]].input[0]
    return m


def widened(m, f):
    """Every activation range times f (scale times f; the zero point is unchanged)."""
    m = copy.deepcopy(m)
    for i in m.graph.initializer:
        if i.name.startswith('act_scale'):
            i.CopyFrom(nh.from_array(nh.to_array(i) * np.float32(f), i.name))
    return m


report('as exported', q)
report('weights int8 only', strip(q, 'act'))
report('activations uint8 only', strip(q, 'w'))
report('stem input at f32', stem_at_f32(q))
for f in [1.5, 2.0, 3.0, 4.0]:
    report(f'activation ranges x{f}', widened(q, f))
