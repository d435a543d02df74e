//! Weight roles from Hugging Face tensor names.
//!
//! Two naming families cover the recognised architectures: the decoder layout
//! of llama, mistral and qwen2 (`model.layers.N.self_attn.q_proj.weight`) and
//! the BERT encoder layout (`encoder.layer.N.attention.self.query.weight`,
//! optionally under a `bert.` prefix). The names do not collide, so the role
//! does not depend on the declared architecture; unknown names get no role.

use crate::ir::weights::WeightRole;

/// The role of the tensor called `name`, if its name is a known one.
pub fn role_for(name: &str) -> Option<WeightRole> {
    decoder_role(name).or_else(|| bert_role(name.strip_prefix("bert.").unwrap_or(name)))
}

fn decoder_role(name: &str) -> Option<WeightRole> {
    use WeightRole::*;
    match name {
        "model.embed_tokens.weight" => return Some(TokenEmbedding),
        "model.norm.weight" => return Some(OutputNorm),
        "lm_head.weight" => return Some(Output),
        _ => {}
    }
    let (layer, rest) = layer_suffix(name, "model.layers.")?;
    Some(match rest {
        "input_layernorm.weight" => AttnNorm(layer),
        "self_attn.q_proj.weight" => AttnQ(layer),
        "self_attn.k_proj.weight" => AttnK(layer),
        "self_attn.v_proj.weight" => AttnV(layer),
        "self_attn.q_proj.bias" => AttnQBias(layer),
        "self_attn.k_proj.bias" => AttnKBias(layer),
        "self_attn.v_proj.bias" => AttnVBias(layer),
        "self_attn.o_proj.weight" => AttnOutput(layer),
        "self_attn.o_proj.bias" => AttnOutputBias(layer),
        "self_attn.q_norm.weight" => AttnQNorm(layer),
        "self_attn.k_norm.weight" => AttnKNorm(layer),
        "post_attention_layernorm.weight" => FfnNorm(layer),
        "mlp.gate_proj.weight" => FfnGate(layer),
        "mlp.up_proj.weight" => FfnUp(layer),
        "mlp.up_proj.bias" => FfnUpBias(layer),
        "mlp.down_proj.weight" => FfnDown(layer),
        "mlp.down_proj.bias" => FfnDownBias(layer),
        _ => return None,
    })
}

fn bert_role(name: &str) -> Option<WeightRole> {
    use WeightRole::*;
    match name {
        "embeddings.word_embeddings.weight" => return Some(TokenEmbedding),
        "embeddings.position_embeddings.weight" => return Some(PositionEmbedding),
        "embeddings.token_type_embeddings.weight" => return Some(TokenTypeEmbedding),
        "embeddings.LayerNorm.weight" | "embeddings.LayerNorm.gamma" => {
            return Some(EmbeddingNorm);
        }
        "embeddings.LayerNorm.bias" | "embeddings.LayerNorm.beta" => {
            return Some(EmbeddingNormBias);
        }
        "pooler.dense.weight" => return Some(Pooler),
        "pooler.dense.bias" => return Some(PoolerBias),
        _ => {}
    }
    let (layer, rest) = layer_suffix(name, "encoder.layer.")?;
    Some(match rest {
        "attention.self.query.weight" => AttnQ(layer),
        "attention.self.key.weight" => AttnK(layer),
        "attention.self.value.weight" => AttnV(layer),
        "attention.self.query.bias" => AttnQBias(layer),
        "attention.self.key.bias" => AttnKBias(layer),
        "attention.self.value.bias" => AttnVBias(layer),
        "attention.output.dense.weight" => AttnOutput(layer),
        "attention.output.dense.bias" => AttnOutputBias(layer),
        "attention.output.LayerNorm.weight" | "attention.output.LayerNorm.gamma" => {
            AttnOutputNorm(layer)
        }
        "attention.output.LayerNorm.bias" | "attention.output.LayerNorm.beta" => {
            AttnOutputNormBias(layer)
        }
        "intermediate.dense.weight" => FfnUp(layer),
        "intermediate.dense.bias" => FfnUpBias(layer),
        "output.dense.weight" => FfnDown(layer),
        "output.dense.bias" => FfnDownBias(layer),
        "output.LayerNorm.weight" | "output.LayerNorm.gamma" => LayerOutputNorm(layer),
        "output.LayerNorm.bias" | "output.LayerNorm.beta" => LayerOutputNormBias(layer),
        _ => return None,
    })
}

/// Splits `prefix` `N` `.` `rest` into the layer index and `rest`.
fn layer_suffix<'a>(name: &'a str, prefix: &str) -> Option<(u32, &'a str)> {
    let (index, rest) = name.strip_prefix(prefix)?.split_once('.')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((index.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use WeightRole::*;

    #[test]
    fn decoder_names() {
        let cases = [
            ("model.embed_tokens.weight", Some(TokenEmbedding)),
            ("model.layers.0.input_layernorm.weight", Some(AttnNorm(0))),
            ("model.layers.12.self_attn.q_proj.weight", Some(AttnQ(12))),
            ("model.layers.3.self_attn.v_proj.bias", Some(AttnVBias(3))),
            (
                "model.layers.1.self_attn.o_proj.weight",
                Some(AttnOutput(1)),
            ),
            (
                "model.layers.1.post_attention_layernorm.weight",
                Some(FfnNorm(1)),
            ),
            ("model.layers.1.mlp.gate_proj.weight", Some(FfnGate(1))),
            ("model.layers.1.mlp.down_proj.weight", Some(FfnDown(1))),
            ("model.norm.weight", Some(OutputNorm)),
            ("lm_head.weight", Some(Output)),
            ("model.layers.1.self_attn.rotary_emb.inv_freq", None),
            ("model.layers.x.mlp.up_proj.weight", None),
            ("model.layers.+1.mlp.up_proj.weight", None),
            ("model.layers.99999999999.mlp.up_proj.weight", None),
        ];
        for (name, role) in cases {
            assert_eq!(role_for(name), role, "{name}");
        }
    }

    #[test]
    fn bert_names_with_and_without_prefix() {
        let cases = [
            ("embeddings.word_embeddings.weight", Some(TokenEmbedding)),
            (
                "bert.embeddings.position_embeddings.weight",
                Some(PositionEmbedding),
            ),
            (
                "embeddings.token_type_embeddings.weight",
                Some(TokenTypeEmbedding),
            ),
            ("embeddings.LayerNorm.bias", Some(EmbeddingNormBias)),
            ("encoder.layer.5.attention.self.key.weight", Some(AttnK(5))),
            (
                "bert.encoder.layer.0.attention.output.LayerNorm.weight",
                Some(AttnOutputNorm(0)),
            ),
            (
                "encoder.layer.2.intermediate.dense.bias",
                Some(FfnUpBias(2)),
            ),
            ("encoder.layer.2.output.dense.weight", Some(FfnDown(2))),
            (
                "encoder.layer.2.output.LayerNorm.bias",
                Some(LayerOutputNormBias(2)),
            ),
            ("pooler.dense.weight", Some(Pooler)),
            ("embeddings.position_ids", None),
            ("cls.predictions.bias", None),
        ];
        for (name, role) in cases {
            assert_eq!(role_for(name), role, "{name}");
        }
    }
}
