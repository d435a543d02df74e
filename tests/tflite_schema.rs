//! The generated TFLite bindings round-trip a minimal model: one ADD of two
//! float32 [1, 4] inputs, built with the builder API and read back.

mod common;

use common::tflite_build::aligned_bytes;
use edgeconv::formats::tflite::schema as tfl;
use flatbuffers::FlatBufferBuilder;

#[test]
fn minimal_add_model_round_trips() {
    let mut fbb = FlatBufferBuilder::new();
    let mut tensors = Vec::new();
    for name in ["a", "b", "sum"] {
        let shape = fbb.create_vector(&[1i32, 4]);
        let name = fbb.create_string(name);
        tensors.push(tfl::Tensor::create(
            &mut fbb,
            &tfl::TensorArgs {
                shape: Some(shape),
                type_: tfl::TensorType::FLOAT32,
                buffer: 0,
                name: Some(name),
                has_rank: true,
                ..Default::default()
            },
        ));
    }
    let tensors = fbb.create_vector(&tensors);
    let options = tfl::AddOptions::create(
        &mut fbb,
        &tfl::AddOptionsArgs {
            fused_activation_function: tfl::ActivationFunctionType::NONE,
            ..Default::default()
        },
    );
    let (inputs, outputs) = (fbb.create_vector(&[0i32, 1]), fbb.create_vector(&[2i32]));
    let op = tfl::Operator::create(
        &mut fbb,
        &tfl::OperatorArgs {
            opcode_index: 0,
            inputs: Some(inputs),
            outputs: Some(outputs),
            builtin_options_type: tfl::BuiltinOptions::AddOptions,
            builtin_options: Some(options.as_union_value()),
            ..Default::default()
        },
    );
    let operators = fbb.create_vector(&[op]);
    let (sg_inputs, sg_outputs) = (fbb.create_vector(&[0i32, 1]), fbb.create_vector(&[2i32]));
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
    let code = tfl::OperatorCode::create(
        &mut fbb,
        &tfl::OperatorCodeArgs {
            deprecated_builtin_code: tfl::BuiltinOperator::ADD.0 as i8,
            builtin_code: tfl::BuiltinOperator::ADD,
            version: 1,
            ..Default::default()
        },
    );
    let codes = fbb.create_vector(&[code]);
    // Buffer 0 is the empty sentinel; buffer 1 carries 16 bytes of data to
    // check the alignment (a constant tensor's weights would live there).
    let sentinel = tfl::Buffer::create(&mut fbb, &tfl::BufferArgs::default());
    let payload: Vec<u8> = (0u8..16).collect();
    let data = aligned_bytes(&mut fbb, &payload);
    let weights = tfl::Buffer::create(
        &mut fbb,
        &tfl::BufferArgs {
            data: Some(data),
            ..Default::default()
        },
    );
    let buffers = fbb.create_vector(&[sentinel, weights]);
    let model = tfl::Model::create(
        &mut fbb,
        &tfl::ModelArgs {
            version: 3,
            operator_codes: Some(codes),
            subgraphs: Some(subgraphs),
            buffers: Some(buffers),
            ..Default::default()
        },
    );
    tfl::finish_model_buffer(&mut fbb, model);
    let bytes = fbb.finished_data();

    assert!(tfl::model_buffer_has_identifier(bytes));
    assert_eq!(&bytes[4..8], b"TFL3");
    let model = tfl::root_as_model(bytes).expect("valid model");
    assert_eq!(model.version(), 3);
    let subgraphs = model.subgraphs().unwrap();
    assert_eq!(subgraphs.len(), 1);
    let sg = subgraphs.get(0);
    assert_eq!(sg.inputs().unwrap().iter().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(sg.outputs().unwrap().iter().collect::<Vec<_>>(), [2]);
    let t = sg.tensors().unwrap().get(2);
    assert_eq!(t.name(), Some("sum"));
    assert_eq!(t.type_(), tfl::TensorType::FLOAT32);
    assert_eq!(t.shape().unwrap().iter().collect::<Vec<_>>(), [1, 4]);
    let op = sg.operators().unwrap().get(0);
    let code = model
        .operator_codes()
        .unwrap()
        .get(op.opcode_index() as usize);
    assert_eq!(code.builtin_code(), tfl::BuiltinOperator::ADD);
    assert_eq!(code.deprecated_builtin_code(), 0);
    let add = op.builtin_options_as_add_options().expect("AddOptions");
    assert_eq!(
        add.fused_activation_function(),
        tfl::ActivationFunctionType::NONE
    );

    let buffers = model.buffers().unwrap();
    assert!(buffers.get(0).data().is_none());
    let data = buffers.get(1).data().unwrap();
    assert_eq!(data.bytes(), payload.as_slice());
    let start = data.bytes().as_ptr() as usize - bytes.as_ptr() as usize;
    assert_eq!(
        start % 16,
        0,
        "buffer data at offset {start} is not 16-byte aligned"
    );
}
