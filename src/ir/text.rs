//! A readable text form of the IR, printed by `edgeconv inspect --ir` and parsed
//! back by tests (so pass tests can state graphs as text).
//!
//! ```text
//! graph mlp {
//!   input x: f32[N,16]
//!   weight w: f32[2] = [0.5,-1]
//!   weight big: f32[16,32] = <2048 bytes>
//!   node fc: h: f32[N,32] = Gemm {"alpha":1.0,"beta":1.0,"trans_a":false,"trans_b":false} (x, big, _)
//!   node act: y: f32[N,32] = Relu (h)
//!   output y
//! }
//! ```
//!
//! Names matching `[A-Za-z0-9_./-]+` print bare, others as JSON strings; `_`
//! is an absent optional input. Quantized values append
//! `@q(scale,zero_point)` or `@q(axis=A,scales,zero_points|_)`.

use std::collections::HashMap;
use std::fmt::Write;

use bytes::Bytes;

use super::dtype::DType;
use super::error::{Error, Result};
use super::graph::{Fact, Graph, QuantParams, ValueDef, ValueId};
use super::ops::Op;
use super::shape::Shape;
use super::tensor::Tensor;
use super::weights::Weight;

#[derive(Clone, Debug)]
pub struct PrintOptions {
    /// Weights with at most this many elements print their values inline.
    pub inline_weight_limit: usize,
}

impl Default for PrintOptions {
    fn default() -> Self {
        PrintOptions {
            inline_weight_limit: 16,
        }
    }
}

fn is_bare(name: &str) -> bool {
    !name.is_empty()
        && name != "_"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
}

fn name_text(name: &str) -> String {
    if is_bare(name) {
        name.to_string()
    } else {
        serde_json::to_string(name).expect("strings serialize")
    }
}

fn fact_text(g: &Graph, fact: &Fact) -> String {
    let mut s = match fact.dtype {
        Some(d) => d.name(),
        None => "?".to_string(),
    };
    write!(s, "{}", fact.shape.display(&g.symbols)).expect("write to string");
    match &fact.quant {
        None => {}
        Some(QuantParams::PerTensor { scale, zero_point }) => {
            write!(s, " @q({scale:?},{zero_point})").expect("write to string");
        }
        Some(QuantParams::PerAxis {
            axis,
            scales,
            zero_points,
        }) => {
            let weight_name = |w: super::graph::WeightId| name_text(&g.weights.get(w).name);
            let zps = zero_points.map_or("_".to_string(), weight_name);
            write!(s, " @q(axis={axis},{},{zps})", weight_name(*scales)).expect("write to string");
        }
    }
    s
}

fn weight_data_text(w: &Weight, opts: &PrintOptions) -> String {
    let count = w.element_count() as usize;
    if count <= opts.inline_weight_limit {
        if let Ok(t) = Tensor::from_bytes(w.dtype, &w.shape, &w.data) {
            let values: Vec<String> = t.to_f64_vec().iter().map(|v| format!("{v}")).collect();
            return format!("[{}]", values.join(","));
        }
    }
    format!("<{} bytes>", w.data.len())
}

/// The text form of a graph.
pub fn print(g: &Graph, opts: &PrintOptions) -> String {
    let mut out = String::new();
    let v = |id: Option<ValueId>| id.map_or("_".to_string(), |id| name_text(&g.value(id).name));
    writeln!(
        out,
        "graph {} {{",
        name_text(if g.name.is_empty() { "main" } else { &g.name })
    )
    .expect("write to string");
    for &i in &g.inputs {
        let value = g.value(i);
        writeln!(
            out,
            "  input {}: {}",
            name_text(&value.name),
            fact_text(g, &value.fact)
        )
        .expect("write to string");
    }
    let live: std::collections::HashSet<ValueId> =
        super::verify::live_values(g).into_iter().collect();
    for (_, value) in g.values().filter(|(id, _)| live.contains(id)) {
        if let ValueDef::Weight(w) = value.def {
            let weight = g.weights.get(w);
            writeln!(
                out,
                "  weight {}: {} = {}",
                name_text(&value.name),
                fact_text(g, &value.fact),
                weight_data_text(weight, opts)
            )
            .expect("write to string");
        }
    }
    let order = g
        .topo_order()
        .unwrap_or_else(|_| g.nodes().map(|(id, _)| id).collect());
    for id in order {
        let node = g.node(id);
        let outs: Vec<String> = node
            .outputs
            .iter()
            .map(|&o| format!("{}: {}", v(Some(o)), fact_text(g, g.fact(o))))
            .collect();
        let attrs = node
            .op
            .attrs_json()
            .map(|a| format!(" {a}"))
            .unwrap_or_default();
        let args: Vec<String> = node.inputs.iter().map(|&i| v(i)).collect();
        writeln!(
            out,
            "  node {}: {} = {}{attrs} ({})",
            name_text(&node.name),
            outs.join(", "),
            node.op.kind().name(),
            args.join(", ")
        )
        .expect("write to string");
    }
    let outs: Vec<String> = g.outputs.iter().map(|&o| v(Some(o))).collect();
    writeln!(out, "  output {}", outs.join(", ")).expect("write to string");
    out.push_str("}\n");
    out
}

