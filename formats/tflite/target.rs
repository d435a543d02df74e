//! The TFLite [`Target`]: legalize, check, lower, write.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;

use super::legalize;
use super::lower::{IoLayout, LowerOptions, lower, support};
use super::model::TflModel;
use super::quantize::{Int8Options, NodeFilter, bias, dynamic, int8};
use super::schema as tfl;
use super::write::{OffsetBuffers, write_model};
use crate::calibration::calibrate::Calibration;
use crate::formats::target::{
    EmitReport, Support, Target, require_static_inputs, require_supported,
};
use crate::ir::error::{Error, Result, Unsupported};
use crate::ir::{Graph, NodeId};
use crate::passes::{Stage, presets};
use crate::progress::Progress;

/// The `Model.metadata` entry carrying how the file was made (JSON).
pub const PROVENANCE_KEY: &str = "edgeconv_provenance";

#[derive(Clone, Debug, Default)]
pub struct TfliteTarget {
    pub lower: LowerOptions,
    pub offset_buffers: OffsetBuffers,
    /// JSON stored under [`PROVENANCE_KEY`]: source file hash, edgeconv
    /// version, options. Left out when `None`.
    pub provenance: Option<String>,
    pub quant: Quantization,
}

/// Integer quantization of the lowered model (`--quant fp16` is a lowering
/// option, [`LowerOptions::fp16_weights`]).
#[derive(Clone, Debug, Default)]
pub enum Quantization {
    #[default]
    None,
    /// Full integer; `calibration` (of the legalized graph) must be set
    /// before `emit`.
    Int8 {
        calibration: Option<Calibration>,
        options: Int8Options,
    },
    /// int8 weights, float activations.
    Dynamic { keep_float: NodeFilter },
}

/// A lowered and quantized model, with what quantization decided.
pub struct Built {
    pub model: TflModel,
    /// The graph the model computes when quantization changed it (biases
    /// corrected); `None`: the graph given.
    pub graph: Option<Graph>,
    pub int8: Option<int8::Int8Summary>,
    pub dynamic: Option<dynamic::DynamicSummary>,
}

impl TfliteTarget {
    /// Lowers `g` (legalized, checked) and quantizes it as asked.
    pub fn build(&self, g: &Graph) -> Result<Built> {
        let mut model = lower(g, &self.lower)?;
        let mut built = Built {
            model: TflModel::default(),
            graph: None,
            int8: None,
            dynamic: None,
        };
        match &self.quant {
            Quantization::None => {}
            Quantization::Int8 {
                calibration,
                options,
            } => {
                let calibration = calibration.as_ref().ok_or_else(|| {
                    Error::Input("int8 quantization needs calibration data (--calib)".into())
                })?;
                let mut summary = int8::quantize(&mut model, g, calibration, options)?;
                if options.bias_correction {
                    // Which nodes are int8 does not depend on bias values,
                    // so the second pass makes the same decisions.
                    let corrected = bias::correct(g, &summary.int8_nodes, calibration)?;
                    model = lower(&corrected, &self.lower)?;
                    summary = int8::quantize(&mut model, &corrected, calibration, options)?;
                    built.graph = Some(corrected);
                }
                built.int8 = Some(summary);
            }
            Quantization::Dynamic { keep_float } => {
                built.dynamic = Some(dynamic::quantize(&mut model, keep_float));
            }
        }
        built.model = model;
        Ok(built)
    }
}

impl Target for TfliteTarget {
    fn name(&self) -> &'static str {
        "tflite"
    }

    fn legalize(&self) -> Vec<Stage> {
        let mut stages = vec![legalize::stage()];
        if matches!(self.quant, Quantization::Int8 { .. }) {
            stages.push(legalize::int8_stage());
        }
        // Decompositions leave constants to fold and values nothing reads.
        stages.push(
            presets::stage("tflite_cleanup", presets::CLEANUP).expect("the cleanup passes exist"),
        );
        stages
    }

    fn support(&self, g: &Graph, node: NodeId) -> Support {
        support(g, node)
    }

    fn require_graph(&self, g: &Graph) -> Result<()> {
        require_static_inputs(self, g)
    }

    fn emit(&self, g: &Graph, out: &Path, progress: &dyn Progress) -> Result<EmitReport> {
        require_static_inputs(self, g)?;
        require_supported(self, g)?;
        require_nonempty_outputs(g)?;
        let Built {
            mut model,
            int8,
            dynamic,
            ..
        } = self.build(g)?;
        model.description = format!("edgeconv {}", env!("CARGO_PKG_VERSION"));
        if let Some(p) = &self.provenance {
            model.metadata.push((
                PROVENANCE_KEY.to_string(),
                Bytes::from(p.clone().into_bytes()),
            ));
        }
        let written = write_model(&model, out, self.offset_buffers, progress)?;

        let mut lowered: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for op in &model.operators {
            lowered
                .entry(op.source_node.clone())
                .or_default()
                .push(builtin_name(op.code));
        }
        let mut notes = vec![format!("{} operators", model.operators.len())];
        let transposes = model
            .operators
            .iter()
            .filter(|op| op.code == tfl::BuiltinOperator::TRANSPOSE)
            .count();
        notes.push(format!("{transposes} transposes"));
        if self.lower.io_layout == IoLayout::ChannelsLast {
            notes.push("NHWC inputs and outputs".into());
        }
        if self.lower.fp16_weights {
            notes.push("float16 weights".into());
        }
        if let Some(s) = &int8 {
            notes.push(format!(
                "int8: {} nodes integer, {} float",
                s.int8_nodes.len(),
                s.float_nodes.len()
            ));
        }
        if let Some(s) = &dynamic {
            notes.push(format!(
                "dynamic range: int8 weights in {} nodes ({} -> {} weight bytes)",
                s.quantized.len(),
                s.weight_bytes_before,
                s.weight_bytes_after
            ));
        }
        if written.offset_buffers {
            notes.push(format!(
                "weights after the flatbuffer ({} bytes of flatbuffer)",
                written.flatbuffer_bytes
            ));
        }
        Ok(EmitReport {
            files: vec![written.path],
            bytes: written.bytes,
            notes,
            lowered,
            ..Default::default()
        })
    }
}

/// LiteRT cannot hand out a tensor with zero elements as a model output.
fn require_nonempty_outputs(g: &Graph) -> Result<()> {
    let empty: Vec<Unsupported> = g
        .outputs
        .iter()
        .filter(|&&v| g.fact(v).shape.element_count() == Some(0))
        .map(|&v| Unsupported {
            node: g.value(v).name.clone(),
            op: "graph output".into(),
            reason: "tflite target: the output has zero elements, which LiteRT cannot return"
                .into(),
        })
        .collect();
    if empty.is_empty() {
        Ok(())
    } else {
        Err(Error::Unsupported(empty))
    }
}

/// The schema's name of a builtin operator (`CONV_2D`).
pub fn builtin_name(code: tfl::BuiltinOperator) -> String {
    code.variant_name()
        .map_or_else(|| format!("BUILTIN_{}", code.0), str::to_string)
}
