"""Small llama- and qwen2-style Hugging Face checkpoints with a real-size
byte-level BPE vocabulary, for the GGUF tests (deterministic: fixed seeds,
no timestamps).

    python3 make_llm_checkpoint.py OUT_DIR --arch llama|qwen2 [--vocab 32000]
        [--hidden 256] [--layers 8] [--ff 768] [--heads 4] [--kv-heads 2]
        [--tied] [--dtype float32|float16|bfloat16] [--shards N]
        [--tokenizer llama3|qwen2|gpt2|starcoder|gpt-4o|tekken|spm]

The tokenizer is trained offline with `tokenizers` on this Python's standard
library sources (English prose in docstrings, code, digits) plus lines with
accents, emoji and CJK. By default llama uses the Llama-3 split regex (with
`ignore_merges`) and qwen2 Qwen2's, as those tokenizers have; --tokenizer picks
another byte-level pre-tokenizer (GPT-2's ByteLevel regex, StarCoder's digits +
ByteLevel, GPT-4o's or Tekken's split) or `spm`, a Llama-2-style BPE with byte
fallback over "▁"-escaped text. Weights are normal with
std 0.02 (q/k projections 0.15, norms near 1); qwen2 adds q/k/v biases.
"""

import argparse
import json
import os
import sys
import sysconfig
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPLITS = {
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "gpt-4o": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "tekken": r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
# The BPE models' ignore_merges, as the original tokenizers have it.
IGNORE_MERGES = {"llama3": True, "tekken": True}
EXTRA_LINES = [
    "Crème brûlée, naïve café, Ångström, São Paulo, Zürich, façade, jalapeño.",
    "Emoji: 🚀 🦙 😁 ✅ 👍🏽 🇫🇷 — and CJK: 我想在apple工作 日本語のテキスト 한국어 문장.",
    "Numbers 3 33 333 3333 3.14159 1e-5 0x1F 2026-11-22 12:00:00 ±42%.",
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n\tindent\ttabs",
    "Привет мир. Γειά σου κόσμε. مرحبا بالعالم. שלום עולם.",
]
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]
CHAT_TEMPLATE = "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"


def corpus():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py"))[:400]
    for path in files:
        try:
            yield path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
    for _ in range(50):
        yield from EXTRA_LINES


def train_tokenizer(kind, vocab_size):
    if kind == "spm":
        return train_spm(vocab_size)
    tok = Tokenizer(models.BPE(ignore_merges=IGNORE_MERGES.get(kind, False)))
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif kind == "starcoder":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(SPLITS[kind]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIALS),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.add_special_tokens(SPECIALS)
    if kind in ("gpt2", "starcoder"):
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return tok
    bos = tok.token_to_id(SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A {SPECIALS[0]} $B",
        special_tokens=[(SPECIALS[0], bos)],
    )
    return tok


def train_spm(vocab_size):
    """Llama-2 style: <unk> <s> </s>, the 256 byte tokens, then BPE pieces
    over text with spaces as "▁" and a leading "▁"."""
    specials = ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([
        decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=specials + [f"<0x{b:02X}>" for b in range(256)],
        max_token_length=16,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))],
    )
    return tok


def weights(args, vocab):
    rng = np.random.default_rng(1234)
    hd = args.hidden // args.heads
    w = {}

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    w["model.embed_tokens.weight"] = normal((vocab, args.hidden), 0.02)
    for i in range(args.layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = (1 + normal((args.hidden,), 0.05)).astype(np.float32)
        w[p + "post_attention_layernorm.weight"] = (1 + normal((args.hidden,), 0.05)).astype(np.float32)
        w[p + "self_attn.q_proj.weight"] = normal((args.heads * hd, args.hidden), 0.15)
        w[p + "self_attn.k_proj.weight"] = normal((args.kv_heads * hd, args.hidden), 0.15)
        w[p + "self_attn.v_proj.weight"] = normal((args.kv_heads * hd, args.hidden), 0.02)
        w[p + "self_attn.o_proj.weight"] = normal((args.hidden, args.heads * hd), 0.02)
        if args.arch == "qwen2":
            w[p + "self_attn.q_proj.bias"] = normal((args.heads * hd,), 0.1)
            w[p + "self_attn.k_proj.bias"] = normal((args.kv_heads * hd,), 0.1)
            w[p + "self_attn.v_proj.bias"] = normal((args.kv_heads * hd,), 0.02)
        w[p + "mlp.gate_proj.weight"] = normal((args.ff, args.hidden), 0.02)
        w[p + "mlp.up_proj.weight"] = normal((args.ff, args.hidden), 0.02)
        w[p + "mlp.down_proj.weight"] = normal((args.hidden, args.ff), 0.02)
    w["model.norm.weight"] = (1 + normal((args.hidden,), 0.05)).astype(np.float32)
    if not args.tied:
        w["lm_head.weight"] = normal((vocab, args.hidden), 0.02)
    return w


def cast(array, dtype):
    if dtype == "float32":
        return array
    if dtype == "float16":
        return array.astype(np.float16)
    import ml_dtypes  # noqa: F401  (safetensors' numpy API needs it for bf16)
    return array.astype(ml_dtypes.bfloat16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--arch", choices=["llama", "qwen2"], required=True)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--ff", type=int, default=768)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--tokenizer", choices=["llama3", "qwen2", "gpt2", "starcoder", "gpt-4o", "tekken", "spm"])
    args = ap.parse_args()
    kind = args.tokenizer or ("llama3" if args.arch == "llama" else "qwen2")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    tok = train_tokenizer(kind, args.vocab)
    if tok.get_vocab_size() != args.vocab:
        sys.exit(f"trained {tok.get_vocab_size()} tokens, wanted {args.vocab} (corpus too small)")
    tok.save(str(out / "tokenizer.json"))
    names = ["<s>", "</s>", "<unk>"] if kind == "spm" else SPECIALS
    bos, eos = tok.token_to_id(names[0]), tok.token_to_id(names[1])
    tc = {"bos_token": names[0], "eos_token": names[1], "add_bos_token": kind != "gpt2",
          "add_eos_token": False, "chat_template": CHAT_TEMPLATE}
    tc["unk_token" if kind == "spm" else "pad_token"] = names[2]
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")
    config = {
        "architectures": ["LlamaForCausalLM" if args.arch == "llama" else "Qwen2ForCausalLM"],
        "model_type": args.arch, "hidden_size": args.hidden, "intermediate_size": args.ff,
        "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads, "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0 if args.arch == "llama" else 1000000.0,
        "vocab_size": args.vocab, "tie_word_embeddings": args.tied,
        "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": args.dtype, "hidden_act": "silu",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tensors = {k: cast(v, args.dtype) for k, v in weights(args, args.vocab).items()}
    names = list(tensors)
    if args.shards == 1:
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        per = -(-len(names) // args.shards)
        weight_map = {}
        for s in range(args.shards):
            part = names[s * per:(s + 1) * per]
            fname = f"model-{s + 1:05d}-of-{args.shards:05d}.safetensors"
            save_file({k: tensors[k] for k in part}, str(out / fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in part})
        total = sum(t.nbytes for t in tensors.values())
        (out / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
