//! Hand-built .tflite files for tests that check the TFLite tooling itself
//! (the bindings, the LiteRT oracle) without going through the converter:
//! one subgraph of tensors and builtin operators, serialized with the
//! generated builder API. Not a writer: no lowering, no validation beyond
//! what the flatbuffer needs.

use std::fs;
use std::path::Path;

use edgeconv::formats::tflite::schema as tfl;
use flatbuffers::{FlatBufferBuilder, Push, PushAlignment, WIPOffset};

/// A marker element type that only carries an alignment: starting a byte
/// vector with it makes the vector's data start on a 16-byte boundary (the
/// Rust generator ignores the schema's `force_align: 16`).
struct Align16;

impl Push for Align16 {
    type Output = u8;
    unsafe fn push(&self, _dst: &mut [u8], _written_len: usize) {}
    fn size() -> usize {
        1
    }
    fn alignment() -> PushAlignment {
        PushAlignment::new(16)
    }
}

/// A `[ubyte]` vector whose data starts on a 16-byte boundary of the file.
pub fn aligned_bytes<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    data: &[u8],
) -> WIPOffset<flatbuffers::Vector<'a, u8>> {
    fbb.start_vector::<Align16>(data.len());
    for &b in data.iter().rev() {
        fbb.push(b);
    }
    fbb.end_vector::<u8>(data.len())
}

pub struct TestTensor {
    pub name: String,
    pub dtype: tfl::TensorType,
    pub shape: Vec<i32>,
    /// Constant contents (little-endian); `None` for activations and inputs.
    pub data: Option<Vec<u8>>,
}

pub struct TestOp {
    pub code: tfl::BuiltinOperator,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub options: tfl::BuiltinOptionsT,
}

/// A one-subgraph model; `signature` adds a `serving_default` signature
/// naming the inputs and outputs by their `input`/`output` names.
pub struct TestModel {
    pub tensors: Vec<TestTensor>,
    pub ops: Vec<TestOp>,
    pub inputs: Vec<(String, i32)>,
    pub outputs: Vec<(String, i32)>,
    pub signature: bool,
}

impl Default for TestModel {
    fn default() -> Self {
        TestModel {
            tensors: Vec::new(),
            ops: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            signature: true,
        }
    }
}

impl TestModel {
    pub fn new() -> TestModel {
        TestModel::default()
    }

    /// A tensor without data (an activation or a graph input); its index.
    pub fn tensor(&mut self, name: &str, dtype: tfl::TensorType, shape: &[i32]) -> i32 {
        self.push_tensor(name, dtype, shape, None)
    }

    /// A float32 constant.
    pub fn constant_f32(&mut self, name: &str, shape: &[i32], values: &[f32]) -> i32 {
        let count: i32 = shape.iter().product();
        assert_eq!(count as usize, values.len(), "constant '{name}'");
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_tensor(name, tfl::TensorType::FLOAT32, shape, Some(data))
    }

    /// A constant with raw little-endian bytes, any dtype (or a wrong size,
    /// for tests of malformed models).
    pub fn constant_bytes(
        &mut self,
        name: &str,
        dtype: tfl::TensorType,
        shape: &[i32],
        data: Vec<u8>,
    ) -> i32 {
        self.push_tensor(name, dtype, shape, Some(data))
    }

    fn push_tensor(
        &mut self,
        name: &str,
        dtype: tfl::TensorType,
        shape: &[i32],
        data: Option<Vec<u8>>,
    ) -> i32 {
        self.tensors.push(TestTensor {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            data,
        });
        self.tensors.len() as i32 - 1
    }

    pub fn op(
        &mut self,
        code: tfl::BuiltinOperator,
        inputs: &[i32],
        outputs: &[i32],
        options: tfl::BuiltinOptionsT,
    ) {
        self.ops.push(TestOp {
            code,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            options,
        });
    }

    /// Makes tensor `t` a subgraph input, called `name` in the signature.
    pub fn input(&mut self, name: &str, t: i32) {
        self.inputs.push((name.to_string(), t));
    }

    /// Makes tensor `t` a subgraph output, called `name` in the signature.
    pub fn output(&mut self, name: &str, t: i32) {
        self.outputs.push((name.to_string(), t));
    }

    /// The serialized model: buffer 0 is the empty sentinel, each constant
    /// tensor gets a buffer of its own, every other tensor points at 0.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();

