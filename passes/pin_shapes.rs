//! Static-shape pinning: symbolic dims get fixed values.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::ir::error::{Error, Result};
use crate::ir::infer::infer_graph;
use crate::ir::{Dim, Graph, SymId, ValueId};

use super::manager::{Changed, Pass, PassCx};

/// One `--pin` request, as written by the user. Names are resolved against
/// the graph when the pass runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// `NAME=VALUE` or `NAME=D0xD1x...`: a symbolic dim, or a graph input's
    /// whole shape.
    Named { name: String, dims: Vec<u64> },
    /// `INPUT:AXIS=VALUE`: one dim of a graph input.
    InputAxis {
        input: String,
        axis: usize,
        value: u64,
    },
}

/// The command-line form `FromStr` parses.
impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pin::Named { name, dims } => {
                let dims: Vec<String> = dims.iter().map(u64::to_string).collect();
                write!(f, "{name}={}", dims.join("x"))
            }
            Pin::InputAxis { input, axis, value } => write!(f, "{input}:{axis}={value}"),
        }
    }
}

impl FromStr for Pin {
    type Err = String;

    fn from_str(s: &str) -> Result<Pin, String> {
        let usage =
            || format!("expected NAME=VALUE, INPUT=D0xD1x... or INPUT:AXIS=VALUE, got '{s}'");
        let (left, right) = s.rsplit_once('=').ok_or_else(usage)?;
        if left.is_empty() {
            return Err(usage());
        }
        let dims = right
            .split('x')
            .map(|d| d.trim().parse::<u64>().ok().filter(|&v| v >= 1))
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| {
                format!("'{s}': '{right}' is not a positive number or D0xD1x... list")
            })?;
        if let (Some((input, axis)), [value]) = (left.rsplit_once(':'), dims.as_slice()) {
            if let Ok(axis) = axis.parse::<usize>() {
                return Ok(Pin::InputAxis {
                    input: input.to_string(),
                    axis,
                    value: *value,
                });
            }
        }
        Ok(Pin::Named {
            name: left.to_string(),
            dims,
        })
    }
}

/// Gives symbolic dims fixed values: each pinned symbol is substituted in
/// every fact, then every node's facts are inferred again in topological
/// order ([`infer_graph`]). Shape subgraphs (Shape/Gather/Concat/Range/Expand)
/// whose inputs became static are left for constant folding and DCE, which a
/// pipeline runs after this pass.
///
/// Fails with bad input when a pin names nothing in the graph, contradicts a
/// fixed dim, gives one symbol two values, or makes an op's inputs inconsistent.
pub struct PinShapes {
    pins: Vec<Pin>,
}

impl PinShapes {
    pub fn new(pins: Vec<Pin>) -> PinShapes {
        PinShapes { pins }
    }
}

impl Pass for PinShapes {
    fn name(&self) -> &'static str {
        "pin_shapes"
    }

    fn run(&self, g: &mut Graph, _: &mut PassCx) -> Result<Changed> {
        let values = resolve(g, &self.pins)?;
        if values.is_empty() {
            return Ok(Changed::No);
        }
        for i in 0..g.value_count() {
            let v = g.value_mut(ValueId(i as u32));
            v.fact.shape = v.fact.shape.substitute(&values);
        }
        infer_graph(g).map_err(|e| match e {
            Error::Node { node, op, msg } => Error::Input(format!(
                "the pinned shapes do not fit node '{node}' ({op}): {msg}"
            )),
            other => other,
        })?;
        Ok(Changed::Yes)
    }
}

