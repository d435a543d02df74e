//! `-i NAME=FILE.npy` arguments: parsing them and binding the arrays to a
//! graph's inputs, checked against the inputs' dtypes and shapes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use edgeconv::calibration::npy::read_npy;
use edgeconv::ir::error::Error;
use edgeconv::ir::graph::{Fact, Graph, SymId};
use edgeconv::ir::shape::{Dim, Shape};
use edgeconv::ir::tensor::Tensor;

/// One `-i NAME=FILE` argument.
#[derive(Clone, Debug, PartialEq)]
pub struct InputArg {
    pub name: String,
    pub file: PathBuf,
}

impl FromStr for InputArg {
    type Err = String;

    fn from_str(s: &str) -> Result<InputArg, String> {
        match s.split_once('=') {
            Some((name, file)) if !name.is_empty() && !file.is_empty() => Ok(InputArg {
                name: name.to_string(),
                file: PathBuf::from(file),
            }),
            _ => Err(format!("expected NAME=FILE.npy, got '{s}'")),
        }
    }
}

/// Reads the `-i` arrays and returns them in `g.inputs` order. Every graph
/// input must be given exactly once, no other name may be given, and each
/// array must have its input's dtype and a shape that fits its dims, with a
/// symbol taking the same value wherever it appears.
pub fn bind(g: &Graph, args: &[InputArg]) -> anyhow::Result<Vec<Tensor>> {
    let input_names: Vec<&str> = g
        .inputs
        .iter()
        .map(|&id| g.value(id).name.as_str())
        .collect();
    let mut given: HashMap<&str, &InputArg> = HashMap::new();
    for arg in args {
        if !input_names.contains(&arg.name.as_str()) {
            return Err(Error::Input(format!(
                "-i {}={}: the model has no input '{}'; its inputs are: {}",
                arg.name,
                arg.file.display(),
                arg.name,
                list_or_none(&input_names)
            ))
            .into());
        }
        if given.insert(&arg.name, arg).is_some() {
            return Err(Error::Input(format!("input '{}' is given twice", arg.name)).into());
        }
    }
    let missing: Vec<String> = g
        .inputs
        .iter()
        .map(|&id| g.value(id))
        .filter(|v| !given.contains_key(v.name.as_str()))
        .map(|v| format!("{}: {}", v.name, fact_text(g, &v.fact)))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "missing -i NAME=FILE.npy for model input(s) {}",
            missing.join(", ")
        ))
        .into());
    }

    let mut symbols: HashMap<SymId, (u64, String)> = HashMap::new();
    let mut tensors = Vec::with_capacity(g.inputs.len());
    for &id in &g.inputs {
        let value = g.value(id);
        let arg = given[value.name.as_str()];
        let tensor = read_npy(&arg.file).with_context(|| format!("input '{}'", value.name))?;
        check_fits(g, &value.fact, &tensor, &value.name, &mut symbols).map_err(|msg| {
            Error::Input(format!(
                "input '{}' from {}: {msg}",
                value.name,
                arg.file.display()
            ))
        })?;
        tensors.push(tensor);
    }
    Ok(tensors)
}

fn check_fits(
    g: &Graph,
    fact: &Fact,
    tensor: &Tensor,
    input: &str,
    symbols: &mut HashMap<SymId, (u64, String)>,
) -> Result<(), String> {
    let expected = fact_text(g, fact);
    if fact.dtype.is_some_and(|dtype| dtype != tensor.dtype()) {
        return Err(format!(
            "dtype {} does not match the model's {expected}",
            tensor.dtype()
        ));
    }
    let Shape::Ranked(dims) = &fact.shape else {
        return Ok(());
    };
    let shape = tensor.shape();
    let mismatch = || format!("shape {shape:?} does not match the model's {expected}");
    if dims.len() != shape.len() {
        return Err(mismatch());
    }
    for (dim, &actual) in dims.iter().zip(shape) {
        let actual = actual as u64;
        match dim {
            Dim::Fixed(n) if *n != actual => return Err(mismatch()),
            Dim::Fixed(_) => {}
            sym => {
                let Some(id) = sym.as_symbol() else {
                    continue;
                };
                let (bound, by) = symbols
                    .entry(id)
                    .or_insert_with(|| (actual, input.to_string()));
                if *bound != actual {
                    return Err(format!(
                        "{} is {actual} here but {bound} in input '{by}' (model: {expected})",
                        g.symbols.name(id)
                    ));
                }
            }
        }
    }
    Ok(())
}

