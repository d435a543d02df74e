//! What every output format implements, and the rule that nothing is written
//! while any node is unsupported.
//!
//! `emit` takes the destination path rather than a `Write`: some artifacts
//! are several files (ONNX with external data) or a folder (Core ML
//! `.mlpackage`), and every file must be written beside its destination and
//! renamed into place only when complete ([`crate::output::AtomicFile`]),
//! which needs the path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ir::error::{Error, Result, Unsupported};
use crate::ir::{Graph, NodeId};
use crate::passes::Stage;
use crate::progress::Progress;

/// Whether a target can express one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Support {
    /// The target has this op as it is.
    Native,
    /// The target's legalization stages rewrite the node into a supported form (why).
    AfterLegalize(String),
    /// The target cannot express the node (why).
    Unsupported(String),
}

/// What an emit wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmitReport {
    /// Every file written, the main artifact first.
    pub files: Vec<PathBuf>,
    /// Total bytes over `files`.
    pub bytes: u64,
    /// Target facts worth telling the user (`opset 17`, `external data: 3 tensors`).
    pub notes: Vec<String>,
    /// What the user should know before shipping the artifact; printed as `warning: ...`.
    pub warnings: Vec<String>,
    /// For the coverage report: each IR node's name and the target
    /// operators it was written as.
    pub lowered: BTreeMap<String, Vec<String>>,
}

/// An output format.
pub trait Target {
    /// The name `--target` takes.
    fn name(&self) -> &'static str;

    /// Rewrites that turn nodes the target has in another form into ones it
    /// supports; run after the optimization pipeline, before [`Target::emit`].
    fn legalize(&self) -> Vec<Stage>;

    fn support(&self, g: &Graph, node: NodeId) -> Support;

    /// Whole-graph requirements checked before per-node support (e.g. static
    /// input shapes), so the user gets the one fix instead of every node it
    /// affects.
    fn require_graph(&self, _g: &Graph) -> Result<()> {
        Ok(())
    }

    /// Writes the artifact for `g` at `out` (plus any side files next to it).
    /// Implementations call [`require_supported`] first; nothing may be left
    /// at `out` when this fails.
    fn emit(&self, g: &Graph, out: &Path, progress: &dyn Progress) -> Result<EmitReport>;
}

/// `support` for every live node, in topological order.
pub fn coverage(target: &dyn Target, g: &Graph) -> Result<Vec<(NodeId, Support)>> {
    Ok(g.topo_order()?
        .into_iter()
        .map(|id| (id, target.support(g, id)))
        .collect())
}

/// Fails with one [`Error::Unsupported`] listing every node the target cannot
/// express as the graph stands (a node still waiting for legalization counts:
/// emit comes after legalization).
pub fn require_supported(target: &dyn Target, g: &Graph) -> Result<()> {
    let unsupported: Vec<Unsupported> = coverage(target, g)?
        .into_iter()
        .filter_map(|(id, support)| {
            let reason = match support {
                Support::Native => return None,
                Support::AfterLegalize(why) => format!("not legalized: {why}"),
                Support::Unsupported(why) => why,
            };
            let node = g.node(id);
            Some(Unsupported {
                node: node.name.clone(),
                op: custom_aware_name(&node.op),
                reason: format!("{} target: {reason}", target.name()),
            })
        })
        .collect();
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(Error::Unsupported(unsupported))
    }
}

/// For targets that need static shapes: fails with one [`Error::Unsupported`]
/// naming every graph input dim that is still symbolic and the `--pin` that
/// would fix it (exit 3).
pub fn require_static_inputs(target: &dyn Target, g: &Graph) -> Result<()> {
    let mut dynamic = Vec::new();
    for &v in &g.inputs {
        let value = g.value(v);
        let Some(dims) = value.fact.shape.dims() else {
            dynamic.push(Unsupported {
                node: value.name.clone(),
                op: "graph input".into(),
                reason: format!(
                    "{} target needs a static shape and the rank is unknown: pin it with --pin {}=D0xD1x...",
                    target.name(),
                    value.name
                ),
            });
            continue;
        };
        for (axis, dim) in dims.iter().enumerate() {
            if dim.fixed().is_some() {
                continue;
            }
            let fix = match dim.as_symbol() {
                Some(s) => format!(
                    "--pin {}=VALUE or --pin {}:{axis}=VALUE",
                    g.symbols.name(s),
                    value.name
                ),
                None => format!("--pin {}:{axis}=VALUE", value.name),
            };
            dynamic.push(Unsupported {
                node: value.name.clone(),
                op: "graph input".into(),
                reason: format!(
                    "{} target needs static shapes; dim {axis} is {}: pin it with {fix}",
                    target.name(),
                    dim.display(&g.symbols)
                ),
            });
        }
    }
    if dynamic.is_empty() {
        Ok(())
    } else {
        Err(Error::Unsupported(dynamic))
    }
}

/// The op's name, with the domain of a custom op (`com.example.Frobnicate`).
fn custom_aware_name(op: &crate::ir::Op) -> String {
    match op {
        crate::ir::Op::Custom(c) if !c.domain.is_empty() => format!("{}.{}", c.domain, c.name),
        other => other.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::text::parse;
    use crate::passes::pin_shapes::{Pin, PinShapes};
    use crate::passes::{Pass, PassCx};

    /// A target that needs static shapes and supports everything else.
    struct StaticOnly;

    impl Target for StaticOnly {
        fn name(&self) -> &'static str {
            "static"
        }
        fn legalize(&self) -> Vec<Stage> {
            Vec::new()
        }
        fn support(&self, _: &Graph, _: NodeId) -> Support {
            Support::Native
        }
        fn emit(&self, _: &Graph, _: &Path, _: &dyn Progress) -> Result<EmitReport> {
            unreachable!("not emitted in tests")
        }
    }

    #[test]
    fn dynamic_inputs_name_the_dim_and_the_pin() {
        let mut g = parse(
            "graph g {
  input x: f32[N,3,H,8]
  node r: y: f32[N,3,H,8] = Relu (x)
  output y
}
",
        )
        .unwrap();
        let err = require_static_inputs(&StaticOnly, &g).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::UNSUPPORTED);
        let text = err.to_string();
        assert!(
            text.contains("dim 0 is N: pin it with --pin N=VALUE or --pin x:0=VALUE"),
            "{text}"
        );
        assert!(text.contains("dim 2 is H"), "{text}");

        let pins = vec![
            Pin::Named {
                name: "N".into(),
                dims: vec![1],
            },
            Pin::Named {
                name: "H".into(),
                dims: vec![8],
            },
        ];
        PinShapes::new(pins)
            .run(&mut g, &mut PassCx::default())
            .unwrap();
        require_static_inputs(&StaticOnly, &g).unwrap();
    }
}