/// The value of every symbol the pins fix.
fn resolve(g: &Graph, pins: &[Pin]) -> Result<BTreeMap<SymId, u64>> {
    let mut values: BTreeMap<SymId, (u64, String)> = BTreeMap::new();
    let mut bind = |g: &Graph, dim: &Dim, value: u64, what: &str| -> Result<()> {
        match dim {
            Dim::Fixed(n) if *n == value => Ok(()),
            Dim::Fixed(n) => Err(Error::Input(format!(
                "--pin {what}={value}: that dim is fixed at {n}"
            ))),
            sym => {
                let id = sym.as_symbol().ok_or_else(|| {
                    Error::Input(format!(
                        "--pin {what}: the dim is the expression {}, pin its symbols instead",
                        sym.display(&g.symbols)
                    ))
                })?;
                match values.get(&id) {
                    Some((v, by)) if *v != value => Err(Error::Input(format!(
                        "--pin {what}={value}: symbol {} is already pinned to {v} by {by}",
                        g.symbols.name(id)
                    ))),
                    _ => {
                        values.insert(id, (value, what.to_string()));
                        Ok(())
                    }
                }
            }
        }
    };
    for pin in pins {
        match pin {
            Pin::Named { name, dims } => {
                let symbol = g.symbols.get(name).filter(|_| dims.len() == 1);
                let input = find_input(g, name);
                match (symbol, input) {
                    (Some(_), Some(_)) => {
                        return Err(Error::Input(format!(
                            "--pin {name}: both a symbol and an input have this name; pin {name}:AXIS=VALUE instead"
                        )));
                    }
                    (Some(id), None) => bind(g, &Dim::sym(id), dims[0], name)?,
                    (None, Some(v)) => {
                        let shape = input_dims(g, v, name)?;
                        if shape.len() != dims.len() {
                            return Err(Error::Input(format!(
                                "--pin {name}: {} dims given, the input has rank {}",
                                dims.len(),
                                shape.len()
                            )));
                        }
                        for (axis, (dim, &value)) in shape.iter().zip(dims).enumerate() {
                            bind(g, dim, value, &format!("{name}:{axis}"))?;
                        }
                    }
                    (None, None) => return Err(unknown_name(g, name)),
                }
            }
            Pin::InputAxis { input, axis, value } => {
                let v = find_input(g, input).ok_or_else(|| unknown_name(g, input))?;
                let shape = input_dims(g, v, input)?;
                let dim = shape.get(*axis).ok_or_else(|| {
                    Error::Input(format!(
                        "--pin {input}:{axis}: the input has rank {}",
                        shape.len()
                    ))
                })?;
                bind(g, dim, *value, &format!("{input}:{axis}"))?;
            }
        }
    }
    Ok(values.into_iter().map(|(id, (v, _))| (id, v)).collect())
}

fn find_input(g: &Graph, name: &str) -> Option<ValueId> {
    g.inputs.iter().copied().find(|&v| g.value(v).name == name)
}

fn input_dims(g: &Graph, v: ValueId, name: &str) -> Result<Vec<Dim>> {
    g.fact(v)
        .shape
        .dims()
        .map(<[Dim]>::to_vec)
        .ok_or_else(|| Error::Input(format!("--pin {name}: the input's rank is unknown")))
}

