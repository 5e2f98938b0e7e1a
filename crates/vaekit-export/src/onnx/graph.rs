//! A small builder of ONNX graphs: named initialisers, nodes with one output each, and the
//! layers vaekit's networks are made of (dense, convolution, transposed convolution,
//! nearest-neighbour doubling, the activations).

use protobuf::MessageField;
use vaekit::ops::Activation;

use super::proto::onnx::{
    AttributeProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType,
    tensor_shape_proto::Dimension, type_proto,
};
use crate::Result;
use crate::weights::{Param, Weights};

/// One dimension of a graph input or output: fixed, or named and free (the batch).
#[derive(Clone, Debug)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A size chosen at run time, by name (`N`).
    Free(&'static str),
}

/// A graph under construction.
pub struct Graph<'w> {
    proto: GraphProto,
    weights: &'w Weights,
    next: usize,
}

/// An attribute of a node.
pub enum Attr {
    /// An integer.
    Int(i64),
    /// Integers.
    Ints(Vec<i64>),
    /// A float.
    Float(f32),
    /// A string.
    Str(&'static str),
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = Dimension::new();
        match d {
            Dim::Fixed(v) => dim.set_dim_value(*v as i64),
            Dim::Free(n) => dim.set_dim_param(n.to_string()),
        }
        shape.dim.push(dim);
    }
    let mut tensor = type_proto::Tensor::new();
    tensor.set_elem_type(elem as i32);
    tensor.shape = MessageField::some(shape);
    let mut ty = TypeProto::new();
    ty.set_tensor_type(tensor);
    let mut v = ValueInfoProto::new();
    v.set_name(name.to_string());
    v.type_ = MessageField::some(ty);
    v
}

impl<'w> Graph<'w> {
    /// An empty graph called `name` over the model's `weights`.
    pub fn new(name: &str, weights: &'w Weights) -> Self {
        let mut proto = GraphProto::new();
        proto.set_name(name.to_string());
        Graph {
            proto,
            weights,
            next: 0,
        }
    }

