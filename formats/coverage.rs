//! The per-target operator coverage report: for every node of the graph as
//! emitted, whether the target supports it and what it became. `convert`
//! writes it beside the artifact as `<name>.coverage.json` and
//! `<name>.coverage.md`, and prints it when it refuses a model.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::target::{Support, Target, coverage};
use crate::ir::Graph;
use crate::ir::error::{Error, Result};
use crate::output::write_atomically;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CoverageReport {
    pub target: String,
    pub model: String,
    pub nodes: usize,
    pub supported: usize,
    /// One row per op kind, sorted by op name.
    pub ops: Vec<OpRow>,
    /// Every node the target cannot express (empty when the artifact was written).
    pub unsupported: Vec<UnsupportedNode>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpRow {
    pub op: String,
    pub count: usize,
    /// `native`, `after_legalize` or `unsupported`; the worst over the op's nodes.
    pub status: &'static str,
    /// The target operators these nodes became, with counts (empty before emit).
    pub lowered_to: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnsupportedNode {
    pub node: String,
    pub op: String,
    pub reason: String,
}

impl CoverageReport {
    /// The report for `g` as it stands (after legalization). `lowered` maps a
    /// node name to the target operators it was written as (from the emit).
    pub fn of(
        target: &dyn Target,
        g: &Graph,
        model: &str,
        lowered: &BTreeMap<String, Vec<String>>,
    ) -> Result<CoverageReport> {
        let rows = coverage(target, g)?;
        let mut ops: BTreeMap<String, OpRow> = BTreeMap::new();
        let mut unsupported = Vec::new();
        for (id, support) in &rows {
            let node = g.node(*id);
            let op = node.op.name().to_string();
            let (status, rank) = match support {
                Support::Native => ("native", 0),
                Support::AfterLegalize(_) => ("after_legalize", 1),
                Support::Unsupported(_) => ("unsupported", 2),
            };
            if let Support::Unsupported(why) | Support::AfterLegalize(why) = support {
                unsupported.push(UnsupportedNode {
                    node: node.name.clone(),
                    op: op.clone(),
                    reason: match support {
                        Support::AfterLegalize(_) => format!("not legalized: {why}"),
                        _ => why.clone(),
                    },
                });
            }
            let row = ops.entry(op.clone()).or_insert_with(|| OpRow {
                op,
                count: 0,
                status: "native",
                lowered_to: BTreeMap::new(),
            });
            row.count += 1;
            if rank > status_rank(row.status) {
                row.status = status;
            }
            for target_op in lowered.get(&node.name).into_iter().flatten() {
                *row.lowered_to.entry(target_op.clone()).or_default() += 1;
            }
        }
        Ok(CoverageReport {
            target: target.name().to_string(),
            model: model.to_string(),
            nodes: rows.len(),
            supported: rows.len() - unsupported.len(),
            ops: ops.into_values().collect(),
            unsupported,
        })
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("the report serializes");
        text.push('\n');
        text
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# {} coverage: {}\n", self.target, self.model);
        let _ = writeln!(
            md,
            "{} of {} nodes supported.\n",
            self.supported, self.nodes
        );
        md.push_str("| op | nodes | status | written as |\n| --- | ---: | --- | --- |\n");
        for row in &self.ops {
            let lowered: Vec<String> = row
                .lowered_to
                .iter()
                .map(|(op, n)| format!("{op} x{n}"))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                row.op,
                row.count,
                row.status,
                lowered.join(", ")
            );
        }
        if !self.unsupported.is_empty() {
            md.push_str("\n## Unsupported\n\n| node | op | reason |\n| --- | --- | --- |\n");
            for u in &self.unsupported {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    u.node,
                    u.op,
                    u.reason.replace('|', "\\|")
                );
            }
        }
        md
    }

    /// Writes `<artifact>.coverage.json` and `<artifact>.coverage.md` (the
    /// artifact's extension replaced) and returns their paths.
    pub fn write_beside(&self, artifact: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (ext, text) in [
            ("coverage.json", self.to_json()),
            ("coverage.md", self.to_markdown()),
        ] {
            let path = artifact.with_extension(ext);
            write_atomically(&path, text.as_bytes()).map_err(|e| Error::io(&path, e))?;
            written.push(path);
        }
        Ok(written)
    }
}

fn status_rank(status: &str) -> u8 {
    match status {
        "native" => 0,
        "after_legalize" => 1,
        _ => 2,
    }
}