fn unknown_name(g: &Graph, name: &str) -> Error {
    let symbols: Vec<&str> = g.symbols.iter().map(|(_, n)| n).collect();
    let inputs: Vec<&str> = g.inputs.iter().map(|&v| g.value(v).name.as_str()).collect();
    Error::Input(format!(
        "--pin {name}: no symbol or input has this name (symbols: {}; inputs: {})",
        list(&symbols),
        list(&inputs)
    ))
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::compare::compare;
    use crate::ir::eval::run;
    use crate::ir::tensor::Tensor;
    use crate::ir::text::parse;
    use crate::passes::const_fold::ConstantFolding;
    use crate::passes::dce::DeadCodeElimination;
    use crate::passes::manager::{Repeat, RunOptions, Stage, run_stages};
    use ndarray::{ArrayD, IxDyn};

    /// `y = Reshape(x, [Shape(x)[0], -1])`, `ids = Expand(Range(0, Shape(x)[1], 1), [Shape(x)[0], 1])`.
    const DYNAMIC: &str = "graph g {
  input x: f32[N,3,2]
  weight zero: i64[] = [0]
  weight one: i64[] = [1]
  weight minus_one: i64[1] = [-1]
  weight ones: i64[1] = [1]
  weight axes: i64[1] = [0]
  node shape: s: i64[3] = Shape {\"start\":0,\"end\":null} (x)
  node batch: b: i64[] = Gather {\"axis\":0} (s, zero)
  node channels: c: i64[] = Gather {\"axis\":0} (s, one)
  node unsqueeze: b1: i64[1] = Unsqueeze (b, axes)
  node concat: target: i64[2] = Concat {\"axis\":0} (b1, minus_one)
  node reshape: y: f32[N,6] = Reshape {\"allowzero\":false} (x, target)
  node range: r: i64[3] = Range (zero, c, one)
  node target2: t2: i64[2] = Concat {\"axis\":0} (b1, ones)
  node expand: ids: i64[N,3] = Expand (r, t2)
  output y, ids
}
";

    fn pin_and_fold(g: &mut Graph, pins: &[&str]) -> Result<()> {
        let pins = pins.iter().map(|p| p.parse().unwrap()).collect();
        let stages = [
            Stage {
                name: "pin",
                passes: vec![Box::new(PinShapes::new(pins))],
                repeat: Repeat::Once,
            },
            Stage {
                name: "fold",
                passes: vec![Box::new(ConstantFolding), Box::new(DeadCodeElimination)],
                repeat: Repeat::Fixpoint { cap: 8 },
            },
        ];
        run_stages(g, &stages, &RunOptions::default()).map(drop)
    }

    fn input(n: usize) -> Tensor {
        Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[n, 3, 2]), |i| {
            (i[0] * 6 + i[1] * 2 + i[2]) as f32 * 0.5 - 3.0
        }))
    }

    #[test]
    fn pins_parse() {
        assert_eq!(
            "N=2".parse(),
            Ok(Pin::Named {
                name: "N".into(),
                dims: vec![2]
            })
        );
        assert_eq!(
            "image=1x3x224x224".parse(),
            Ok(Pin::Named {
                name: "image".into(),
                dims: vec![1, 3, 224, 224]
            })
        );
        assert_eq!(
            "input:0:1=8".parse(),
            Ok(Pin::InputAxis {
                input: "input:0".into(),
                axis: 1,
                value: 8
            })
        );
        for bad in ["N", "=2", "N=0", "N=two", "x=1x", "x=-1"] {
            assert!(bad.parse::<Pin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pinned_shape_subgraph_folds_to_a_static_graph_with_the_same_numbers() {
        let original = parse(DYNAMIC).unwrap();
        for pins in [&["N=2"][..], &["x:0=2"], &["x=2x3x2"]] {
            let mut g = original.clone();
            pin_and_fold(&mut g, pins).unwrap();
            let ops: Vec<&str> = g.nodes().map(|(_, n)| n.op.name()).collect();
            assert_eq!(ops, ["Reshape"], "{pins:?}");
            for (_, v) in g.values() {
                assert!(
                    v.fact.shape.is_static(),
                    "{pins:?}: {} is not static",
                    v.name
                );
            }
            let before = run(&original, vec![input(2)]).unwrap();
            let after = run(&g, vec![input(2)]).unwrap();
            for (a, b) in after.iter().zip(&before) {
                assert!(compare(a, b).unwrap().within(0.0));
            }
        }
    }

    #[test]
    fn bad_pins_are_bad_input_and_say_why() {
        let cases = [
            (
                &["M=2"][..],
                "no symbol or input has this name (symbols: N; inputs: x)",
            ),
            (&["x:1=4"], "that dim is fixed at 3"),
            (&["x:7=4"], "the input has rank 3"),
            (&["x=2x3"], "2 dims given, the input has rank 3"),
            (&["N=2", "x:0=3"], "symbol N is already pinned to 2 by N"),
        ];
        for (pins, needle) in cases {
            let mut g = parse(DYNAMIC).unwrap();
            let err = pin_and_fold(&mut g, pins).unwrap_err();
            assert_eq!(err.exit_code(), crate::exit::BAD_INPUT);
            assert!(err.to_string().contains(needle), "{pins:?}: {err}");
        }
    }
}