/// A cursor over one line of text form.
struct Cursor<'a> {
    line: usize,
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::Input(format!(
            "IR text line {}, column {}: {}",
            self.line,
            self.pos + 1,
            msg.into()
        ))
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) -> Result<()> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.err(format!("expected '{token}'")))
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.rest().is_empty()
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        self.skip_ws();
        let mut stream = serde_json::Deserializer::from_str(self.rest()).into_iter::<T>();
        match stream.next() {
            Some(Ok(v)) => {
                self.pos += stream.byte_offset();
                Ok(v)
            }
            Some(Err(e)) => Err(self.err(e.to_string())),
            None => Err(self.err("expected a JSON value")),
        }
    }

    fn name(&mut self) -> Result<String> {
        self.skip_ws();
        if self.rest().starts_with('"') {
            return self.json::<String>();
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.err("expected a name"));
        }
        let name = self.rest()[..len].to_string();
        self.pos += len;
        Ok(name)
    }

    /// `f32[1,N]` with an optional `@q(...)` suffix (per-axis refers to weights by name).
    fn fact(&mut self, g: &mut Graph, weights: &HashMap<String, ValueId>) -> Result<Fact> {
        self.skip_ws();
        let open = self
            .rest()
            .find('[')
            .ok_or_else(|| self.err("expected a type"))?;
        let dtype_text = &self.rest()[..open];
        let dtype = match dtype_text {
            "?" => None,
            t => Some(DType::parse(t).ok_or_else(|| self.err(format!("unknown dtype '{t}'")))?),
        };
        self.pos += open;
        let close = self
            .rest()
            .find(']')
            .ok_or_else(|| self.err("unclosed shape"))?;
        let shape_text = &self.rest()[..=close];
        let shape = Shape::parse(shape_text, &mut g.symbols)
            .ok_or_else(|| self.err(format!("bad shape '{shape_text}'")))?;
        self.pos += close + 1;
        let quant = if self.eat("@q(") {
            if self.eat("axis=") {
                let axis: usize = self.json()?;
                self.expect(",")?;
                let weight_id = |c: &Self, name: String| -> Result<super::graph::WeightId> {
                    match weights.get(&name).map(|&v| g.value(v).def) {
                        Some(ValueDef::Weight(w)) => Ok(w),
                        _ => Err(c.err(format!("no weight named '{name}'"))),
                    }
                };
                let scales_name = self.name()?;
                let scales = weight_id(self, scales_name)?;
                self.expect(",")?;
                let zero_points = if self.eat("_") {
                    None
                } else {
                    let zp_name = self.name()?;
                    Some(weight_id(self, zp_name)?)
                };
                self.expect(")")?;
                Some(QuantParams::PerAxis {
                    axis,
                    scales,
                    zero_points,
                })
            } else {
                let scale: f32 = self.json()?;
                self.expect(",")?;
                let zero_point: i32 = self.json()?;
                self.expect(")")?;
                Some(QuantParams::PerTensor { scale, zero_point })
            }
        } else {
            None
        };
        Ok(Fact {
            dtype,
            shape,
            quant,
        })
    }
}

fn weight_from_values(name: &str, fact: &Fact, values: &[f64]) -> Result<Weight> {
    let dtype = fact
        .dtype
        .ok_or_else(|| Error::Input(format!("weight '{name}' needs a dtype")))?;
    let shape = fact
        .shape
        .as_fixed()
        .ok_or_else(|| Error::Input(format!("weight '{name}' needs a static shape")))?;
    let t = Tensor::F64(
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), values.to_vec())
            .map_err(|_| Error::Input(format!("weight '{name}': values do not fill {shape:?}")))?,
    );
    let data = t.cast(dtype)?.to_bytes();
    Weight::new(name, dtype, shape, Bytes::from(data))
}

