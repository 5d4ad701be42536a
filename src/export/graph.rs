//! A small typed builder of ONNX graphs over the prost types of [`super::onnx_pb`].
//!
//! Values are named strings. Every op kind has ONE helper that returns the name of its (single)
//! output; constants become initializers (float32 weights as little-endian `raw_data`, int64
//! shape/index vectors deduplicated). Names are unique: the builder appends a counter.
//! [`Graph::finish`] returns the [`pb::GraphProto`] with its inputs and outputs declared.

use std::collections::HashMap;

use super::onnx_pb as pb;
use pb::tensor_proto::DataType;

/// One dimension of a declared input or output.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named dynamic size ("batch").
    Named(&'static str),
}

/// Element types used by the contract.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Elem {
    F32,
    I64,
}

impl Elem {
    fn code(self) -> i32 {
        match self {
            Elem::F32 => DataType::Float as i32,
            Elem::I64 => DataType::Int64 as i32,
        }
    }
}

/// An ONNX attribute value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// The graph under construction.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    counter: usize,
    int_consts: HashMap<Vec<i64>, String>,
    /// Values declared as outputs: old name -> output name.
    renamed: HashMap<String, String>,
    /// Bytes of float initializers so far (for the 2 GiB protobuf limit check).
    pub initializer_bytes: usize,
}

