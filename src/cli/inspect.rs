//! `edgeconv inspect`: a summary of a model built from shapes and dtypes only,
//! so that inspecting never reads weight bytes.

use std::collections::BTreeMap;
use std::fmt::Write;

use edgeconv::ir::graph::{Fact, Graph};
use edgeconv::ir::shape::Shape;
use serde::Serialize;
use serde_json::Value as Json;

/// How many of the largest weights the summary lists.
const LARGEST_COUNT: usize = 10;

/// The summary `inspect` prints; its JSON form is the `--json` contract
/// documented in docs/CLI.md.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub model: String,
    pub format: String,
    pub producer: Option<String>,
    pub architecture: Option<String>,
    pub opsets: BTreeMap<String, i64>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub symbols: Vec<String>,
    pub nodes: usize,
    pub ops: BTreeMap<String, usize>,
    pub weights: usize,
    pub params: u64,
    pub params_bytes: u64,
    pub params_by_dtype: BTreeMap<String, u64>,
    pub params_bytes_by_dtype: BTreeMap<String, u64>,
    pub largest_tensors: Vec<TensorInfo>,
}

/// A graph input or output.
#[derive(Debug, Serialize)]
pub struct ValueInfo {
    pub name: String,
    /// `None` when the importer could not tell.
    pub dtype: Option<String>,
    /// Numbers for fixed dims, strings for symbolic ones; `None` when unranked.
    pub shape: Option<Vec<Json>>,
}

/// One weight.
#[derive(Debug, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub params: u64,
    pub bytes: u64,
    pub role: Option<String>,
}

impl Summary {
    /// Summarizes `g`, imported from `model`.
    pub fn of(g: &Graph, model: &str) -> Summary {
        let value_info = |ids: &[edgeconv::ir::ValueId]| -> Vec<ValueInfo> {
            ids.iter()
                .map(|&id| {
                    let value = g.value(id);
                    ValueInfo {
                        name: value.name.clone(),
                        dtype: value.fact.dtype.map(|d| d.name()),
                        shape: shape_json(g, &value.fact),
                    }
                })
                .collect()
        };
        let mut ops = BTreeMap::new();
        for (_, node) in g.nodes() {
            *ops.entry(node.op.name().to_string()).or_default() += 1;
        }
        let mut params_by_dtype = BTreeMap::new();
        let mut params_bytes_by_dtype = BTreeMap::new();
        for (_, w) in g.weights.iter() {
            *params_by_dtype.entry(w.dtype.name()).or_default() += w.element_count();
            *params_bytes_by_dtype.entry(w.dtype.name()).or_default() += w.data.len() as u64;
        }
        let mut largest: Vec<TensorInfo> = g
            .weights
            .iter()
            .map(|(_, w)| TensorInfo {
                name: w.name.clone(),
                dtype: w.dtype.name(),
                shape: w.shape.clone(),
                params: w.element_count(),
                bytes: w.data.len() as u64,
                role: w.role.map(|r| format!("{r:?}")),
            })
            .collect();
        largest.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        largest.truncate(LARGEST_COUNT);
        let meta = &g.metadata;
        Summary {
            model: model.to_string(),
            format: meta.source_format.clone(),
            producer: meta.producer.clone(),
            architecture: meta.architecture.clone(),
            opsets: meta.opsets.clone(),
            inputs: value_info(&g.inputs),
            outputs: value_info(&g.outputs),
            symbols: g.symbols.iter().map(|(_, name)| name.to_string()).collect(),
            nodes: g.node_count(),
            ops,
            weights: g.weights.len(),
            params: g.param_count(),
            params_bytes: g.weights.total_bytes(),
            params_by_dtype,
            params_bytes_by_dtype,
            largest_tensors: largest,
        }
    }

    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, text: String| {
            writeln!(out, "{label:<14}{text}").expect("write to string");
        };
        line("model", format!("{} ({})", self.model, self.format));
        if let Some(producer) = &self.producer {
            line("producer", producer.clone());
        }
        if let Some(arch) = &self.architecture {
            line("architecture", arch.clone());
        }
        if !self.opsets.is_empty() {
            let opsets: Vec<String> = self
                .opsets
                .iter()
                .map(|(domain, v)| {
                    let domain = if domain.is_empty() { "ai.onnx" } else { domain };
                    format!("{domain} {v}")
                })
                .collect();
            line("opsets", opsets.join(", "));
        }
        line("inputs", values_text(&self.inputs));
        line("outputs", values_text(&self.outputs));
        if !self.symbols.is_empty() {
            line("symbols", self.symbols.join(", "));
        }
        let ops = if self.ops.is_empty() {
            "none".to_string()
        } else {
            let mut ops: Vec<(&String, &usize)> = self.ops.iter().collect();
            ops.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let list: Vec<String> = ops.iter().map(|(op, n)| format!("{op} {n}")).collect();
            format!("{} nodes: {}", self.nodes, list.join(", "))
        };
        line("ops", ops);
        line(
            "parameters",
            format!(
                "{} in {} weights, {}",
                group_digits(self.params),
                self.weights,
                human_bytes(self.params_bytes)
            ),
        );
        for (dtype, count) in &self.params_by_dtype {
            let bytes = self.params_bytes_by_dtype.get(dtype).copied().unwrap_or(0);
            line(
                &format!("  {dtype}"),
                format!("{}, {}", group_digits(*count), human_bytes(bytes)),
            );
        }
        if !self.largest_tensors.is_empty() {
            writeln!(out, "largest tensors").expect("write to string");
            let width = self
                .largest_tensors
                .iter()
                .map(|t| t.name.len())
                .max()
                .unwrap_or(0);
            for t in &self.largest_tensors {
                let shape: Vec<String> = t.shape.iter().map(usize::to_string).collect();
                let kind = format!("{}[{}]", t.dtype, shape.join(","));
                let role = t.role.as_deref().unwrap_or("");
                writeln!(
                    out,
                    "  {:<width$}  {kind:<20} {:>10}  {role}",
                    t.name,
                    human_bytes(t.bytes)
                )
                .expect("write to string");
            }
        }
        out
    }
}

