//! Structural tests of the exported graph (decoded back with prost): names, shapes, opset,
//! topological order, metadata, initializers against the model's tensors, options.

use std::collections::{HashMap, HashSet};

use candle_core::{Device, Tensor};
use prost::Message;
use rand::{rngs::StdRng, SeedableRng};

use super::onnx_pb as pb;
use super::*;
use crate::backbone::{Arch, BackboneBuilder, Layer, WeightSource};
use crate::features::{DescriptorConfig, FeatureExtractor};
use crate::model::{Adaptor, CenterBank, Discriminator, ModelMeta, TrainedModel, FORMAT_VERSION};

const S: usize = 32;

/// A random resnet18 model with the given descriptor layers and width, 3 classes.
fn tiny_model(layers: &[Layer], dims: usize, ablation: Option<serde_json::Value>) -> TrainedModel {
    let dev = Device::Cpu;
    let backbone = BackboneBuilder::new(Arch::Resnet18, &WeightSource::Random { seed: 3 })
        .unwrap()
        .build(*layers.iter().max().unwrap(), &dev)
        .unwrap();
    let desc = DescriptorConfig {
        layers: layers.to_vec(),
        patch_size: 3,
        dims,
    };
    let extractor = FeatureExtractor::new(backbone, desc.clone()).unwrap();
    let grid = extractor.grid_side(S);
    let mut rng = StdRng::seed_from_u64(5);
    let adaptor = Adaptor::new(&mut rng, dims, &dev).unwrap();
    let disc = Discriminator::new(&mut rng, dims, &dev).unwrap();
    let bank =
        CenterBank::new(Tensor::randn(0f32, 1.0, (3, grid * grid, dims), &dev).unwrap()).unwrap();
    let config = match &ablation {
        Some(a) => serde_json::json!({"fit": {"ablation": a}}),
        None => serde_json::json!({}),
    };
    let meta = ModelMeta {
        format_version: FORMAT_VERSION,
        tool: "test".into(),
        created_unix: 0,
        classes: vec!["a".into(), "b".into(), "c".into()],
        backbone: extractor.backbone.info().clone(),
        last_layer: extractor.backbone.last_layer(),
        preprocess: crate::data::Preprocess {
            resize: S as u32,
            crop: S as u32,
            mode: crate::data::ResizeMode::Square,
            mask_mode: crate::data::MaskMode::Binarize,
            tiling: None,
        },
        descriptor: desc,
        grid,
        config,
        ablation: ablation
            .map(|a| serde_json::from_value(a).unwrap())
            .unwrap_or_default(),
        thresholds: None,
        precision_bands: Vec::new(),
        int8: None,
        training: Default::default(),
        test_selected: false,
        partial: false,
    };
    TrainedModel {
        meta,
        extractor,
        adaptor,
        discriminator: disc,
        bank,
    }
}

#[test]
fn measured_precision_bands_are_in_the_metadata() {
    let mut p = tiny_model(&[Layer::L2, Layer::L3], 48, None);
    let band = crate::model::PrecisionBand {
        engine: "openvino".into(),
        precision: "bf16".into(),
        images_from: "held-out normal images".into(),
        images: 48,
        median: 0.02,
        mean: 0.03,
        p90: 0.05,
        max: 0.25,
        quantile: 0.99,
        quantile_error: 0.2,
        factor: 2.0,
        band: 0.4,
        confirmed_share: Some(0.125),
        measured_on: None,
    };
    p.meta.precision_bands = vec![band.clone()];
    let m = export(&p, true);
    let json = m
        .metadata_props
        .iter()
        .find(|e| e.key() == "cras.precision_bands")
        .map(|e| e.value().to_string())
        .unwrap();
    let back: Vec<crate::model::PrecisionBand> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, [band]);
}

fn export(p: &TrainedModel, class_input: bool) -> pb::ModelProto {
    let opts = ExportOptions {
        class_input,
        model_sha256: Some("ab".repeat(32)),
        ..ExportOptions::default()
    };
    pb::ModelProto::decode(export_onnx(p, &opts).unwrap().as_slice()).unwrap()
}

