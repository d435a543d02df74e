use std::path::Path;

use bytes::Bytes;

use super::*;
use crate::formats::tflite::model::{SignatureEntry, TflQuant};

fn f32_bytes(v: &[f32]) -> Bytes {
    Bytes::from(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

fn tensor(name: &str, dtype: tfl::TensorType, shape: &[i32], data: Option<Bytes>) -> TflTensor {
    TflTensor {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        data,
        quant: None,
        is_variable: false,
    }
}

fn op(
    code: tfl::BuiltinOperator,
    version: i32,
    inputs: &[Option<TensorId>],
    outputs: &[TensorId],
    options: tfl::BuiltinOptionsT,
) -> TflOperator {
    TflOperator {
        code,
        version,
        inputs: inputs.to_vec(),
        outputs: outputs.to_vec(),
        options,
        source_node: format!("node_{}", outputs[0].0),
    }
}

const C: [f32; 4] = [0.5, -1.0, 2.0, 0.0];
const W: [f32; 12] = [
    0.1, 0.2, 0.3, 0.4, -0.5, 0.6, -0.7, 0.8, 1.0, 0.0, -1.0, 0.5,
];
const B: [f32; 3] = [0.25, -0.5, 1.0];

/// `z = relu(FC(gelu(x + c), w) + b)`: ADD, GELU (code 150 > 127), a
/// FULLY_CONNECTED without bias (-1), ADD again at version 2, plus an unused
/// per-channel quantized constant and a variable tensor.
fn sample_model() -> TflModel {
    use tfl::TensorType as T;
    let mut m = TflModel::default();
    let x = m.add_tensor(tensor("x", T::FLOAT32, &[1, 4], None));
    let c = m.add_tensor(tensor("c", T::FLOAT32, &[4], Some(f32_bytes(&C))));
    let a = m.add_tensor(tensor("a", T::FLOAT32, &[1, 4], None));
    let g = m.add_tensor(tensor("g", T::FLOAT32, &[1, 4], None));
    let w = m.add_tensor(tensor("w", T::FLOAT32, &[3, 4], Some(f32_bytes(&W))));
    let y = m.add_tensor(tensor("y", T::FLOAT32, &[1, 3], None));
    let b = m.add_tensor(tensor("b", T::FLOAT32, &[3], Some(f32_bytes(&B))));
    let z = m.add_tensor(tensor("z", T::FLOAT32, &[1, 3], None));
    let mut q = tensor(
        "q",
        T::INT8,
        &[2, 3],
        Some(Bytes::from_static(&[1, 2, 3, 0xfd, 0xfe, 0xff])),
    );
    q.quant = Some(TflQuant {
        scale: vec![0.5, 0.25],
        zero_point: vec![0, -1],
        axis: 0,
    });
    m.add_tensor(q);
    let mut state = tensor("state", T::FLOAT32, &[1, 3], None);
    state.is_variable = true;
    m.add_tensor(state);

    use tfl::BuiltinOperator as Op;
    use tfl::BuiltinOptionsT as O;
    m.add_operator(op(
        Op::ADD,
        1,
        &[Some(x), Some(c)],
        &[a],
        O::AddOptions(Box::default()),
    ));
    m.add_operator(op(
        Op::GELU,
        1,
        &[Some(a)],
        &[g],
        O::GeluOptions(Box::new(tfl::GeluOptionsT { approximate: false })),
    ));
    m.add_operator(op(
        Op::FULLY_CONNECTED,
        1,
        &[Some(g), Some(w), None],
        &[y],
        O::FullyConnectedOptions(Box::default()),
    ));
    m.add_operator(op(
        Op::ADD,
        2,
        &[Some(y), Some(b)],
        &[z],
        O::AddOptions(Box::new(tfl::AddOptionsT {
            fused_activation_function: tfl::ActivationFunctionType::RELU,
            pot_scale_int16: true,
        })),
    ));
    m.inputs = vec![x];
    m.outputs = vec![z];
    m.signature_inputs = vec![SignatureEntry {
        name: "input".into(),
        tensor: x,
    }];
    m.signature_outputs = vec![SignatureEntry {
        name: "output".into(),
        tensor: z,
    }];
    m.description = "edgeconv writer test".into();
    m.metadata = vec![(
        "edgeconv_provenance".into(),
        Bytes::from_static(b"{\"source\":\"test\"}"),
    )];
    m.min_runtime_version = Some("2.9.0".into());
    m
}

fn read(bytes: &[u8]) -> tfl::Model<'_> {
    let opts = flatbuffers::VerifierOptions {
        max_tables: 1 << 24,
        max_apparent_size: 1 << 31,
        ..Default::default()
    };
    tfl::root_as_model_with_opts(&opts, bytes).expect("the written model verifies")
}

fn offset_in(file: &[u8], data: &[u8]) -> usize {
    data.as_ptr() as usize - file.as_ptr() as usize
}

/// The constant data of every buffer, resolved in either form, with where it starts.
fn buffer_data<'a>(file: &'a [u8], model: &tfl::Model<'a>) -> Vec<(usize, &'a [u8])> {
    model
        .buffers()
        .unwrap()
        .iter()
        .map(|b| match b.data() {
            Some(d) => (offset_in(file, d.bytes()), d.bytes()),
            None if b.offset() > 1 => {
                let (at, size) = (b.offset() as usize, b.size() as usize);
                (at, &file[at..at + size])
            }
            None => (0, &[][..]),
        })
        .collect()
}