    /// Declares a float32 input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        self.proto
            .input
            .push(value_info(name, DataType::FLOAT, dims));
        name.to_string()
    }

    /// Declares an int64 input.
    pub fn input_i64(&mut self, name: &str, dims: &[Dim]) -> String {
        self.proto
            .input
            .push(value_info(name, DataType::INT64, dims));
        name.to_string()
    }

    /// Makes `value` the float32 output `name`.
    pub fn output(&mut self, value: &str, name: &str, dims: &[Dim]) {
        self.op_to("Identity", &[value], vec![], name);
        self.proto
            .output
            .push(value_info(name, DataType::FLOAT, dims));
    }

    /// The finished graph.
    pub fn finish(self) -> GraphProto {
        self.proto
    }

    fn fresh(&mut self, base: &str) -> String {
        self.next += 1;
        format!("{base}_{}", self.next)
    }

    /// A float32 constant.
    pub fn constant(&mut self, base: &str, dims: &[usize], values: &[f32]) -> String {
        let name = self.fresh(base);
        let mut t = TensorProto::new();
        t.set_name(name.clone());
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.set_data_type(DataType::FLOAT as i32);
        t.set_raw_data(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        self.proto.initializer.push(t);
        name
    }

    /// An int64 constant.
    pub fn constant_i64(&mut self, base: &str, values: &[i64]) -> String {
        let name = self.fresh(base);
        let mut t = TensorProto::new();
        t.set_name(name.clone());
        t.dims = vec![values.len() as i64];
        t.set_data_type(DataType::INT64 as i32);
        t.set_raw_data(values.iter().flat_map(|v| v.to_le_bytes()).collect());
        self.proto.initializer.push(t);
        name
    }

    /// The model's parameter `name` as an initialiser of that name (added once).
    pub fn param(&mut self, name: &str) -> Result<String> {
        let p = self.weights.get(name)?;
        if !self.proto.initializer.iter().any(|t| t.name() == name) {
            self.add_param(name, p);
        }
        Ok(name.to_string())
    }

    /// The parameter `name` of the model, its values.
    pub fn weights(&self) -> &'w Weights {
        self.weights
    }

    fn add_param(&mut self, name: &str, p: &Param) {
        let mut t = TensorProto::new();
        t.set_name(name.to_string());
        t.dims = p.dims.iter().map(|&d| d as i64).collect();
        t.set_data_type(DataType::FLOAT as i32);
        t.set_raw_data(p.values.iter().flat_map(|v| v.to_le_bytes()).collect());
        self.proto.initializer.push(t);
    }

    /// A node `op` with one output, named after the op.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.op_to(op, inputs, attrs, &out);
        out
    }

    fn op_to(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>, out: &str) {
        let mut n = NodeProto::new();
        n.set_op_type(op.to_string());
        n.set_name(format!("{op}_{}", self.proto.node.len()));
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![out.to_string()];
        for (name, a) in attrs {
            let mut p = AttributeProto::new();
            p.set_name(name.to_string());
            let ty = match a {
                Attr::Int(v) => {
                    p.set_i(v);
                    AttributeType::INT
                }
                Attr::Ints(v) => {
                    p.ints = v;
                    AttributeType::INTS
                }
                Attr::Float(v) => {
                    p.set_f(v);
                    AttributeType::FLOAT
                }
                Attr::Str(v) => {
                    p.set_s(v.as_bytes().to_vec());
                    AttributeType::STRING
                }
            };
            p.set_type(ty);
            n.attribute.push(p);
        }
        self.proto.node.push(n);
    }

    /// `act(x)`.
    pub fn act(&mut self, x: &str, act: Activation) -> String {
        match act {
            Activation::Identity => x.to_string(),
            Activation::Relu => self.op("Relu", &[x], vec![]),
            Activation::Sigmoid => self.op("Sigmoid", &[x], vec![]),
            Activation::LeakyRelu { slope } => {
                self.op("LeakyRelu", &[x], vec![("alpha", Attr::Float(slope))])
            }
        }
    }

    /// `tanh(x)`.
    pub fn tanh(&mut self, x: &str) -> String {
        self.op("Tanh", &[x], vec![])
    }

    /// A dense layer `x W (+ b)` of the parameters `PREFIX.weight` (`[in, out]`) and
    /// `PREFIX.bias` where the layer has one; `x` of any rank, the last dimension `in`.
    pub fn dense(&mut self, x: &str, prefix: &str) -> Result<String> {
        let w = self.param(&format!("{prefix}.weight"))?;
        let y = self.op("MatMul", &[x, &w], vec![]);
        let bias = format!("{prefix}.bias");
        if self.weights.has(&bias) {
            let b = self.param(&bias)?;
            return Ok(self.op("Add", &[&y, &b], vec![]));
        }
        Ok(y)
    }

    /// A convolution of `PREFIX.weight` `[out, in, k, k]` and `PREFIX.bias`, with `stride` and
    /// zero padding `pad` on every side.
    pub fn conv(&mut self, x: &str, prefix: &str, stride: usize, pad: usize) -> Result<String> {
        let w = self.param(&format!("{prefix}.weight"))?;
        let b = self.param(&format!("{prefix}.bias"))?;
        let k = self.weights.get(&format!("{prefix}.weight"))?.dims[2] as i64;
        let (s, p) = (stride as i64, pad as i64);
        Ok(self.op(
            "Conv",
            &[x, &w, &b],
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
            ],
        ))
    }

    /// A stride-2 transposed convolution of `PREFIX.weight` `[in, out, k, k]` and
    /// `PREFIX.bias`, padding `pad` and output padding 1: the side exactly doubles.
    pub fn conv_transpose_2x(&mut self, x: &str, prefix: &str, pad: usize) -> Result<String> {
        let w = self.param(&format!("{prefix}.weight"))?;
        let b = self.param(&format!("{prefix}.bias"))?;
        let k = self.weights.get(&format!("{prefix}.weight"))?.dims[2] as i64;
        let p = pad as i64;
        Ok(self.op(
            "ConvTranspose",
            &[x, &w, &b],
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![2, 2])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
                ("output_padding", Attr::Ints(vec![1, 1])),
            ],
        ))
    }

    /// Nearest-neighbour doubling of the side (`[b, c, h, w] -> [b, c, 2h, 2w]`): output pixel
    /// (i, j) is input pixel (i / 2, j / 2).
    pub fn double_nearest(&mut self, x: &str) -> String {
        let scales = self.constant("scales", &[4], &[1.0, 1.0, 2.0, 2.0]);
        self.op(
            "Resize",
            &[x, "", &scales],
            vec![
                ("mode", Attr::Str("nearest")),
                ("coordinate_transformation_mode", Attr::Str("asymmetric")),
                ("nearest_mode", Attr::Str("floor")),
            ],
        )
    }

    /// `x` reshaped to `dims` (-1 for the one dimension to infer).
    pub fn reshape(&mut self, x: &str, dims: &[i64]) -> String {
        let shape = self.constant_i64("shape", dims);
        self.op("Reshape", &[x, &shape], vec![])
    }

    /// Channels `[from, from + len)` of `x` along `axis`.
    pub fn slice(&mut self, x: &str, axis: i64, from: usize, len: usize) -> String {
        let starts = self.constant_i64("starts", &[from as i64]);
        let ends = self.constant_i64("ends", &[(from + len) as i64]);
        let axes = self.constant_i64("axes", &[axis]);
        self.op("Slice", &[x, &starts, &ends, &axes], vec![])
    }

    /// Concatenation along `axis`.
    pub fn concat(&mut self, xs: &[&str], axis: i64) -> String {
        self.op("Concat", xs, vec![("axis", Attr::Int(axis))])
    }

    /// `x * v` for a scalar `v`.
    pub fn scale(&mut self, x: &str, v: f32) -> String {
        let c = self.constant("factor", &[], &[v]);
        self.op("Mul", &[x, &c], vec![])
    }

    /// The one-hot rows of int64 class indices (`[n]` -> `[n, classes]`).
    pub fn one_hot(&mut self, class: &str, classes: usize) -> String {
        let mut eye = vec![0.0f32; classes * classes];
        for c in 0..classes {
            eye[c * classes + c] = 1.0;
        }
        let eye = self.constant("eye", &[classes, classes], &eye);
        self.op("Gather", &[&eye, class], vec![("axis", Attr::Int(0))])
    }
}