fn shape_json(g: &Graph, fact: &Fact) -> Option<Vec<Json>> {
    let Shape::Ranked(dims) = &fact.shape else {
        return None;
    };
    Some(
        dims.iter()
            .map(|d| match d.fixed() {
                Some(n) => Json::from(n),
                None => Json::from(d.display(&g.symbols).to_string()),
            })
            .collect(),
    )
}

fn values_text(values: &[ValueInfo]) -> String {
    if values.is_empty() {
        return "none".into();
    }
    let items: Vec<String> = values
        .iter()
        .map(|v| {
            let dtype = v.dtype.as_deref().unwrap_or("?");
            let shape = match &v.shape {
                Some(dims) => {
                    let dims: Vec<String> = dims
                        .iter()
                        .map(|d| match d {
                            Json::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    format!("[{}]", dims.join(","))
                }
                None => "[?]".into(),
            };
            format!("{}: {dtype}{shape}", v.name)
        })
        .collect();
    items.join(", ")
}

fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use edgeconv::ir::dtype::DType;
    use edgeconv::ir::shape::Dim;
    use edgeconv::ir::weights::Weight;

    #[test]
    fn numbers_read_well() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(1234567), "1,234,567");
        assert_eq!(group_digits(123456), "123,456");
        assert_eq!(human_bytes(1000), "1000 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn summary_counts_weights_by_dtype_and_size() {
        let mut g = Graph::new("m");
        let n = g.symbols.intern("N");
        g.add_input(
            "x",
            Fact::new(DType::F32, Shape::Ranked(vec![Dim::sym(n), Dim::Fixed(4)])),
        );
        for (name, dtype, shape) in [
            ("small", DType::F16, vec![2]),
            ("big", DType::F32, vec![4, 8]),
            ("mid", DType::F32, vec![4]),
        ] {
            let bytes = dtype
                .bytes_for(shape.iter().product::<usize>() as u64)
                .unwrap();
            let w = Weight::new(name, dtype, shape, Bytes::from(vec![0; bytes as usize])).unwrap();
            g.add_weight(w);
        }
        let s = Summary::of(&g, "m.onnx");
        assert_eq!(s.params, 38);
        assert_eq!(s.params_bytes, 4 + 128 + 16);
        assert_eq!(s.params_by_dtype["f32"], 36);
        assert_eq!(s.params_bytes_by_dtype["f16"], 4);
        let order: Vec<&str> = s.largest_tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(order, ["big", "mid", "small"]);
        assert_eq!(s.symbols, ["N"]);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["inputs"][0]["shape"], serde_json::json!(["N", 4]));
        let text = s.to_text();
        assert!(text.contains("x: f32[N,4]"), "{text}");
        assert!(text.contains("38 in 3 weights"), "{text}");
    }
}