fn dims(v: &pb::ValueInfoProto) -> (i32, Vec<String>) {
    use pb::tensor_shape_proto::dimension::Value;
    let Some(pb::type_proto::Value::TensorType(t)) =
        v.r#type.as_ref().and_then(|t| t.value.clone())
    else {
        panic!("{:?} is not a tensor", v.name)
    };
    let shape = t
        .shape
        .unwrap()
        .dim
        .into_iter()
        .map(|d| match d.value.unwrap() {
            Value::DimValue(n) => n.to_string(),
            Value::DimParam(s) => s,
        });
    (t.elem_type.unwrap(), shape.collect())
}

fn initializer<'a>(g: &'a pb::GraphProto, prefix: &str) -> Vec<&'a pb::TensorProto> {
    g.initializer
        .iter()
        .filter(|t| t.name().starts_with(prefix))
        .collect()
}

fn floats(t: &pb::TensorProto) -> Vec<f32> {
    t.raw_data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn interface_opset_and_metadata_follow_the_contract() {
    let p = tiny_model(&[Layer::L2, Layer::L3], 64, None);
    let m = export(&p, false);
    assert_eq!(m.ir_version(), IR_VERSION);
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(
        (m.opset_import[0].domain(), m.opset_import[0].version()),
        ("", 17)
    );
    assert_eq!(m.producer_name(), "cras");
    let g = m.graph.as_ref().unwrap();
    let (f32c, i64c) = (
        pb::tensor_proto::DataType::Float as i32,
        pb::tensor_proto::DataType::Int64 as i32,
    );
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name(), "image");
    assert_eq!(
        dims(&g.input[0]),
        (
            f32c,
            vec!["batch".into(), "3".into(), "32".into(), "32".into()]
        )
    );
    let names: Vec<&str> = g.output.iter().map(|o| o.name()).collect();
    assert_eq!(
        names,
        [
            "image_score",
            "patch_scores",
            "anomaly_map",
            "class_index",
            "matched_class",
            "class_similarity"
        ]
    );
    let b = || "batch".to_string();
    assert_eq!(dims(&g.output[0]), (f32c, vec![b()]));
    assert_eq!(
        dims(&g.output[1]),
        (f32c, vec![b(), "4".into(), "4".into()])
    );
    assert_eq!(
        dims(&g.output[2]),
        (f32c, vec![b(), "32".into(), "32".into()])
    );
    assert_eq!(dims(&g.output[3]), (i64c, vec![b()]));
    assert_eq!(dims(&g.output[4]), (i64c, vec![b()]));
    assert_eq!(dims(&g.output[5]), (f32c, vec![b()]));

    let meta: HashMap<&str, &str> = m
        .metadata_props
        .iter()
        .map(|e| (e.key(), e.value()))
        .collect();
    assert_eq!(meta["cras.classes"], r#"["a","b","c"]"#);
    assert_eq!(meta["cras.thresholds"], "null");
    assert_eq!(meta["cras.precision_bands"], "[]");
    assert_eq!(meta["cras.random_backbone"], "true");
    assert_eq!(meta["cras.format"], FORMAT);
    assert_eq!(meta["cras.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["cras.model_sha256"], "ab".repeat(32));
    let pre: serde_json::Value = serde_json::from_str(meta["cras.preprocess"]).unwrap();
    assert_eq!(pre["crop"], 32);
    assert_eq!(pre["mean"][0].as_f64().unwrap() as f32, 0.485);
    let bb: serde_json::Value = serde_json::from_str(meta["cras.backbone"]).unwrap();
    assert_eq!(bb["provenance"], "resnet18 random init, seed 3");
    assert!(meta.contains_key("cras.outputs"));
}

#[test]
fn graph_is_topologically_ordered_and_uses_contract_ops_only() {
    let allowed: HashSet<&str> = [
        "Conv",
        "Relu",
        "MaxPool",
        "AveragePool",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Max",
        "Less",
        "Where",
        "MatMul",
        "Gemm",
        "Pad",
        "Slice",
        "Concat",
        "Reshape",
        "Transpose",
        "Unsqueeze",
        "ReduceMean",
        "ReduceMax",
        "ReduceSumSquare",
        "Sqrt",
        "ArgMax",
        "Gather",
        "LeakyRelu",
        "Sigmoid",
        "Identity",
    ]
    .into();
    for (layers, d, class_input) in [
        (vec![Layer::L2, Layer::L3], 64, true),
        (vec![Layer::L1, Layer::L2], 48, false),
        (vec![Layer::L1], 100, true),
    ] {
        let m = export(&tiny_model(&layers, d, None), class_input);
        let g = m.graph.unwrap();
        let mut known: HashSet<&str> = g.input.iter().map(|i| i.name()).collect();
        known.extend(g.initializer.iter().map(|t| t.name()));
        for n in &g.node {
            assert!(allowed.contains(n.op_type()), "op {}", n.op_type());
            for i in &n.input {
                assert!(
                    known.contains(i.as_str()),
                    "{} reads {i} before it exists",
                    n.name()
                );
            }
            for o in &n.output {
                assert!(known.insert(o.as_str()), "{o} produced twice");
            }
        }
        for o in &g.output {
            assert!(
                known.contains(o.name()),
                "output {} is never produced",
                o.name()
            );
        }
        let inputs: Vec<&str> = g.input.iter().map(|i| i.name()).collect();
        if class_input {
            assert_eq!(inputs, ["image", "stated_class"]);
            assert_eq!(dims(&g.input[1]).1, vec!["batch".to_string()]);
            assert!(g
                .node
                .iter()
                .any(|n| n.input.iter().any(|i| i == "stated_class")));
        } else {
            assert_eq!(inputs, ["image"]);
        }
    }
}

#[test]
fn initializers_hold_the_model_tensors() {
    let p = tiny_model(&[Layer::L2, Layer::L3], 64, None);
    let m = export(&p, false);
    let g = m.graph.unwrap();
    // Every folded backbone tensor up to layer3, stored once with its shape and values.
    let folded = p.extractor.backbone.folded_tensors();
    for (name, t) in &folded {
        let found = initializer(&g, &format!("{name}_"));
        assert_eq!(found.len(), 1, "{name}");
        let want_dims: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
        assert_eq!(found[0].dims, want_dims, "{name}");
        let want: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(floats(found[0]), want, "{name}");
    }
    let convs = g.node.iter().filter(|n| n.op_type() == "Conv").count();
    assert_eq!(
        convs,
        folded.len() / 2,
        "one Conv per folded conv, no pooling conv"
    );
    // The center bank is stored once, exactly.
    let centers = initializer(&g, "centers_");
    assert_eq!(centers.len(), 1);
    assert_eq!(centers[0].dims, vec![3, 16, 64]);
    let want: Vec<f32> = p.bank.centers.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(floats(centers[0]), want);
    // Head shapes: adaptor [D,D], fc1 with its halves summed [D,D], the residual table
    // [K*P, D], fc2 [D,D/2], tail [D/2,1].
    for (prefix, shape) in [
        ("adaptor.weight_t_", vec![64, 64]),
        ("fc1.weight_t_", vec![64, 64]),
        ("fc1.residual_table_", vec![48, 64]),
        ("fc2.weight_t_", vec![64, 32]),
        ("tail.weight_t_", vec![32, 1]),
    ] {
        assert_eq!(initializer(&g, prefix)[0].dims, shape, "{prefix}");
    }
    assert!(initializer(&g, "fc1.residual.weight_t_").is_empty());
    let w1 = p
        .discriminator
        .fc1
        .weight
        .as_tensor()
        .to_vec2::<f32>()
        .unwrap();
    // fc1 element (i, o) = W1[o][i] + W1[o][D + i]; table row r = center r · W1[:, D:]ᵀ.
    let summed = floats(initializer(&g, "fc1.weight_t_")[0]);
    assert_eq!(summed[5 * 64 + 7], w1[7][5] + w1[7][64 + 5]);
    let table = floats(initializer(&g, "fc1.residual_table_")[0]);
    for (r, o) in [(0, 0), (17, 9), (47, 63)] {
        let dot: f64 = (0..64)
            .map(|i| f64::from(want[r * 64 + i]) * f64::from(w1[o][64 + i]))
            .sum();
        let got = f64::from(table[r * 64 + o]);
        assert!(
            (got - dot).abs() <= 1e-5 * (1.0 + dot.abs()),
            "T[{r}][{o}] {got} vs {dot}"
        );
    }
    let w = p
        .adaptor
        .linear
        .weight
        .as_tensor()
        .to_vec2::<f32>()
        .unwrap();
    let wt = floats(initializer(&g, "adaptor.weight_t_")[0]);
    assert_eq!(wt[64 + 3], w[3][1], "adaptor weight stored transposed");
}

#[test]
fn non_uniform_pooling_uses_the_pooling_conv_and_ablations_change_the_head() {
    // resnet18 layer1: 576 values -> 100 dims is not a uniform pooling.
    let m = export(&tiny_model(&[Layer::L1], 100, None), false);
    let g = m.graph.unwrap();
    let pool = initializer(&g, "descriptor_pool_");
    assert_eq!(pool.len(), 1);
    assert_eq!(pool[0].dims, vec![100, 64, 3, 3]);
    let w = floats(pool[0]);
    for r in 0..100 {
        let sum: f32 = w[r * 576..(r + 1) * 576].iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "row {r} averages: sum {sum}");
    }
    // No residual half: fc1 reads f only ([D,D]), no residual weights, no alignment.
    let abl = serde_json::json!({"residual": false, "center_search": true});
    let g = export(&tiny_model(&[Layer::L2, Layer::L3], 64, Some(abl)), false)
        .graph
        .unwrap();
    assert_eq!(initializer(&g, "fc1.weight_t_")[0].dims, vec![64, 64]);
    assert!(initializer(&g, "fc1.residual.").is_empty());
    assert!(!g.node.iter().any(|n| n.op_type() == "Sub"));
    // No center search: the table rows of the class's centers at the same positions, no
    // [B,P,P] ArgMax.
    let abl = serde_json::json!({"residual": true, "center_search": false});
    let g = export(&tiny_model(&[Layer::L2, Layer::L3], 64, Some(abl)), false)
        .graph
        .unwrap();
    let argmaxes = g.node.iter().filter(|n| n.op_type() == "ArgMax").count();
    assert_eq!(argmaxes, 1, "only the global match");
    let full = export(&tiny_model(&[Layer::L2, Layer::L3], 64, None), false)
        .graph
        .unwrap();
    assert_eq!(
        full.node.iter().filter(|n| n.op_type() == "ArgMax").count(),
        2
    );
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let out = dir.path().join("m.onnx");
    let e = export_file(&missing, &out, false, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    assert!(!out.exists());
    // An output path below a regular file cannot be created.
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("m.onnx");
    let e = write_onnx(&bad, b"bytes").unwrap_err().to_string();
    assert!(
        e.contains("cannot write the ONNX file") && e.contains("plain/m.onnx"),
        "{e}"
    );
    // Round trip of a real export through the file.
    let p = tiny_model(&[Layer::L2], 32, None);
    let bytes = export_onnx(&p, &ExportOptions::default()).unwrap();
    write_onnx(&out, &bytes).unwrap();
    let back = pb::ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    let meta: HashMap<&str, &str> = back
        .metadata_props
        .iter()
        .map(|e| (e.key(), e.value()))
        .collect();
    assert_eq!(meta["cras.model_sha256"], "unknown");
    // From a model file: its SHA-256 is recorded.
    let model = dir.path().join("m.safetensors");
    let m = p.as_ref();
    crate::model::file::save(&model, m.meta, m.head, &m.extractor.backbone).unwrap();
    let summary = export_file(&model, &out, true, false).unwrap();
    assert_eq!(summary.bytes as u64, std::fs::metadata(&out).unwrap().len());
    let back = pb::ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    let sha = back
        .metadata_props
        .iter()
        .find(|e| e.key() == "cras.model_sha256")
        .map(|e| e.value().to_string());
    assert_eq!(sha, Some(crate::backbone::sha256_file(&model).unwrap()));
    assert_eq!(back.graph.unwrap().input.len(), 2);
}

#[test]
fn stage_graphs_end_at_the_backbone_or_the_descriptors() {
    let p = tiny_model(&[Layer::L2, Layer::L3], 48, None);
    let names = |stage| -> Vec<String> {
        let opts = ExportOptions {
            part: stage,
            ..ExportOptions::default()
        };
        let m = pb::ModelProto::decode(export_onnx(&p, &opts).unwrap().as_slice()).unwrap();
        let g = m.graph.unwrap();
        assert!(
            g.node
                .iter()
                .all(|n| n.op_type.as_deref() != Some("Sigmoid")),
            "a stage graph holds no discriminator"
        );
        g.output.iter().map(|o| o.name.clone().unwrap()).collect()
    };
    assert_eq!(names(GraphPart::Backbone), ["feature_0", "feature_1"]);
    assert_eq!(names(GraphPart::Descriptors), ["descriptors"]);
}

#[test]
fn the_head_takes_the_descriptors_and_gives_the_contract() {
    let p = tiny_model(&[Layer::L2, Layer::L3], 48, None);
    let io = |part| {
        let opts = ExportOptions {
            part,
            class_input: true,
            ..ExportOptions::default()
        };
        let m = pb::ModelProto::decode(export_onnx(&p, &opts).unwrap().as_slice()).unwrap();
        let g = m.graph.unwrap();
        let names = |v: &[pb::ValueInfoProto]| -> Vec<String> {
            v.iter().map(|o| o.name.clone().unwrap()).collect()
        };
        (names(&g.input), names(&g.output), g)
    };
    let whole = io(GraphPart::Whole).1;
    let (inputs, outputs, g) = io(GraphPart::Head);
    assert_eq!(inputs, ["descriptors", "stated_class"]);
    assert_eq!(outputs, whole);
    assert_eq!(
        dims(&g.input[0]).1,
        ["batch".to_string(), "16".into(), "48".into()]
    );
}

#[test]
fn bf16_products_cast_the_three_large_products_and_keep_the_alignment_f32() {
    let p = tiny_model(&[Layer::L2, Layer::L3], 48, None);
    let head = |bf16_products| {
        let opts = ExportOptions {
            part: GraphPart::Head,
            class_input: true,
            bf16_products,
            ..ExportOptions::default()
        };
        let m = pb::ModelProto::decode(export_onnx(&p, &opts).unwrap().as_slice()).unwrap();
        m.graph.unwrap()
    };
    let (plain, mixed) = (head(false), head(true));
    let bf16 = pb::tensor_proto::DataType::Bfloat16 as i32;
    let cast_to = |n: &pb::NodeProto| n.attribute.iter().find(|a| a.name() == "to").map(|a| a.i());
    // Products whose operands are bf16: their input comes from a Cast to bf16.
    let bf16_matmuls = |g: &pb::GraphProto| -> Vec<String> {
        let producer: HashMap<&str, &pb::NodeProto> = g
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
            .collect();
        g.node
            .iter()
            .filter(|n| n.op_type() == "MatMul")
            .filter(|n| {
                producer
                    .get(n.input[0].as_str())
                    .is_some_and(|c| c.op_type() == "Cast" && cast_to(c) == Some(bf16 as i64))
            })
            .map(|n| n.input[1].clone())
            .collect()
    };
    assert!(bf16_matmuls(&plain).is_empty());
    let weights = bf16_matmuls(&mixed);
    let names: Vec<&str> = weights
        .iter()
        .map(|w| w.split(".weight_t_bf16").next().unwrap())
        .collect();
    assert_eq!(names, ["adaptor", "fc1", "fc2"], "{weights:?}");
    // Their weights are the f32 weights rounded to bf16 (within half a bf16 step), the
    // alignment's product and every other MatMul are unchanged, and each product is cast back.
    for w in &weights {
        let t = initializer(&mixed, w)[0];
        assert_eq!(t.data_type(), bf16);
        let product = w.split(".weight_t_bf16").next().unwrap();
        let exact = floats(initializer(&plain, &format!("{product}.weight_t"))[0]);
        let raw = t.raw_data();
        assert_eq!(raw.len(), 2 * exact.len());
        for (k, &e) in exact.iter().enumerate() {
            let b = half::bf16::from_le_bytes([raw[2 * k], raw[2 * k + 1]]).to_f32();
            assert!(
                (b - e).abs() <= e.abs() / 256.0 + 1e-30,
                "{w}[{k}]: {b} vs {e}"
            );
        }
    }
    let count = |g: &pb::GraphProto, op: &str| g.node.iter().filter(|n| n.op_type() == op).count();
    assert_eq!(count(&mixed, "MatMul"), count(&plain, "MatMul"));
    let casts: Vec<Option<i64>> = mixed
        .node
        .iter()
        .filter(|n| n.op_type() == "Cast")
        .map(cast_to)
        .collect();
    assert_eq!(casts.len(), 6);
    assert_eq!(casts.iter().filter(|&&c| c == Some(bf16 as i64)).count(), 3);
}

#[test]
fn an_int8_graph_quantizes_every_backbone_convolution_and_nothing_else() {
    let mut p = tiny_model(&[Layer::L2, Layer::L3], 48, None);
    let int8 = ExportOptions {
        int8: true,
        ..ExportOptions::default()
    };
    // A model without calibration is refused with the command that calibrates it.
    let err = export_onnx(&p, &int8).unwrap_err().to_string();
    assert!(err.contains("cras quantize"), "{err}");
    let images = Tensor::randn(0f32, 1.0, (2, 3, S, S), &Device::Cpu).unwrap();
    let layers = p.extractor.cfg.layers.clone();
    let cal =
        crate::backbone::int8::calibrate(&p.extractor.backbone, &layers, [Ok(images)], "random")
            .unwrap();
    p.meta.int8 = Some(cal.clone());
    let m = pb::ModelProto::decode(export_onnx(&p, &int8).unwrap().as_slice()).unwrap();
    let g = m.graph.as_ref().unwrap();
    let producer: HashMap<&str, &pb::NodeProto> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let inits: HashMap<&str, &pb::TensorProto> =
        g.initializer.iter().map(|t| (t.name(), t)).collect();
    let convs: Vec<&pb::NodeProto> = g.node.iter().filter(|n| n.op_type() == "Conv").collect();
    // Every backbone conv (15 in resnet18 up to layer3) and no other reads its input and its
    // weights through DequantizeLinear; the descriptor's pooling convs (if any) stay f32.
    let quantized: Vec<_> = convs
        .iter()
        .filter(|c| {
            producer.get(c.input[0].as_str()).map(|n| n.op_type()) == Some("DequantizeLinear")
        })
        .collect();
    assert_eq!(quantized.len(), cal.inputs.len());
    assert_eq!(cal.inputs.len(), 15);
    for c in quantized {
        let x = producer[c.input[0].as_str()];
        let q = producer[x.input[0].as_str()];
        assert_eq!(q.op_type(), "QuantizeLinear");
        // Activations: uint8 per tensor; weights: int8 per output channel (axis 0).
        let zp = inits[q.input[2].as_str()];
        assert_eq!(zp.data_type(), pb::tensor_proto::DataType::Uint8 as i32);
        assert!(zp.dims.is_empty());
        let w = producer[c.input[1].as_str()];
        assert_eq!(w.op_type(), "DequantizeLinear");
        let wq = inits[w.input[0].as_str()];
        assert_eq!(wq.data_type(), pb::tensor_proto::DataType::Int8 as i32);
        let scales = inits[w.input[1].as_str()];
        assert_eq!(scales.dims, vec![wq.dims[0]]);
        assert_eq!(w.attribute[0].name(), "axis");
        assert_eq!(w.attribute[0].i(), 0);
    }
    // The same weights dequantized are within half a step of the f32 export's.
    let f32_graph = export(&p, false).graph.unwrap();
    let stem_f32 = floats(initializer(&f32_graph, "conv1.weight")[0]);
    let q = initializer(g, "conv1.weight_int8")[0];
    let s = floats(initializer(g, "conv1.weight_scale")[0]);
    let per = stem_f32.len() / s.len();
    for (i, (&b, &w)) in q.raw_data().iter().zip(&stem_f32).enumerate() {
        let back = (b as i8) as f32 * s[i / per];
        assert!(
            (back - w).abs() <= s[i / per] / 2.0 + 1e-6,
            "weight {i}: {back} vs {w}"
        );
    }
    let meta = m
        .metadata_props
        .iter()
        .find(|e| e.key() == "cras.int8")
        .map(|e| e.value().to_string())
        .expect("cras.int8 metadata");
    assert!(meta.contains("\"images\":2"), "{meta}");
    // The f32 graph has no quantization.
    assert!(!f32_graph
        .node
        .iter()
        .any(|n| n.op_type().contains("QuantizeLinear")));
}