fn metadata<'a>(file: &'a [u8], model: &tfl::Model<'a>) -> Vec<(String, Vec<u8>)> {
    let buffers = buffer_data(file, model);
    model
        .metadata()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m.name().unwrap().to_string(),
                buffers[m.buffer() as usize].1.to_vec(),
            )
        })
        .collect()
}

fn check_structure(file: &[u8], offset_buffers: bool) {
    let src = sample_model();
    assert!(tfl::model_buffer_has_identifier(file));
    assert_eq!(&file[4..8], b"TFL3");
    let model = read(file);
    assert_eq!(model.version(), 3);
    assert_eq!(model.description(), Some("edgeconv writer test"));

    let codes: Vec<_> = model
        .operator_codes()
        .unwrap()
        .iter()
        .map(|c| (c.builtin_code(), c.version(), c.deprecated_builtin_code()))
        .collect();
    use tfl::BuiltinOperator as Op;
    assert_eq!(
        codes,
        [
            (Op::ADD, 1, 0),
            (Op::GELU, 1, 127),
            (Op::FULLY_CONNECTED, 1, Op::FULLY_CONNECTED.0 as i8),
            (Op::ADD, 2, 0),
        ]
    );

    let subgraphs = model.subgraphs().unwrap();
    assert_eq!(subgraphs.len(), 1);
    let sg = subgraphs.get(0);
    assert_eq!(sg.name(), Some("main"));
    assert_eq!(sg.inputs().unwrap().iter().collect::<Vec<_>>(), [0]);
    assert_eq!(sg.outputs().unwrap().iter().collect::<Vec<_>>(), [7]);

    let tensors = sg.tensors().unwrap();
    assert_eq!(tensors.len(), src.tensors.len());
    let buffers = buffer_data(file, &model);
    let mut expected_buffer = 1;
    for (t, s) in tensors.iter().zip(&src.tensors) {
        assert_eq!(t.name(), Some(s.name.as_str()));
        assert_eq!(t.type_(), s.dtype);
        assert_eq!(t.shape().unwrap().iter().collect::<Vec<_>>(), s.shape);
        assert!(t.has_rank());
        assert_eq!(t.is_variable(), s.is_variable);
        match &s.data {
            Some(data) => {
                assert_eq!(
                    t.buffer(),
                    expected_buffer,
                    "tensor {} has its own buffer",
                    s.name
                );
                expected_buffer += 1;
                assert_eq!(buffers[t.buffer() as usize].1, &data[..]);
            }
            None => assert_eq!(t.buffer(), 0),
        }
        match &s.quant {
            Some(q) => {
                let tq = t.quantization().unwrap();
                assert_eq!(tq.scale().unwrap().iter().collect::<Vec<_>>(), q.scale);
                assert_eq!(
                    tq.zero_point().unwrap().iter().collect::<Vec<_>>(),
                    q.zero_point
                );
                assert_eq!(tq.quantized_dimension(), q.axis);
            }
            None => assert!(t.quantization().is_none()),
        }
    }

    let ops = sg.operators().unwrap();
    let summary: Vec<_> = ops
        .iter()
        .map(|o| {
            (
                o.opcode_index(),
                o.inputs().unwrap().iter().collect::<Vec<_>>(),
                o.outputs().unwrap().iter().collect::<Vec<_>>(),
                o.builtin_options_type(),
            )
        })
        .collect();
    use tfl::BuiltinOptions as B;
    assert_eq!(
        summary,
        [
            (0, vec![0, 1], vec![2], B::AddOptions),
            (1, vec![2], vec![3], B::GeluOptions),
            (2, vec![3, 4, -1], vec![5], B::FullyConnectedOptions),
            (3, vec![5, 6], vec![7], B::AddOptions),
        ]
    );
    assert_eq!(
        ops.get(0)
            .builtin_options_as_add_options()
            .unwrap()
            .fused_activation_function(),
        tfl::ActivationFunctionType::NONE
    );
    assert_eq!(
        ops.get(3)
            .builtin_options_as_add_options()
            .unwrap()
            .fused_activation_function(),
        tfl::ActivationFunctionType::RELU
    );
    assert!(
        !ops.get(1)
            .builtin_options_as_gelu_options()
            .unwrap()
            .approximate()
    );
    let fc = ops
        .get(2)
        .builtin_options_as_fully_connected_options()
        .unwrap();
    assert!(!fc.keep_num_dims());

    let sigs = model.signature_defs().unwrap();
    assert_eq!(sigs.len(), 1);
    let sig = sigs.get(0);
    assert_eq!(sig.signature_key(), Some("serving_default"));
    assert_eq!(sig.subgraph_index(), 0);
    let map = |v: flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<tfl::TensorMap<'_>>>| {
        v.iter()
            .map(|m| (m.name().unwrap().to_string(), m.tensor_index()))
            .collect::<Vec<_>>()
    };
    assert_eq!(map(sig.inputs().unwrap()), [("input".to_string(), 0)]);
    assert_eq!(map(sig.outputs().unwrap()), [("output".to_string(), 7)]);

    let mut expected_metadata = vec![
        (
            "edgeconv_provenance".to_string(),
            b"{\"source\":\"test\"}".to_vec(),
        ),
        (
            "min_runtime_version".to_string(),
            b"2.9.0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
        ),
    ];
    if offset_buffers {
        expected_metadata.push((
            "buffer_location".to_string(),
            b"outside flatbuffers".to_vec(),
        ));
    }
    assert_eq!(metadata(file, &model), expected_metadata);

    // Buffer 0 is the empty sentinel; every other buffer's data is aligned.
    let all = model.buffers().unwrap();
    assert_eq!(all.len(), 1 + 4 + expected_metadata.len());
    let sentinel = all.get(0);
    assert!(sentinel.data().is_none() && sentinel.offset() == 0 && sentinel.size() == 0);
    for (i, (at, _)) in buffers.iter().enumerate().skip(1) {
        assert_eq!(at % 16, 0, "buffer {i} data at {at}");
    }
    for (i, b) in all.iter().enumerate().skip(1) {
        let is_constant = i <= 4;
        assert_eq!(
            b.data().is_none(),
            offset_buffers && is_constant,
            "buffer {i}"
        );
    }
}

