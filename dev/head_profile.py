"""Dev-only (never in CI): where the head's time goes, per OpenVINO node.

Compiles a head graph (`examples/head_onnx.rs`: descriptors [B,P,D] to the contract's outputs,
as the bf16 / int8 OpenVINO engines build it) on the CPU plugin with per-node performance
counters and prints the time of each node type and of the slowest nodes, averaged over 5 calls
on random descriptors.

    cargo run --release --example paper_model -- paper.safetensors
    cargo run --release --example head_onnx -- paper.safetensors head.onnx bf16
    python dev/head_profile.py head.onnx 1 [f32|bf16]   # batch, INFERENCE_PRECISION_HINT
"""
import collections
import sys
import time

import numpy as np
import openvino as ov


def main():
    path, batch = sys.argv[1], int(sys.argv[2])
    hint = sys.argv[3] if len(sys.argv) > 3 else "f32"  # the engines compile the head at f32
    compiled = ov.Core().compile_model(path, "CPU", {
        "PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    name = compiled.input(0).get_any_name()
    p, d = compiled.input(0).get_partial_shape()[1:]
    x = np.random.default_rng(0).standard_normal((batch, p.get_length(), d.get_length())).astype(np.float32)
    for _ in range(2):
        request.infer({name: x})
    calls, by_type, by_node = 5, collections.Counter(), collections.Counter()
    start = time.perf_counter()
    for _ in range(calls):
        request.infer({name: x})
        for node in request.profiling_info:
            ms = node.real_time.total_seconds() * 1e3 / calls
            by_type[(node.node_type, node.exec_type)] += ms
            by_node[(node.node_name, node.node_type, node.exec_type)] += ms
    wall = (time.perf_counter() - start) / calls * 1e3
    print(f"wall {wall:.1f} ms per call (batch {batch}, {wall / batch:.1f} ms per image); "
          f"sum over nodes {sum(by_type.values()):.1f} ms")
    for k, ms in by_type.most_common(12):
        print(f"{ms:8.2f} ms  {k[0]} ({k[1]})")
    print("slowest nodes:")
    for k, ms in by_node.most_common(10):
        print(f"{ms:8.2f} ms  {k[0]} {k[1]} ({k[2]})")


if __name__ == "__main__":
    main()
