"""Dev-only (never in CI): does OpenVINO run a product at bf16 inside an f32 graph? One
adaptor-sized MatMul [b,1296,1536] x [1536,1536] as an ONNX graph, plain f32 and as Cast(bf16) ->
MatMul (bf16 weights) -> Cast(f32), compiled with INFERENCE_PRECISION_HINT f32: time per image and
the runtime precision OpenVINO chose for each layer (docs/precision.md).

    python3 dev/ov_bf16_products.py   # needs numpy, onnx, openvino
"""
import numpy as np, onnx, time, openvino as ov
from onnx import helper, TensorProto, numpy_helper as nh
P, D, O = 1296, 1536, 1536
rng = np.random.default_rng(0)
W = (rng.standard_normal((D, O)) * 0.03).astype(np.float32)
def model(bf16):
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, ['b', P, D])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, ['b', P, O])
    if bf16:
        wt = helper.make_tensor('w', TensorProto.BFLOAT16, [D, O], vals=(W.view(np.uint32) >> 16).astype(np.uint16).tobytes(), raw=True)
        # weights truncated to bf16 (not rounded): enough for a speed check
        nodes = [helper.make_node('Cast', ['x'], ['xb'], to=TensorProto.BFLOAT16),
                 helper.make_node('MatMul', ['xb', 'w'], ['yb']),
                 helper.make_node('Cast', ['yb'], ['y'], to=TensorProto.FLOAT)]
    else:
        wt = nh.from_array(W, 'w')
        nodes = [helper.make_node('MatMul', ['x', 'w'], ['y'])]
    g = helper.make_graph(nodes, 'g', [x], [y], [wt])
    return helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])
core = ov.Core()
X = rng.standard_normal((8, P, D)).astype(np.float32)
for bf16 in [False, True]:
    m = model(bf16); onnx.save(m, f'/tmp/cras_mm{int(bf16)}.onnx')
    c = core.compile_model(f'/tmp/cras_mm{int(bf16)}.onnx', 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    r = c.create_infer_request()
    for b in [1, 8]:
        r.infer({'x': X[:b]}); t = time.time()
        for _ in range(5): out = r.infer({'x': X[:b]})
        dt = (time.time() - t) / 5 / b
        print('bf16' if bf16 else 'f32 ', 'batch', b, f'{dt*1000:.2f} ms/img', 'types', [o.get_element_type() for o in c.outputs])
    if bf16:
        ref = X[:1] @ W; got = list(r.infer({'x': X[:1]}).values())[0]
        print('rel err', np.abs(got - ref).max() / np.abs(ref).max())
    # which precision did the runtime pick for the MatMul?
    rt = c.get_runtime_model()
    print(sorted({(op.get_rt_info()['layerType'].astype(str), op.get_rt_info()['runtimePrecision'].astype(str)) for op in rt.get_ordered_ops()}))