#[test]
fn inline_form_round_trips() {
    let file = encode(&sample_model(), OffsetBuffers::Never).unwrap();
    check_structure(&file, false);
    assert_eq!(file, encode(&sample_model(), OffsetBuffers::Auto).unwrap());
}

#[test]
fn offset_form_round_trips_and_points_at_the_data() {
    let src = sample_model();
    let file = encode(&src, OffsetBuffers::Always).unwrap();
    check_structure(&file, true);
    let model = read(&file);
    let buffers = model.buffers().unwrap();
    let constants: Vec<&Bytes> = src.tensors.iter().filter_map(|t| t.data.as_ref()).collect();
    let mut end = 0;
    for (i, data) in constants.iter().enumerate() {
        let b = buffers.get(i + 1);
        assert!(b.offset() > 1 && b.offset() % 16 == 0);
        assert_eq!(b.size(), data.len() as u64);
        let at = b.offset() as usize;
        assert!(at >= end, "buffers in order, not overlapping");
        assert_eq!(&file[at..at + data.len()], &data[..]);
        end = at + data.len();
    }
    // The data follows the flatbuffer; 16 zero bytes follow the data.
    let first = buffers.get(1).offset() as usize;
    assert!(first >= file.len() - (end - first) - 32);
    assert!(file.len() >= end + 16 && file.len() % 16 == 0);
    assert!(file[end..].iter().all(|&b| b == 0));
}