/// Parses the text form back into a graph. Weights printed as `<N bytes>` cannot
/// be parsed back (their data is not in the text).
pub fn parse(text: &str) -> Result<Graph> {
    let mut g = Graph::new("");
    g.metadata.source_format = "ir-text".into();
    let mut names: HashMap<String, ValueId> = HashMap::new();
    let mut closed = false;
    for (i, raw) in text.lines().enumerate() {
        let mut c = Cursor {
            line: i + 1,
            text: raw,
            pos: 0,
        };
        if c.at_end() || c.rest().starts_with('#') {
            continue;
        }
        if closed {
            return Err(c.err("text after the closing '}'"));
        }
        if c.eat("graph ") {
            g.name = c.name()?;
            c.expect("{")?;
        } else if c.eat("input ") {
            let name = c.name()?;
            c.expect(":")?;
            let fact = c.fact(&mut g, &names)?;
            let id = g.add_input(name.clone(), fact);
            names.insert(name, id);
        } else if c.eat("weight ") {
            let name = c.name()?;
            c.expect(":")?;
            let fact = c.fact(&mut g, &names)?;
            c.expect("=")?;
            if c.rest().trim_start().starts_with('<') {
                return Err(c.err(format!("weight '{name}' data is elided")));
            }
            let values: Vec<f64> = c.json()?;
            let w = weight_from_values(&name, &fact, &values).map_err(|e| c.err(e.to_string()))?;
            let id = g.add_weight(w);
            g.value_mut(id).fact.quant = fact.quant;
            names.insert(name, id);
        } else if c.eat("node ") {
            let node_name = c.name()?;
            c.expect(":")?;
            let mut outs = Vec::new();
            loop {
                let name = c.name()?;
                c.expect(":")?;
                outs.push((name, c.fact(&mut g, &names)?));
                if !c.eat(",") {
                    break;
                }
            }
            c.expect("=")?;
            let kind = c.name()?;
            c.skip_ws();
            let attrs = if c.rest().starts_with('{') {
                Some(c.json::<serde_json::Value>()?)
            } else {
                None
            };
            let op = Op::from_name_and_attrs(&kind, attrs).map_err(|e| c.err(e))?;
            c.expect("(")?;
            let mut inputs = Vec::new();
            if !c.eat(")") {
                loop {
                    if c.eat("_") {
                        inputs.push(None);
                    } else {
                        let n = c.name()?;
                        let id = *names
                            .get(&n)
                            .ok_or_else(|| c.err(format!("'{n}' is used before it is defined")))?;
                        inputs.push(Some(id));
                    }
                    if c.eat(")") {
                        break;
                    }
                    c.expect(",")?;
                }
            }
            let out_names: Vec<String> = outs.iter().map(|o| o.0.clone()).collect();
            let (_, ids) = g.add_node(node_name, op, inputs, outs);
            for (n, id) in out_names.into_iter().zip(ids) {
                names.insert(n, id);
            }
        } else if c.eat("output ") {
            loop {
                let n = c.name()?;
                let id = *names
                    .get(&n)
                    .ok_or_else(|| c.err(format!("output '{n}' is not defined")))?;
                g.outputs.push(id);
                if !c.eat(",") {
                    break;
                }
            }
        } else if c.eat("}") {
            closed = true;
        } else {
            return Err(c.err("expected graph, input, weight, node, output or '}'"));
        }
        if !c.at_end() {
            return Err(c.err("unexpected text"));
        }
    }
    if !closed {
        return Err(Error::Input("IR text: missing the closing '}'".into()));
    }
    super::verify::verify(&g)?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"graph sample {
  input x: f32[N,4]
  weight w: f32[4,2] = [1,2,3,4,5,6,7,8]
  weight "b:0": f32[2] = [0.5,-1]
  weight s: f32[2] = [0.1,0.2]
  node mm: h: f32[N,2] = MatMul (x, w)
  node add: "y/0": f32[N,2] = Add (h, "b:0")
  node clip: z: f32[N,2] = Clip (y/0, _, _)
  node q: zq: i8[N,2] @q(axis=1,s,_) = Identity (z)
  node conv: k: ?[?] = Custom {"domain":"x","name":"K","attrs":{}} (zq)
  output z, k
}
"#;

    #[test]
    fn print_parse_round_trip() {
        let g = parse(SAMPLE).unwrap();
        assert_eq!(g.node_count(), 5);
        let printed = print(&g, &PrintOptions::default());
        let again = parse(&printed).unwrap();
        assert_eq!(print(&again, &PrintOptions::default()), printed);
        assert!(
            printed.contains(r#"weight "b:0": f32[2] = [0.5,-1]"#),
            "{printed}"
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let bad = "graph g {\n  input x: f32[2]\n  node n: y: f32[2] = Relu (nope)\n}\n";
        let err = parse(bad).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("'nope' is used before it is defined"), "{err}");
    }

    #[test]
    fn elided_weights_do_not_parse() {
        let text = "graph g {\n  weight w: f32[100] = <400 bytes>\n  output w\n}\n";
        assert!(parse(text).unwrap_err().to_string().contains("elided"));
    }
}
