"""Shared by the dev-only int8 probes (dev/int8_probe.py, dev/int8_levers.py): the model's
preprocessing, the test images they score, an ONNX Runtime session and the logit they compare."""
import glob

import numpy as np
import onnxruntime as ort
from PIL import Image


def prep(p, resize=183, crop=160):
    """The model's preprocessing: shorter side to `resize` (bilinear), centre crop, ImageNet norm."""
    im = Image.open(p).convert('RGB')
    w, h = im.size
    s = resize / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = im.size
    left, top = (w - crop) // 2, (h - crop) // 2
    im = im.crop((left, top, left + crop, top + crop))
    x = np.asarray(im, np.float32) / 255.0
    x = (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    return x.transpose(2, 0, 1).astype(np.float32)


def test_images(data, per_kind):
    """All test image paths of `data`, and `per_kind` normal then `per_kind` defective ones drawn
    from them (seeded: the same images on every run)."""
    paths = sorted(glob.glob(f'{data}/*/test/*/*.png'))
    rng = np.random.default_rng(1)
    good = [p for p in paths if '/good/' in p]
    bad = [p for p in paths if '/good/' not in p]
    chosen = list(rng.choice(good, per_kind, replace=False)) + list(rng.choice(bad, per_kind, replace=False))
    return paths, chosen


def session(model):
    """A 2-thread CPU session of an in-memory ONNX model, warnings silenced."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=['CPUExecutionProvider'])


def logit(p):
    p = np.clip(p.astype(np.float64), 2 ** -24, 1 - 2 ** -24)
    return np.log(p / (1 - p))