#[test]
fn write_model_writes_what_encode_returns_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    for option in [OffsetBuffers::Never, OffsetBuffers::Always] {
        let out = dir.path().join(format!("{option:?}.tflite"));
        let written = write_model(&sample_model(), &out, option, &Silent).unwrap();
        let file = std::fs::read(&out).unwrap();
        assert_eq!(file, encode(&sample_model(), option).unwrap());
        assert_eq!(written.bytes, file.len() as u64);
        assert_eq!(written.offset_buffers, option == OffsetBuffers::Always);
        assert_eq!(written.constant_buffers, 4);
        assert_eq!(written.path, out);
        if written.offset_buffers {
            assert!(written.flatbuffer_bytes < written.bytes);
            assert_eq!(
                read(&file).buffers().unwrap().get(1).offset(),
                written.flatbuffer_bytes.next_multiple_of(16)
            );
        } else {
            assert_eq!(written.flatbuffer_bytes, written.bytes);
        }
    }
}

#[test]
fn the_same_model_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for option in [OffsetBuffers::Never, OffsetBuffers::Always] {
        let a = dir.path().join("a.tflite");
        let b = dir.path().join("b.tflite");
        write_model(&sample_model(), &a, option, &Silent).unwrap();
        write_model(&sample_model(), &b, option, &Silent).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    }
}

#[test]
fn operator_codes_are_deduplicated_by_code_and_version() {
    use tfl::BuiltinOperator as Op;
    let mut m = TflModel::default();
    let x = m.add_tensor(tensor("x", tfl::TensorType::FLOAT32, &[2], None));
    let plan = [
        (Op::GELU, 1),
        (Op::ADD, 1),
        (Op::GELU, 1),
        (Op::GELU, 2),
        (Op::ADD, 1),
        (Op::GELU, 1),
    ];
    for (code, version) in plan {
        let options = if code == Op::GELU {
            tfl::BuiltinOptionsT::GeluOptions(Box::default())
        } else {
            tfl::BuiltinOptionsT::AddOptions(Box::default())
        };
        m.add_operator(op(code, version, &[Some(x)], &[x], options));
    }
    let file = encode(&m, OffsetBuffers::Auto).unwrap();
    let model = read(&file);
    let codes: Vec<_> = model
        .operator_codes()
        .unwrap()
        .iter()
        .map(|c| (c.builtin_code(), c.version(), c.deprecated_builtin_code()))
        .collect();
    assert_eq!(
        codes,
        [(Op::GELU, 1, 127), (Op::ADD, 1, 0), (Op::GELU, 2, 127)]
    );
    let index: Vec<u32> = model
        .subgraphs()
        .unwrap()
        .get(0)
        .operators()
        .unwrap()
        .iter()
        .map(|o| o.opcode_index())
        .collect();
    assert_eq!(index, [0, 1, 0, 2, 1, 0]);
    // Without signature entries there is no signature.
    assert!(model.signature_defs().is_none());
}

#[test]
fn empty_constants_keep_their_own_buffer_in_both_forms() {
    let mut m = TflModel::default();
    m.add_tensor(tensor(
        "empty",
        tfl::TensorType::FLOAT32,
        &[0],
        Some(Bytes::new()),
    ));
    m.add_tensor(tensor(
        "one",
        tfl::TensorType::FLOAT32,
        &[1],
        Some(f32_bytes(&[3.0])),
    ));
    for option in [OffsetBuffers::Never, OffsetBuffers::Always] {
        let file = encode(&m, option).unwrap();
        let model = read(&file);
        let data = buffer_data(&file, &model);
        assert_eq!(data.len(), 3 + usize::from(option == OffsetBuffers::Always));
        assert!(data[1].1.is_empty());
        assert_eq!(data[2].1, 3.0f32.to_le_bytes());
        let tensors = model.subgraphs().unwrap().get(0).tensors().unwrap();
        assert_eq!((tensors.get(0).buffer(), tensors.get(1).buffer()), (1, 2));
    }
}

