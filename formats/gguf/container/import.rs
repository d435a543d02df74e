//! A GGUF file as a weights-only graph, like a safetensors checkpoint: one
//! weight per tensor (zero-copy slices of the map, IR shape = dims reversed),
//! every weight a graph output, the metadata in `metadata.kv`.

use std::path::Path;

use super::read;
use crate::ir::error::Result;
use crate::ir::graph::Graph;
use crate::ir::weights::Weight;
use crate::progress::Progress;

pub fn import(path: &Path, progress: &dyn Progress) -> Result<Graph> {
    let file = read(path)?;
    let name = path
        .file_stem()
        .map_or(String::new(), |s| s.to_string_lossy().into_owned());
    let mut g = Graph::new(name);
    g.metadata.source_format = "gguf".into();
    g.metadata.architecture = file
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    progress.start("mapping gguf", file.tensors.len() as u64);
    for t in &file.tensors {
        let shape =
            t.ne.iter()
                .rev()
                .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                .collect();
        let weight = Weight::new(t.name.clone(), t.ty.dtype(), shape, file.data(t))
            .map_err(|e| e.in_file(path))?;
        let value = g.add_weight(weight);
        g.outputs.push(value);
        progress.advance(1);
    }
    progress.finish();
    g.metadata.kv = file.kv;
    Ok(g)
}
