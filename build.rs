//! Compiles the project's protos (`proto/onnx.proto`, `proto/coreml/*.proto`)
//! with protox (no system protoc) and prost-build. `bytes` fields decode as
//! `bytes::Bytes`, so decoding a memory-mapped model leaves tensor data in the
//! map instead of copying it.

const PROTOS: [&str; 3] = [
    "proto/onnx.proto",
    "proto/coreml/model.proto",
    "proto/coreml/mil.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
