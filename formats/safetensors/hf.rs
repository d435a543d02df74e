//! The Hugging Face JSON files next to a checkpoint, and the architecture they name.

use std::path::Path;

use serde_json::Value;

use super::json::read_json_file;
use crate::ir::error::Result;
use crate::ir::graph::HfFiles;

/// Largest config or tokenizer file accepted; big-vocabulary tokenizers are
/// tens of megabytes.
const MAX_JSON_BYTES: u64 = 200_000_000;

/// Architectures whose tensor names and config keys edgeconv knows, with the
/// class-name stem `transformers` uses for them (`LlamaForCausalLM`).
const KNOWN_ARCHITECTURES: [(&str, &str); 4] = [
    ("llama", "Llama"),
    ("mistral", "Mistral"),
    ("qwen2", "Qwen2"),
    ("bert", "Bert"),
];

/// Loads `config.json`, `tokenizer.json`, `tokenizer_config.json` and
/// `generation_config.json` from `folder`, each only if present.
pub fn load(folder: &Path) -> Result<HfFiles> {
    let optional = |name: &str| -> Result<Option<Value>> {
        let path = folder.join(name);
        if path.is_file() {
            read_json_file(&path, MAX_JSON_BYTES).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(HfFiles {
        config: optional("config.json")?,
        tokenizer: optional("tokenizer.json")?,
        tokenizer_config: optional("tokenizer_config.json")?,
        generation_config: optional("generation_config.json")?,
    })
}

/// The architecture a `config.json` declares: its `model_type` (lower-cased,
/// known or not), else the known architecture whose class is first in
/// `architectures` (`BertForMaskedLM` -> `bert`).
pub fn architecture(config: &Value) -> Option<String> {
    if let Some(model_type) = config.get("model_type").and_then(Value::as_str) {
        return Some(model_type.to_ascii_lowercase());
    }
    let class = config.get("architectures")?.get(0)?.as_str()?;
    KNOWN_ARCHITECTURES
        .iter()
        .find(|(_, stem)| {
            class
                .strip_prefix(stem)
                .is_some_and(|rest| rest.starts_with("For") || rest == "Model")
        })
        .map(|(name, _)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn architecture_from_model_type_or_class() {
        let cases = [
            (json!({"model_type": "llama"}), Some("llama")),
            (
                json!({"model_type": "Qwen2", "architectures": ["X"]}),
                Some("qwen2"),
            ),
            (
                json!({"architectures": ["MistralForCausalLM"]}),
                Some("mistral"),
            ),
            (json!({"architectures": ["BertModel"]}), Some("bert")),
            (json!({"architectures": ["Qwen2MoeForCausalLM"]}), None),
            (json!({"architectures": ["GPT2LMHeadModel"]}), None),
            (json!({}), None),
        ];
        for (config, expected) in cases {
            assert_eq!(architecture(&config).as_deref(), expected, "{config}");
        }
    }
}
