"""Dev-only (never in CI): the precision tables of docs/precision.md from `cras eval` outputs.

EV holds one folder per eval, named <model>-<config> (s0-candle, s0-split-bf16-raw,
demo-openvino-int8-raw, ...), each with scores.csv and metrics.json, and next to it <folder>.out
(the eval's stdout and stderr, with the "N of M images were near their threshold" line and a
final "<seconds> s" line of /usr/bin/time). <model>-candle is the f32 reference of each model.
Prints per model and config: metric differences against candle f32 (AUROC points), the logit
error of each test image's score against candle's, decisions that differ, the share re-scored and
the eval's wall time; then per config the mean over the seeds s0, s1, ...

    python3 dev/precision_report.py EV
"""
import csv
import json
import math
import os
import re
import sys

EV = sys.argv[1] if len(sys.argv) > 1 else 'ev'


def logit(p):
    e = 2 ** -24
    p = min(max(p, e), 1 - e)
    return math.log(p / (1 - p))


def scores(d):
    # keyed by the path's last four parts (class/test/kind/file), whatever folder held the data
    return {'/'.join(r['path'].split('/')[-4:]): r for r in csv.DictReader(open(f'{EV}/{d}/scores.csv'))}


def models_and_configs():
    runs = [d for d in os.listdir(EV) if os.path.exists(f'{EV}/{d}/metrics.json')]
    models = sorted({d.split('-', 1)[0] for d in runs if d.endswith('-candle')})
    cfgs = sorted({d.split('-', 1)[1] for d in runs if '-' in d} - {'candle'})
    return models, cfgs


def compare(model, cfg, ref, rs):
    d = f'{model}-{cfg}'
    m = json.load(open(f'{EV}/{d}/metrics.json'))['mean']
    sc = scores(d)
    err = sorted(abs(logit(float(sc[p]['score'])) - logit(float(rs[p]['score']))) for p in rs)
    out = open(f'{EV}/{d}.out').read()
    conf = re.search(r'(\d+) of (\d+) images were near', out)
    t = re.search(r'^([0-9.]+) s$', out, re.M)
    n = len(rs)
    return dict(
        model=model, cfg=cfg,
        d_img=100 * (m['image_auroc'] - ref['image_auroc']),
        d_pix=100 * (m['pixel_auroc'] - ref['pixel_auroc']),
        d_pro=100 * (m['aupro'] - ref['aupro']),
        med=err[len(err) // 2], mean=sum(err) / len(err), max=err[-1],
        flips=sum(sc[p]['decision'] != rs[p]['decision'] for p in rs),
        confirmed=(f"{int(conf.group(1))}/{int(conf.group(2))}" if conf else "-"),
        ips=(f"{n / float(t.group(1)):.1f}" if t else '?'))


def main():
    models, cfgs = models_and_configs()
    rows = []
    for model in models:
        ref = json.load(open(f'{EV}/{model}-candle/metrics.json'))['mean']
        rs = scores(f'{model}-candle')
        print(f"{model} candle f32: image AUROC {100 * ref['image_auroc']:.2f} pixel AUROC "
              f"{100 * ref['pixel_auroc']:.2f} AUPRO {100 * ref['aupro']:.2f}")
        for c in cfgs:
            if not os.path.exists(f'{EV}/{model}-{c}/metrics.json'):
                continue
            r = compare(model, c, ref, rs)
            rows.append(r)
            print(f"  {c:28s} dImg {r['d_img']:+.2f} dPix {r['d_pix']:+.2f} dPRO {r['d_pro']:+.2f}"
                  f" | logit err med {r['med']:.3f} mean {r['mean']:.3f} max {r['max']:.2f}"
                  f" | flips {r['flips']} | re-scored {r['confirmed']} | {r['ips']} img/s")
    print()
    for c in cfgs:
        rr = [r for r in rows if r['cfg'] == c and r['model'].startswith('s')]
        if not rr:
            continue

        def avg(k):
            return sum(r[k] for r in rr) / len(rr)
        print(f"mean over {len(rr)} seeds {c:28s} dImg {avg('d_img'):+.2f} dPix {avg('d_pix'):+.2f}"
              f" dPRO {avg('d_pro'):+.2f} | err med {avg('med'):.3f} mean {avg('mean'):.3f}"
              f" max {max(r['max'] for r in rr):.2f} | flips {sum(r['flips'] for r in rr)}")


if __name__ == '__main__':
    main()