/// A declared value type: element type and dimensions.
pub fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n as i64),
                Dim::Named(s) => Value::DimParam((*s).to_string()),
            }),
            denotation: None,
        })
        .collect();
    pb::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(pb::TypeProto {
            denotation: None,
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(elem.code()),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Declares a graph input; returns its name.
    pub fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) -> String {
        self.inputs.push(value_info(name, elem, dims));
        name.to_string()
    }

    /// Declares `value` a graph output named `name`: the value is renamed everywhere, or, when
    /// it is already an output under another name, copied by an Identity node.
    pub fn output(&mut self, value: &str, name: &str, elem: Elem, dims: &[Dim]) {
        if let Some(first) = self.renamed.get(value).cloned() {
            let copy = self.node("Identity", &[&first], vec![]);
            return self.output(&copy, name, elem, dims);
        }
        for n in &mut self.nodes {
            for s in n.input.iter_mut().chain(n.output.iter_mut()) {
                if s == value {
                    *s = name.to_string();
                }
            }
        }
        self.renamed.insert(value.to_string(), name.to_string());
        self.outputs.push(value_info(name, elem, dims));
    }

    /// A float32 initializer of shape `dims` (row-major `data`).
    pub fn init_f32(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let name = self.fresh(hint);
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer_bytes += raw.len();
        self.initializers.push(pb::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(DataType::Float as i32),
            name: Some(name.clone()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    /// An int8 initializer of shape `dims` (quantized weights).
    pub fn init_i8(&mut self, hint: &str, dims: &[usize], data: &[i8]) -> String {
        let raw: Vec<u8> = data.iter().map(|&v| v as u8).collect();
        self.init_raw(hint, dims, DataType::Int8, raw)
    }

    /// A uint8 initializer of shape `dims` (zero points of activations).
    pub fn init_u8(&mut self, hint: &str, dims: &[usize], data: &[u8]) -> String {
        self.init_raw(hint, dims, DataType::Uint8, data.to_vec())
    }

    /// A bfloat16 initializer of shape `dims` (`data` rounded to nearest even).
    pub fn init_bf16(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len());
        let raw: Vec<u8> = data
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        self.init_raw(hint, dims, DataType::Bfloat16, raw)
    }

    fn init_raw(&mut self, hint: &str, dims: &[usize], elem: DataType, raw: Vec<u8>) -> String {
        debug_assert_eq!(raw.len() % dims.iter().product::<usize>().max(1), 0);
        let name = self.fresh(hint);
        self.initializer_bytes += raw.len();
        self.initializers.push(pb::TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(elem as i32),
            name: Some(name.clone()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }

    /// A float32 scalar constant (shape []).
    pub fn scalar_f32(&mut self, hint: &str, v: f32) -> String {
        self.init_f32(hint, &[], &[v])
    }

    /// A 1-D int64 constant (shapes, axes, pads, indices), shared between uses.
    pub fn ints(&mut self, v: &[i64]) -> String {
        if let Some(n) = self.int_consts.get(v) {
            return n.clone();
        }
        let name = self.fresh("i64");
        self.initializers.push(pb::TensorProto {
            dims: vec![v.len() as i64],
            data_type: Some(DataType::Int64 as i32),
            name: Some(name.clone()),
            raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            ..Default::default()
        });
        self.int_consts.insert(v.to_vec(), name.clone());
        name
    }

    /// Adds a node with one output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| {
                use pb::attribute_proto::AttributeType as T;
                let mut p = pb::AttributeProto {
                    name: Some(name.to_string()),
                    ..Default::default()
                };
                match a {
                    Attr::Int(i) => (p.i, p.r#type) = (Some(i), Some(T::Int as i32)),
                    Attr::Ints(v) => (p.ints, p.r#type) = (v, Some(T::Ints as i32)),
                    Attr::Float(f) => (p.f, p.r#type) = (Some(f), Some(T::Float as i32)),
                }
                p
            })
            .collect();
        self.nodes.push(pb::NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: Some(format!("n{}_{op}", self.nodes.len())),
            op_type: Some(op.to_string()),
            attribute,
            ..Default::default()
        });
        out
    }

    // ---- one helper per op kind ----

    pub fn conv(&mut self, x: &str, w: &str, b: Option<&str>, stride: usize, pad: usize) -> String {
        let (s, p) = (stride as i64, pad as i64);
        let mut inputs = vec![x, w];
        inputs.extend(b);
        self.node(
            "Conv",
            &inputs,
            vec![
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
                ("dilations", Attr::Ints(vec![1, 1])),
                ("group", Attr::Int(1)),
            ],
        )
    }
    /// `QuantizeLinear(x, scale, zero_point)`: per tensor (scalar scale) or per channel along
    /// `axis`; the zero point's type is the result's.
    pub fn quantize(
        &mut self,
        x: &str,
        scale: &str,
        zero_point: &str,
        axis: Option<i64>,
    ) -> String {
        self.linear_quant("QuantizeLinear", [x, scale, zero_point], axis)
    }
    /// `DequantizeLinear(x, scale, zero_point)` to float32 (per tensor, or per channel along
    /// `axis`).
    pub fn dequantize(
        &mut self,
        x: &str,
        scale: &str,
        zero_point: &str,
        axis: Option<i64>,
    ) -> String {
        self.linear_quant("DequantizeLinear", [x, scale, zero_point], axis)
    }

    /// `op(x, scale, zero_point)` with the `axis` attribute when per channel.
    fn linear_quant(&mut self, op: &str, inputs: [&str; 3], axis: Option<i64>) -> String {
        let attrs = axis
            .map(|a| vec![("axis", Attr::Int(a))])
            .unwrap_or_default();
        self.node(op, &inputs, attrs)
    }
    pub fn relu(&mut self, x: &str) -> String {
        self.node("Relu", &[x], vec![])
    }
    pub fn leaky_relu(&mut self, x: &str, alpha: f32) -> String {
        self.node("LeakyRelu", &[x], vec![("alpha", Attr::Float(alpha))])
    }
    pub fn sigmoid(&mut self, x: &str) -> String {
        self.node("Sigmoid", &[x], vec![])
    }
    pub fn sqrt(&mut self, x: &str) -> String {
        self.node("Sqrt", &[x], vec![])
    }
    pub fn max_pool(&mut self, x: &str, kernel: usize, stride: usize, pad: usize) -> String {
        let (k, s, p) = (kernel as i64, stride as i64, pad as i64);
        self.node(
            "MaxPool",
            &[x],
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
            ],
        )
    }
    /// AveragePool with zero padding counted (the sum of the window over its full size).
    pub fn average_pool(&mut self, x: &str, kernel: [usize; 2], pads: [usize; 4]) -> String {
        self.node(
            "AveragePool",
            &[x],
            vec![
                (
                    "kernel_shape",
                    Attr::Ints(kernel.map(|v| v as i64).to_vec()),
                ),
                ("pads", Attr::Ints(pads.map(|v| v as i64).to_vec())),
                ("strides", Attr::Ints(vec![1, 1])),
                ("count_include_pad", Attr::Int(1)),
            ],
        )
    }
    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", &[a, b], vec![])
    }
    pub fn sub(&mut self, a: &str, b: &str) -> String {
        self.node("Sub", &[a, b], vec![])
    }
    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.node("Mul", &[a, b], vec![])
    }
    pub fn div(&mut self, a: &str, b: &str) -> String {
        self.node("Div", &[a, b], vec![])
    }
    pub fn max(&mut self, a: &str, b: &str) -> String {
        self.node("Max", &[a, b], vec![])
    }
    pub fn less(&mut self, a: &str, b: &str) -> String {
        self.node("Less", &[a, b], vec![])
    }
    pub fn where_(&mut self, cond: &str, a: &str, b: &str) -> String {
        self.node("Where", &[cond, a, b], vec![])
    }
    /// `Cast(x)` to bfloat16 (`bf16` true) or back to float32.
    pub fn cast_bf16(&mut self, x: &str, bf16: bool) -> String {
        let to = if bf16 {
            DataType::Bfloat16
        } else {
            DataType::Float
        };
        self.node("Cast", &[x], vec![("to", Attr::Int(to as i64))])
    }

    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        self.node("MatMul", &[a, b], vec![])
    }
    /// `a · bᵀ` (Gemm with transB = 1, no C).
    pub fn gemm_bt(&mut self, a: &str, b: &str) -> String {
        self.node("Gemm", &[a, b], vec![("transB", Attr::Int(1))])
    }
    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.node("Concat", xs, vec![("axis", Attr::Int(axis))])
    }
    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> String {
        let s = self.ints(shape);
        self.node("Reshape", &[x, &s], vec![])
    }
    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", &[x], vec![("perm", Attr::Ints(perm.to_vec()))])
    }
    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> String {
        let a = self.ints(axes);
        self.node("Unsqueeze", &[x, &a], vec![])
    }
    /// Zero padding; `pads` as ONNX orders them (all begins, then all ends).
    pub fn pad(&mut self, x: &str, pads: &[i64]) -> String {
        let p = self.ints(pads);
        self.node("Pad", &[x, &p], vec![])
    }
    pub fn slice(&mut self, x: &str, axis: i64, start: i64, end: i64) -> String {
        let (s, e, a) = (self.ints(&[start]), self.ints(&[end]), self.ints(&[axis]));
        self.node("Slice", &[x, &s, &e, &a], vec![])
    }
    fn reduce(&mut self, op: &str, x: &str, axes: &[i64], keepdims: bool) -> String {
        self.node(
            op,
            &[x],
            vec![
                ("axes", Attr::Ints(axes.to_vec())),
                ("keepdims", Attr::Int(keepdims as i64)),
            ],
        )
    }
    pub fn reduce_mean(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        self.reduce("ReduceMean", x, axes, keepdims)
    }
    pub fn reduce_max(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        self.reduce("ReduceMax", x, axes, keepdims)
    }
    pub fn reduce_sum_square(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        self.reduce("ReduceSumSquare", x, axes, keepdims)
    }
    pub fn argmax(&mut self, x: &str, axis: i64) -> String {
        self.node(
            "ArgMax",
            &[x],
            vec![("axis", Attr::Int(axis)), ("keepdims", Attr::Int(0))],
        )
    }
    pub fn gather(&mut self, x: &str, idx: &str, axis: i64) -> String {
        self.node("Gather", &[x, idx], vec![("axis", Attr::Int(axis))])
    }

    /// The finished graph.
    pub fn finish(self, name: &str) -> pb::GraphProto {
        pb::GraphProto {
            node: self.nodes,
            name: Some(name.to_string()),
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        }
    }
}
