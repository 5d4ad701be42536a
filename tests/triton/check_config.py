#!/usr/bin/env python3
"""Checks a Triton model repository entry written by `cras export --triton DIR`.

Usage: check_config.py DIR/NAME

1. Parses DIR/NAME/config.pbtxt with Triton's own schema, the `ModelConfig` message of
   `model_config.proto` as shipped in tritonclient (`tritonclient.grpc.model_config_pb2`),
   with protobuf's strict text-format parser: an unknown field, a wrong type or bad syntax
   fails.
2. Applies the rules Triton checks when it loads a model configuration (name = folder,
   platform/backend, max_batch_size, preferred batch sizes, instance groups, non-empty dims
   of integers >= 1 or -1, reshape of the same element count).
3. Loads DIR/NAME/1/model.onnx with the `onnx` package (checker included) and checks that the
   config's inputs and outputs are the graph's, in order: names, data types, and dims (after
   the graph's symbolic batch dimension; a `[batch]` tensor is `dims: [1]` with an empty
   reshape), and that the parameters hold the graph's classes and thresholds.

Exit status 0 and one "OK" line when everything agrees; 1 and the reasons otherwise.
No Triton server is involved.
"""

import json
import math
import pathlib
import sys

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

ONNX_TO_TRITON = {
    onnx.TensorProto.BOOL: "TYPE_BOOL",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.UINT16: "TYPE_UINT16",
    onnx.TensorProto.UINT32: "TYPE_UINT32",
    onnx.TensorProto.UINT64: "TYPE_UINT64",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.INT16: "TYPE_INT16",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.STRING: "TYPE_STRING",
    onnx.TensorProto.BFLOAT16: "TYPE_BF16",
}


def element_count(dims):
    """Triton's element count of dims: -1 when one is variable."""
    return -1 if -1 in dims else math.prod(dims)


def triton_rules(cfg, folder, errors):
    """The load-time checks of Triton's model configuration validation."""
    if cfg.name != folder:
        errors.append(f"name {cfg.name!r} is not the folder's name {folder!r}")
    if cfg.platform != "onnxruntime_onnx" and cfg.backend != "onnxruntime":
        errors.append(f"platform {cfg.platform!r} / backend {cfg.backend!r} is not ONNX Runtime")
    if cfg.max_batch_size < 1:
        errors.append(f"max_batch_size {cfg.max_batch_size} < 1")
    if not cfg.HasField("dynamic_batching"):
        errors.append("no dynamic_batching")
    for size in cfg.dynamic_batching.preferred_batch_size:
        if not 1 <= size <= cfg.max_batch_size:
            errors.append(f"preferred_batch_size {size} not in 1..{cfg.max_batch_size}")
    if len(cfg.instance_group) == 0:
        errors.append("no instance_group")
    for group in cfg.instance_group:
        kind = mc.ModelInstanceGroup.Kind.Name(group.kind)
        if group.count < 1 or kind not in ("KIND_CPU", "KIND_GPU"):
            errors.append(f"instance_group count {group.count} kind {kind}")
    accelerators = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    if accelerators and any(
        mc.ModelInstanceGroup.Kind.Name(g.kind) != "KIND_GPU" for g in cfg.instance_group
    ):
        errors.append("a GPU execution accelerator on a non-GPU instance group")
    for io in list(cfg.input) + list(cfg.output):
        if not io.name or io.data_type == mc.TYPE_INVALID:
            errors.append(f"tensor {io.name!r} lacks a name or data type")
        if len(io.dims) == 0:
            errors.append(f"{io.name}: empty dims (Triton requires 'dims')")
        if any(d < 1 and d != -1 for d in list(io.dims) + list(io.reshape.shape)):
            errors.append(f"{io.name}: dims must be >= 1 or -1")
        if io.HasField("reshape"):
            dims, shape = list(io.dims), list(io.reshape.shape)
            if element_count(dims) != element_count(shape) and (shape or element_count(dims) != 1):
                errors.append(f"{io.name}: dims {dims} and reshape {shape} differ in size")


def graph_shape(value):
    """(Triton type, dims after the batch) of an ONNX graph input or output."""
    t = value.type.tensor_type
    dims = list(t.shape.dim)
    if not dims or not dims[0].dim_param:
        raise ValueError(f"{value.name}: the first dimension is not a symbolic batch dimension")
    rest = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in dims[1:]]
    return ONNX_TO_TRITON.get(t.elem_type, f"ONNX type {t.elem_type}"), rest


def agree_with_graph(cfg, model, errors):
    """The config's inputs, outputs and parameters are the graph's."""
    graph = model.graph
    initialisers = {t.name for t in graph.initializer}
    sides = [
        ("input", list(cfg.input), [v for v in graph.input if v.name not in initialisers]),
        ("output", list(cfg.output), list(graph.output)),
    ]
    for side, config_ios, graph_ios in sides:
        names = [io.name for io in config_ios]
        want = [v.name for v in graph_ios]
        if names != want:
            errors.append(f"{side} names {names} != the graph's {want}")
            continue
        for io, value in zip(config_ios, graph_ios):
            data_type, dims = graph_shape(value)
            got_type = mc.DataType.Name(io.data_type)
            got_dims = list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)
            if got_type != data_type or got_dims != dims:
                errors.append(
                    f"{side} {io.name}: config {got_type} {got_dims} != graph {data_type} {dims}"
                )
    meta = {p.key: p.value for p in model.metadata_props}
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    classes = json.loads(meta["cras.classes"])
    if json.loads(params.get("classes", "null")) != classes:
        errors.append(f"parameter classes {params.get('classes')} != {meta['cras.classes']}")
    thresholds = json.loads(meta["cras.thresholds"])
    for k, c in enumerate(classes):
        got = params.get(f"threshold.{c}")
        want = None if thresholds is None else thresholds["per_class"][k]
        if (got is None) != (want is None) or (got is not None and float(got) != float(want)):
            errors.append(f"parameter threshold.{c} = {got}, the graph's is {want}")


def main(model_dir):
    model_dir = pathlib.Path(model_dir)
    cfg = mc.ModelConfig()
    text_format.Parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"), cfg)
    model = onnx.load(str(model_dir / "1" / "model.onnx"))
    onnx.checker.check_model(model)
    errors = []
    triton_rules(cfg, model_dir.name, errors)
    agree_with_graph(cfg, model, errors)
    if errors:
        for e in errors:
            print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print(
        f"OK: {cfg.name}: {len(cfg.input)} inputs, {len(cfg.output)} outputs, "
        f"max_batch_size {cfg.max_batch_size}, {len(cfg.parameters)} parameters "
        f"(onnx {onnx.__version__})"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