        let mut buffers = vec![tfl::Buffer::create(&mut fbb, &tfl::BufferArgs::default())];
        let mut tensors = Vec::new();
        for t in &self.tensors {
            let buffer = match &t.data {
                Some(data) => {
                    let data = aligned_bytes(&mut fbb, data);
                    buffers.push(tfl::Buffer::create(
                        &mut fbb,
                        &tfl::BufferArgs {
                            data: Some(data),
                            ..Default::default()
                        },
                    ));
                    buffers.len() as u32 - 1
                }
                None => 0,
            };
            let shape = fbb.create_vector(&t.shape);
            let name = fbb.create_string(&t.name);
            tensors.push(tfl::Tensor::create(
                &mut fbb,
                &tfl::TensorArgs {
                    shape: Some(shape),
                    type_: t.dtype,
                    buffer,
                    name: Some(name),
                    has_rank: true,
                    ..Default::default()
                },
            ));
        }
        let tensors = fbb.create_vector(&tensors);

        let mut codes: Vec<tfl::BuiltinOperator> = Vec::new();
        let mut operators = Vec::new();
        for op in &self.ops {
            let index = match codes.iter().position(|&c| c == op.code) {
                Some(i) => i,
                None => {
                    codes.push(op.code);
                    codes.len() - 1
                }
            };
            let inputs = fbb.create_vector(&op.inputs);
            let outputs = fbb.create_vector(&op.outputs);
            let options = op.options.pack(&mut fbb);
            operators.push(tfl::Operator::create(
                &mut fbb,
                &tfl::OperatorArgs {
                    opcode_index: index as u32,
                    inputs: Some(inputs),
                    outputs: Some(outputs),
                    builtin_options_type: op.options.builtin_options_type(),
                    builtin_options: options,
                    ..Default::default()
                },
            ));
        }
        let operators = fbb.create_vector(&operators);

        let indices = |list: &[(String, i32)]| list.iter().map(|&(_, t)| t).collect::<Vec<_>>();
        let sg_inputs = fbb.create_vector(&indices(&self.inputs));
        let sg_outputs = fbb.create_vector(&indices(&self.outputs));
        let main = fbb.create_string("main");
        let subgraph = tfl::SubGraph::create(
            &mut fbb,
            &tfl::SubGraphArgs {
                tensors: Some(tensors),
                inputs: Some(sg_inputs),
                outputs: Some(sg_outputs),
                operators: Some(operators),
                name: Some(main),
                ..Default::default()
            },
        );
        let subgraphs = fbb.create_vector(&[subgraph]);

        let codes: Vec<_> = codes
            .iter()
            .map(|&code| {
                tfl::OperatorCode::create(
                    &mut fbb,
                    &tfl::OperatorCodeArgs {
                        // Codes past 127 live only in `builtin_code`; the
                        // deprecated byte then holds PLACEHOLDER_FOR_GREATER_OP_CODES.
                        deprecated_builtin_code: code.0.min(127) as i8,
                        builtin_code: code,
                        version: 1,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let codes = fbb.create_vector(&codes);

        let signature_defs = self.signature.then(|| {
            let mut maps = |list: &[(String, i32)]| {
                let maps: Vec<_> = list
                    .iter()
                    .map(|(name, t)| {
                        let name = fbb.create_string(name);
                        tfl::TensorMap::create(
                            &mut fbb,
                            &tfl::TensorMapArgs {
                                name: Some(name),
                                tensor_index: *t as u32,
                            },
                        )
                    })
                    .collect();
                fbb.create_vector(&maps)
            };
            let inputs = maps(&self.inputs);
            let outputs = maps(&self.outputs);
            let key = fbb.create_string("serving_default");
            let def = tfl::SignatureDef::create(
                &mut fbb,
                &tfl::SignatureDefArgs {
                    inputs: Some(inputs),
                    outputs: Some(outputs),
                    signature_key: Some(key),
                    subgraph_index: 0,
                },
            );
            fbb.create_vector(&[def])
        });

        let buffers = fbb.create_vector(&buffers);
        let model = tfl::Model::create(
            &mut fbb,
            &tfl::ModelArgs {
                version: 3,
                operator_codes: Some(codes),
                subgraphs: Some(subgraphs),
                buffers: Some(buffers),
                signature_defs,
                ..Default::default()
            },
        );
        tfl::finish_model_buffer(&mut fbb, model);
        fbb.finished_data().to_vec()
    }

    pub fn write(&self, path: &Path) {
        fs::write(path, self.to_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}
