"""Numpy reference for a BERT sentence-embedding checkpoint (all-MiniLM-L6-v2):
token + position + type embeddings, LayerNorm, post-norm encoder layers with
erf GELU, mean pooling over all tokens (as sentence-transformers does for one
unpadded sentence).

    python3 bert_reference.py MODEL_DIR TEXTS.json OUT.npy
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def main():
    model, texts, out = Path(sys.argv[1]), json.load(open(sys.argv[2])), sys.argv[3]
    cfg = json.loads((model / "config.json").read_text())
    w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in load_file(str(model / "model.safetensors")).items()}
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tok.no_padding()  # the checkpoint pads to 128; one sentence is pooled unpadded
    tok.no_truncation()
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    result = []
    for text in texts:
        ids = tok.encode(text).ids
        n = len(ids)
        h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n] \
            + w["embeddings.token_type_embeddings.weight"][0]
        h = layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            lin = lambda x, name: x @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            d = h.shape[1] // heads
            q, k, v = (lin(h, f"attention.self.{m}").reshape(n, heads, d).transpose(1, 0, 2) for m in ("query", "key", "value"))
            s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v
            a = lin(a.transpose(1, 0, 2).reshape(n, -1), "attention.output.dense")
            h = layer_norm(h + a, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            f = lin(gelu(lin(h, "intermediate.dense")), "output.dense")
            h = layer_norm(h + f, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        result.append(h.mean(0))
    np.save(out, np.array(result, dtype=np.float32))


if __name__ == "__main__":
    main()
