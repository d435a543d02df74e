"""Runs a GGUF file in llama.cpp (llama-cpp-python) for the GGUF tests.

    python3 llama_cpp_run.py MODEL.gguf logits --ids 1,2,3 --out LOGITS.npy
    python3 llama_cpp_run.py MODEL.gguf tokenize --texts TEXTS.json --out IDS.json
    python3 llama_cpp_run.py MODEL.gguf embed --texts TEXTS.json --out EMB.npy

logits: the logits of every position [seq, vocab]. tokenize: Llama.tokenize
of each text with add_bos False and special False. embed: mean-pooled
sentence embeddings [n, dim] (embedding mode, llama.cpp's own tokenizer).

Batches are evaluated one token at a time (n_ubatch 1): llama.cpp 0.3.36's
CPU backend crashes on this machine's AMX/AVX-512 kernels for multi-token
batches of tiny models (its own quantized files crash the same way).
"""

import argparse
import json
import sys

import llama_cpp
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("mode", choices=["logits", "tokenize", "embed"])
    ap.add_argument("--ids")
    ap.add_argument("--texts")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    common = dict(model_path=args.model, n_ctx=512, n_batch=512, n_ubatch=1, n_threads=2, verbose=False, seed=0)
    if args.mode == "logits":
        ids = [int(t) for t in args.ids.split(",")]
        # float32 KV cache: the default float16 cache alone costs ~1e-3 relative.
        llm = llama_cpp.Llama(logits_all=True, type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, **common)
        llm.eval(ids)
        np.save(args.out, np.array(llm.scores[: len(ids)], dtype=np.float32))
    elif args.mode == "tokenize":
        texts = json.load(open(args.texts))
        llm = llama_cpp.Llama(vocab_only=True, **common)
        ids = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in texts]
        json.dump(ids, open(args.out, "w"))
    else:
        texts = json.load(open(args.texts))
        common["n_ubatch"] = 512
        llm = llama_cpp.Llama(embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN, **common)
        emb = [llm.embed(t, normalize=False) for t in texts]
        np.save(args.out, np.array(emb, dtype=np.float32))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a clear one-line failure for the Rust side
        sys.exit(f"llama_cpp_run.py: {type(e).__name__}: {e}")