#[test]
fn auto_switches_to_offset_buffers_above_the_threshold() {
    assert!(!OffsetBuffers::Auto.resolve(OFFSET_BUFFERS_THRESHOLD));
    assert!(OffsetBuffers::Auto.resolve(OFFSET_BUFFERS_THRESHOLD + 1));
    assert!(OffsetBuffers::Always.resolve(0));
    assert!(!OffsetBuffers::Never.resolve(u64::MAX));
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failed_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = sample_model();

    let missing = dir.path().join("no/such/dir/model.tflite");
    let err = write_model(&m, &missing, OffsetBuffers::Always, &Silent).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(entries(dir.path()).is_empty());

    // Everything is written, then the rename onto a folder fails.
    let folder = dir.path().join("model.tflite");
    std::fs::create_dir(&folder).unwrap();
    for option in [OffsetBuffers::Never, OffsetBuffers::Always] {
        let err = write_model(&m, &folder, option, &Silent).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert_eq!(entries(dir.path()), ["model.tflite"]);
        assert!(entries(&folder).is_empty());
    }

    // A model the writer refuses leaves an existing file as it was.
    let existing = dir.path().join("old.tflite");
    std::fs::write(&existing, b"old").unwrap();
    let mut bad = sample_model();
    bad.operators[1].inputs[0] = Some(TensorId(99));
    let err = write_model(&bad, &existing, OffsetBuffers::Auto, &Silent).unwrap_err();
    assert!(matches!(err, Error::Node { .. }), "{err}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"old");
    assert_eq!(entries(dir.path()), ["model.tflite", "old.tflite"]);
}

#[test]
fn inconsistent_models_are_refused() {
    let refuse = |m: &TflModel| encode(m, OffsetBuffers::Auto).unwrap_err().to_string();

    let mut m = sample_model();
    m.tensors[1].shape = vec![5];
    assert!(
        refuse(&m).contains("16 bytes of data for shape [5]"),
        "{}",
        refuse(&m)
    );

    let mut m = sample_model();
    m.tensors[8].quant.as_mut().unwrap().axis = 1;
    assert!(
        refuse(&m).contains("dimension 1 of size 3"),
        "{}",
        refuse(&m)
    );

    let mut m = sample_model();
    m.tensors[9].data = Some(f32_bytes(&[0.0; 3]));
    assert!(refuse(&m).contains("variable"), "{}", refuse(&m));

    let mut m = sample_model();
    m.operators[0].version = 0;
    assert!(refuse(&m).contains("version 0"), "{}", refuse(&m));

    let mut m = sample_model();
    m.operators[0].code = tfl::BuiltinOperator(100_000);
    assert!(
        refuse(&m).contains("not in the TFLite schema"),
        "{}",
        refuse(&m)
    );

    let mut m = sample_model();
    m.signature_outputs[0].tensor = TensorId(10);
    assert!(refuse(&m).contains("tensor 10 of 10"), "{}", refuse(&m));

    let mut m = sample_model();
    m.metadata.push(("buffer_location".into(), Bytes::new()));
    assert!(
        refuse(&m).contains("written by the writer"),
        "{}",
        refuse(&m)
    );

    let mut m = sample_model();
    m.min_runtime_version = Some("1234567890.123456".into());
    assert!(
        refuse(&m).contains("shorter than 16 bytes"),
        "{}",
        refuse(&m)
    );
}

/// More than 2 GiB of constant data with offset buffers off is refused before
/// anything is written. The data is an untouched anonymous mapping, so the
/// test allocates no memory.
#[test]
fn never_refuses_more_than_two_gib() {
    const SIZE: usize = 2_362_232_016; // 2.2 GiB
    let map = memmap2::MmapMut::map_anon(SIZE)
        .unwrap()
        .make_read_only()
        .unwrap();
    let mut m = TflModel::default();
    let w = m.add_tensor(tensor(
        "huge",
        tfl::TensorType::FLOAT32,
        &[(SIZE / 4) as i32],
        Some(Bytes::from_owner(map)),
    ));
    m.outputs = vec![w];
    assert!(OffsetBuffers::Auto.resolve(m.constant_bytes()));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("huge.tflite");
    let err = write_model(&m, &out, OffsetBuffers::Never, &Silent).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Input(_)), "{msg}");
    assert_eq!(err.exit_code(), crate::ir::error::exit::BAD_INPUT);
    assert!(msg.contains("2362232016 bytes (2.20 GiB)"), "{msg}");
    assert!(msg.contains("OffsetBuffers::Never"), "{msg}");
    assert!(msg.contains("huge.tflite"), "{msg}");
    assert!(entries(dir.path()).is_empty());
}

