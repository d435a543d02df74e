use super::*;
use crate::ir::ops::{AxisAttrs, ReshapeAttrs, ShapeAttrs};

fn sym_shape(symbols: &mut Symbols, text: &str) -> Shape {
    Shape::parse(text, symbols).unwrap()
}

fn input(symbols: &mut Symbols, dtype: DType, shape: &str) -> Option<InferInput> {
    Some(InferInput::from_fact(Fact::new(
        dtype,
        sym_shape(symbols, shape),
    )))
}

fn konst(values: &[i64]) -> Option<InferInput> {
    Some(InferInput::constant(
        Tensor::from_i64(&[values.len()], values.to_vec()).unwrap(),
    ))
}

fn infer1(op: Op, inputs: &[Option<InferInput>], symbols: &mut Symbols) -> Inferred {
    infer_op(&op, inputs, 1, symbols).unwrap().remove(0)
}

fn shape_text(i: &Inferred, symbols: &Symbols) -> String {
    i.fact.shape.display(symbols).to_string()
}

#[test]
fn broadcast_keeps_symbols_and_rejects_mismatches() {
    let mut s = Symbols::default();
    let a = input(&mut s, DType::F32, "[N,1,4]");
    let b = input(&mut s, DType::F32, "[3,1]");
    let out = infer1(Op::Add, &[a.clone(), b], &mut s);
    assert_eq!(shape_text(&out, &s), "[N,3,4]");
    let bad = input(&mut s, DType::F32, "[5]");
    assert!(infer_op(&Op::Mul, &[a, bad], 1, &mut s).is_err());
}

#[test]
fn reshape_through_shape_gather_concat_stays_symbolic() {
    let mut s = Symbols::default();
    let x = input(&mut s, DType::F32, "[N,4,8,8]");
    let shape = infer1(
        Op::Shape(ShapeAttrs {
            start: 0,
            end: None,
        }),
        std::slice::from_ref(&x),
        &mut s,
    );
    let as_input = |i: Inferred| {
        Some(InferInput {
            fact: i.fact,
            value: None,
            sym: i.sym,
        })
    };
    let batch = infer1(
        Op::Gather(AxisAttrs { axis: 0 }),
        &[
            as_input(shape),
            Some(InferInput::constant(Tensor::scalar_i64(0))),
        ],
        &mut s,
    );
    assert_eq!(shape_text(&batch, &s), "[]");
    let batch1 = infer1(Op::Unsqueeze, &[as_input(batch), konst(&[0])], &mut s);
    let target = infer1(
        Op::Concat(AxisAttrs { axis: 0 }),
        &[as_input(batch1), konst(&[-1])],
        &mut s,
    );
    let out = infer1(
        Op::Reshape(ReshapeAttrs { allowzero: false }),
        &[x, as_input(target)],
        &mut s,
    );
    assert_eq!(shape_text(&out, &s), "[N,256]");
}

#[test]
fn unknown_inputs_give_fresh_symbols_not_numbers() {
    let mut s = Symbols::default();
    let x = Some(InferInput::from_fact(Fact::unknown()));
    let out = infer1(Op::Relu, std::slice::from_ref(&x), &mut s);
    assert_eq!(out.fact.shape, Shape::Unranked);
    let target = input(&mut s, DType::I64, "[3]");
    let out = infer1(
        Op::Reshape(ReshapeAttrs { allowzero: false }),
        &[x, target],
        &mut s,
    );
    let dims = out.fact.shape.dims().unwrap();
    assert_eq!(dims.len(), 3);
    assert!(dims.iter().all(|d| d.fixed().is_none()));
}
