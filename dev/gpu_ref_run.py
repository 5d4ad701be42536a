#!/usr/bin/env python3
"""Runs a timing script of the authors' code (../shared/bench/ref_speed.py, dev/gpu_ref_train.py)
where some of the packages their modules import at the top are missing (the GPU machine has
torch, torchvision, timm, scipy, scikit-learn, scikit-image and opencv, but maybe not
tensorboard, pandas or tqdm). Each missing one is replaced by a stand-in module before the
script runs; the timed paths (`_predict`, `_train_discriminator`) never use them. Dev-only.

  gpu_ref_run.py [--stub MOD,MOD] SCRIPT ARGS...
    --stub   stand in for these even when installed (to test the stand-ins)
Says on stderr which modules it replaced."""
import importlib
import importlib.machinery
import runpy
import sys
import types

# What their cras.py, common.py, metrics.py, model.py and utils.py import beyond torch/numpy/scipy.
OPTIONAL = ["torch.utils.tensorboard", "tqdm", "cv2", "pandas", "sklearn", "sklearn.metrics",
            "skimage", "skimage.measure", "click"]


class _Anything:
    """Any attribute, any call: a stand-in object."""

    def __init__(self, *_, **__):
        pass

    def __call__(self, *_, **__):
        return _Anything()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    def __iter__(self):
        return iter(())


def stand_in(name):
    m = types.ModuleType(name)
    def attr(name):  # module-level __getattr__ (PEP 562); dunders stay absent (__file__, ...)
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything
    m.__getattr__ = attr
    m.__path__ = []  # a package, so submodules can be stood in too
    m.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)  # torch looks
    return m


def main():
    args = sys.argv[1:]
    forced = set()
    if args[:1] == ["--stub"]:
        forced = set(args[1].split(","))
        args = args[2:]
    stubbed = []
    for name in OPTIONAL:
        top = name.split(".")[0]
        if name in forced or top in forced:
            ok = False
        else:
            try:
                importlib.import_module(name)
                ok = True
            except Exception:
                ok = False
        if not ok:
            sys.modules[name] = stand_in(name)
            parent, _, child = name.rpartition(".")
            if parent and parent in sys.modules:
                setattr(sys.modules[parent], child, sys.modules[name])
            stubbed.append(name)
    if stubbed:
        print(f"gpu_ref_run: stand-ins for {', '.join(stubbed)}", file=sys.stderr, flush=True)
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
