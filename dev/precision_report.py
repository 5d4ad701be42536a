"""Dev-only (never in CI): the precision tables of docs/precision.md from `cras eval` outputs.

EV holds one folder per eval, named s<seed>-<config> (s0-candle, s0-main-bf16-raw, ...), each with
scores.csv and metrics.json, and next to it <folder>.out (the eval's stdout and stderr, with the
"N of M images were near their threshold" line and a final "<seconds> s" line of /usr/bin/time).
Prints per seed and config: metric differences against candle f32 (AUROC points), the logit
error of each test image's score against candle's, decisions that differ, the share re-scored.

    python3 dev/precision_report.py EV
"""
import sys
import json, csv, math, os, re
EV = sys.argv[1] if len(sys.argv) > 1 else 'ev'


def logit(p):
    e=2**-24; p=min(max(p,e),1-e); return math.log(p/(1-p))
def scores(d):
    return {r['path']:r for r in csv.DictReader(open(f'{EV}/{d}/scores.csv'))}
cfgs=['ov-f32','main-bf16-raw','split-bf16-raw','feat-bf16-raw','main-bf16-band3','split-bf16-band']
rows=[]
for s in [0,1,2]:
    ref=json.load(open(f'{EV}/s{s}-candle/metrics.json'))['mean']; rs=scores(f's{s}-candle')
    print(f"seed {s} candle f32: image AUROC {100*ref['image_auroc']:.2f} pixel AUROC {100*ref['pixel_auroc']:.2f} AUPRO {100*ref['aupro']:.2f}")
    for c in cfgs:
        d=f's{s}-{c}'
        if not os.path.exists(f'{EV}/{d}/metrics.json'): continue
        m=json.load(open(f'{EV}/{d}/metrics.json'))['mean']; sc=scores(d)
        err=sorted(abs(logit(float(sc[p]['score']))-logit(float(rs[p]['score']))) for p in rs)
        flips=sum(sc[p]['decision']!=rs[p]['decision'] for p in rs)
        out=open(f'{EV}/{d}.out').read()
        conf=re.search(r'(\d+) of (\d+) images were near',out)
        t=re.search(r'^([0-9.]+) s$',out,re.M)
        r=dict(seed=s,cfg=c,d_img=100*(m['image_auroc']-ref['image_auroc']),d_pix=100*(m['pixel_auroc']-ref['pixel_auroc']),d_pro=100*(m['aupro']-ref['aupro']),
               med=err[len(err)//2],mean=sum(err)/len(err),max=err[-1],flips=flips,confirmed=(f"{int(conf.group(1))/int(conf.group(2))*100:.0f}%" if conf else "-"),secs=t.group(1) if t else '?')
        rows.append(r)
        print(f"  {c:16s} dImg {r['d_img']:+.2f} dPix {r['d_pix']:+.2f} dPRO {r['d_pro']:+.2f} | logit err med {r['med']:.3f} mean {r['mean']:.3f} max {r['max']:.2f} | decision flips {flips} | confirmed {r['confirmed']} | eval {r['secs']} s")
print()
for c in cfgs:
    rr=[r for r in rows if r['cfg']==c]
    if not rr: continue
    avg=lambda k: sum(r[k] for r in rr)/len(rr)
    print(f"mean over {len(rr)} seeds {c:16s} dImg {avg('d_img'):+.2f} dPix {avg('d_pix'):+.2f} dPRO {avg('d_pro'):+.2f} | err med {avg('med'):.3f} mean {avg('mean'):.3f} max {max(r['max'] for r in rr):.2f} | flips {sum(r['flips'] for r in rr)}")