#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(String, u64, u64)>>);

impl Progress for Recorder {
    fn start(&self, task: &str, total: u64) {
        self.0.lock().unwrap().push((task.into(), total, 0));
    }
    fn advance(&self, n: u64) {
        self.0.lock().unwrap().last_mut().unwrap().2 += n;
    }
    fn finish(&self) {}
}

#[test]
fn large_inline_data_is_copied_whole_and_reported() {
    let data: Vec<u8> = (0..3 * BLOCK + 5).map(|i| (i * 7 % 251) as u8).collect();
    let mut m = TflModel::default();
    m.add_tensor(tensor(
        "big",
        tfl::TensorType::INT8,
        &[data.len() as i32],
        Some(Bytes::from(data.clone())),
    ));
    m.add_tensor(tensor(
        "small",
        tfl::TensorType::INT8,
        &[3],
        Some(Bytes::from_static(&[1, 2, 3])),
    ));
    let dir = tempfile::tempdir().unwrap();
    for option in [OffsetBuffers::Never, OffsetBuffers::Always] {
        let out = dir.path().join("m.tflite");
        let progress = Recorder::default();
        write_model(&m, &out, option, &progress).unwrap();
        let total = data.len() as u64 + 3;
        assert_eq!(
            *progress.0.lock().unwrap(),
            [("write tflite".to_string(), total, total)]
        );
        let file = std::fs::read(&out).unwrap();
        let model = read(&file);
        let buffers = buffer_data(&file, &model);
        assert_eq!(buffers[1].1, &data[..]);
        assert_eq!(buffers[2].1, [1, 2, 3]);
        // Weights never end the file: XNNPack may read 16 bytes past them.
        for (at, d) in &buffers[1..] {
            assert_eq!(at % 16, 0);
            assert!(at + d.len() + 16 <= file.len());
        }
    }
}

/// Above the threshold, Auto keeps the flatbuffer small and streams the data
/// after it (an untouched anonymous mapping: no memory, zero bytes).
#[test]
fn auto_streams_large_data_after_a_small_flatbuffer() {
    const SIZE: usize = (OFFSET_BUFFERS_THRESHOLD + 4096) as usize;
    let map = memmap2::MmapMut::map_anon(SIZE)
        .unwrap()
        .make_read_only()
        .unwrap();
    let mut m = TflModel::default();
    let first = f32_bytes(&[1.0, 2.0, 3.0]);
    let last = Bytes::from_static(&[7, 7, 7]);
    m.add_tensor(tensor(
        "first",
        tfl::TensorType::FLOAT32,
        &[3],
        Some(first.clone()),
    ));
    m.add_tensor(tensor(
        "big",
        tfl::TensorType::INT8,
        &[SIZE as i32],
        Some(Bytes::from_owner(map)),
    ));
    m.add_tensor(tensor(
        "last",
        tfl::TensorType::INT8,
        &[3],
        Some(last.clone()),
    ));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.tflite");
    let written = write_model(&m, &out, OffsetBuffers::Auto, &Silent).unwrap();
    assert!(written.offset_buffers);
    assert!(written.flatbuffer_bytes < 4096, "{written:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), written.bytes);

    let file = std::fs::read(&out).unwrap();
    let model = read(&file);
    let buffers = model.buffers().unwrap();
    let located: Vec<(u64, u64)> = (1..=3)
        .map(|i| (buffers.get(i).offset(), buffers.get(i).size()))
        .collect();
    let start = written.flatbuffer_bytes.next_multiple_of(16);
    let big_at = start + 16;
    let last_at = big_at + SIZE as u64;
    assert_eq!(located, [(start, 12), (big_at, SIZE as u64), (last_at, 3)]);
    assert_eq!(&file[start as usize..][..12], &first[..]);
    assert!(
        file[big_at as usize..last_at as usize]
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(&file[last_at as usize..][..3], &last[..]);
    assert_eq!(written.bytes, (last_at + 3).next_multiple_of(16) + 16);
}
