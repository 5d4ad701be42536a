//! Unit tests of `super` (the Triton config built from a hand-made ONNX model; flag checks).

use super::*;
use pb::tensor_shape_proto::dimension::Value as DimValue;

fn value(name: &str, elem: i32, dims: &[DimValue]) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| pb::tensor_shape_proto::Dimension {
                            value: Some(d.clone()),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(thresholds: &str, classes: &str) -> Vec<u8> {
    model_with(thresholds, classes, None)
}

fn model_with(thresholds: &str, classes: &str, bands: Option<&str>) -> Vec<u8> {
    let b = || DimValue::DimParam("batch".into());
    let mut meta = vec![
        ("cras.classes", classes),
        ("cras.thresholds", thresholds),
        ("cras.preprocess", "{\"resize\":32}"),
        ("cras.model_sha256", "abc"),
        ("cras.version", "0.1.0"),
        ("cras.format", "1"),
    ];
    if let Some(bands) = bands {
        meta.push(("cras.precision_bands", bands));
    }
    pb::ModelProto {
        graph: Some(pb::GraphProto {
            input: vec![
                value(
                    "image",
                    1,
                    &[b(), DimValue::DimValue(3), DimValue::DimValue(32)],
                ),
                value("stated_class", 7, &[b()]),
            ],
            output: vec![
                value("image_score", 1, &[b()]),
                value("map", 1, &[b(), DimValue::DimParam("h".into())]),
            ],
            ..Default::default()
        }),
        metadata_props: meta
            .iter()
            .map(|(k, v)| pb::StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v.to_string()),
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn inputs_outputs_and_parameters_come_from_the_graph() {
    let onnx = model(
        r#"{"per_class":[0.5,1.25],"global":0.7,"method":"q"}"#,
        r#"["a","b c"]"#,
    );
    let c = TritonConfig::from_onnx("m", &onnx, &TritonOptions::default()).unwrap();
    let spec = |n: &str, t, d: &[i64]| TensorSpec {
        name: n.into(),
        data_type: t,
        dims: d.to_vec(),
    };
    assert_eq!(
        c.inputs,
        [
            spec("image", "TYPE_FP32", &[3, 32]),
            spec("stated_class", "TYPE_INT64", &[])
        ]
    );
    assert_eq!(
        c.outputs,
        [
            spec("image_score", "TYPE_FP32", &[]),
            spec("map", "TYPE_FP32", &[-1])
        ]
    );
    let p: std::collections::HashMap<_, _> = c.parameters.iter().cloned().collect();
    assert_eq!(p["classes"], r#"["a","b c"]"#);
    assert_eq!(p["threshold.a"], "0.5");
    assert_eq!(p["threshold.b c"], "1.25");
    assert_eq!(p["threshold_method"], "q");
    let text = c.to_pbtxt();
    assert!(text.contains("dims: [ 3, 32 ]"), "{text}");
    assert!(
        text.contains("dims: [ 1 ]\n    reshape: { shape: [ ] }"),
        "{text}"
    );
    assert!(text.contains("preferred_batch_size: [ 8 ]"), "{text}");
    assert!(text.contains("kind: KIND_GPU"), "{text}");
    assert!(!text.contains("tensorrt"), "{text}");
}

#[test]
fn an_uncalibrated_model_has_no_threshold_parameters() {
    let c = TritonConfig::from_onnx("m", &model("null", r#"["a"]"#), &TritonOptions::default())
        .unwrap();
    assert!(c
        .parameters
        .iter()
        .all(|(k, _)| !k.starts_with("threshold")));
}

#[test]
fn measured_precision_bands_become_a_parameter() {
    let bands = r#"[{"engine":"openvino","precision":"bf16","band":1.5}]"#;
    let params = |b| {
        TritonConfig::from_onnx(
            "m",
            &model_with("null", r#"["a"]"#, b),
            &TritonOptions::default(),
        )
        .unwrap()
        .parameters
    };
    let p: std::collections::HashMap<_, _> = params(Some(bands)).into_iter().collect();
    assert_eq!(p["precision_bands"], bands);
    // None measured (an empty list) or an older graph (no key): no parameter.
    for b in [Some("[]"), None] {
        assert!(params(b).iter().all(|(k, _)| k != "precision_bands"));
    }
    let e = TritonConfig::from_onnx(
        "m",
        &model_with("null", r#"["a"]"#, Some("{")),
        &TritonOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cras.precision_bands"), "{e}");
}

#[test]
fn a_graph_without_a_batch_dimension_is_refused() {
    let mut m = pb::ModelProto::decode(model("null", r#"["a"]"#).as_slice()).unwrap();
    m.graph.as_mut().unwrap().input[0] = value("image", 1, &[DimValue::DimValue(1)]);
    let e = TritonConfig::from_onnx("m", &m.encode_to_vec(), &TritonOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("'image'") && e.contains("batch"), "{e}");
}

#[test]
fn strings_are_escaped() {
    assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    assert_eq!(quote("x\ny'"), r#""x\ny\'""#);
    assert_eq!(quote("é"), r#""\303\251""#);
    assert_eq!(quote("\u{1}"), r#""\001""#);
}

#[test]
fn bad_options_are_named() {
    let err = |o: TritonOptions| o.check().unwrap_err().to_string();
    let d = TritonOptions::default;
    assert!(err(TritonOptions {
        max_batch: 0,
        ..d()
    })
    .contains("--max-batch"));
    assert!(err(TritonOptions {
        instances: 0,
        ..d()
    })
    .contains("--instances"));
    let e = err(TritonOptions {
        preferred_batch: vec![4, 9],
        ..d()
    });
    assert!(e.contains("--preferred-batch = 9"), "{e}");
    let e = err(TritonOptions {
        tensorrt: true,
        kind: InstanceKind::Cpu,
        ..d()
    });
    assert!(e.contains("--tensorrt"), "{e}");
    for bad in ["", ".", "..", "a/b", "a\\b", "a\u{7}"] {
        let e = check_model_name(bad).unwrap_err().to_string();
        assert!(e.contains("--name"), "{bad:?}: {e}");
    }
    check_model_name("cras-model_v2.1").unwrap();
    let named = TritonOptions::default()
        .model_name(Path::new("/x/line3.safetensors"))
        .unwrap();
    assert_eq!(named, "line3");
}