fn fact_text(g: &Graph, fact: &Fact) -> String {
    let dtype = fact.dtype.map_or("?".to_string(), |d| d.name());
    format!("{dtype}{}", fact.shape.display(&g.symbols))
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeconv::calibration::npy::encode_npy;
    use edgeconv::ir::dtype::DType;
    use ndarray::{ArrayD, IxDyn};

    fn graph() -> Graph {
        let mut g = Graph::new("m");
        let n = Dim::sym(g.symbols.intern("N"));
        g.add_input(
            "x",
            Fact::new(DType::F32, Shape::Ranked(vec![n.clone(), Dim::Fixed(3)])),
        );
        g.add_input("ids", Fact::new(DType::I64, Shape::Ranked(vec![n])));
        g
    }

    fn npy(dir: &std::path::Path, name: &str, tensor: &Tensor) -> InputArg {
        let file = dir.join(format!("{name}.npy"));
        std::fs::write(&file, encode_npy(tensor).unwrap()).unwrap();
        InputArg {
            name: name.split('@').next().unwrap().to_string(),
            file,
        }
    }

    fn f32s(shape: &[usize]) -> Tensor {
        Tensor::F32(ArrayD::zeros(IxDyn(shape)))
    }

    fn i64s(shape: &[usize]) -> Tensor {
        Tensor::I64(ArrayD::zeros(IxDyn(shape)))
    }

    fn bind_error(g: &Graph, args: &[InputArg]) -> String {
        let err = bind(g, args).unwrap_err();
        let lib = err.chain().find_map(|e| e.downcast_ref::<Error>()).unwrap();
        assert_eq!(lib.exit_code(), edgeconv::exit::BAD_INPUT);
        format!("{err:#}")
    }

    #[test]
    fn arguments_parse() {
        assert_eq!(
            "a=b=c.npy".parse(),
            Ok(InputArg {
                name: "a".into(),
                file: "b=c.npy".into()
            })
        );
        assert!("noequals".parse::<InputArg>().is_err());
        assert!("=x.npy".parse::<InputArg>().is_err());
        assert!("x=".parse::<InputArg>().is_err());
    }

    #[test]
    fn inputs_bind_in_graph_order() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph();
        let args = [
            npy(dir.path(), "ids", &i64s(&[2])),
            npy(dir.path(), "x", &f32s(&[2, 3])),
        ];
        let tensors = bind(&g, &args).unwrap();
        assert_eq!(tensors[0].shape(), [2, 3]);
        assert_eq!(tensors[1].dtype(), DType::I64);
    }

    #[test]
    fn wrong_names_dtypes_and_shapes_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph();
        let x = npy(dir.path(), "x", &f32s(&[2, 3]));
        let ids = npy(dir.path(), "ids", &i64s(&[2]));

        let text = bind_error(&g, std::slice::from_ref(&x));
        assert!(
            text.contains("missing -i NAME=FILE.npy for model input(s) ids: i64[N]"),
            "{text}"
        );
        let extra = npy(dir.path(), "y", &f32s(&[1]));
        let text = bind_error(&g, &[x.clone(), ids.clone(), extra]);
        assert!(
            text.contains("no input 'y'; its inputs are: x, ids"),
            "{text}"
        );
        let text = bind_error(&g, &[x.clone(), x.clone(), ids.clone()]);
        assert!(text.contains("'x' is given twice"), "{text}");

        let wrong_dtype = npy(
            dir.path(),
            "x@f64",
            &Tensor::F64(ArrayD::zeros(IxDyn(&[2, 3]))),
        );
        let text = bind_error(&g, &[wrong_dtype, ids.clone()]);
        assert!(text.contains("input 'x' from"), "{text}");
        assert!(
            text.contains("x@f64.npy: dtype f64 does not match the model's f32[N,3]"),
            "{text}"
        );

        let wrong_shape = npy(dir.path(), "x@shape", &f32s(&[2, 4]));
        let text = bind_error(&g, &[wrong_shape, ids.clone()]);
        assert!(
            text.contains("shape [2, 4] does not match the model's f32[N,3]"),
            "{text}"
        );

        let other_n = npy(dir.path(), "ids@n", &i64s(&[5]));
        let text = bind_error(&g, &[x.clone(), other_n]);
        assert!(text.contains("N is 5 here but 2 in input 'x'"), "{text}");

        let broken = dir.path().join("broken.npy");
        std::fs::write(&broken, b"\x93NUMPY\x01").unwrap();
        let args = [
            InputArg {
                name: "x".into(),
                file: broken,
            },
            ids,
        ];
        let text = bind_error(&g, &args);
        assert!(
            text.contains("input 'x'") && text.contains("broken.npy: at byte"),
            "{text}"
        );
    }
}
