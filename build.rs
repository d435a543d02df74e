//! Compiles `proto/onnx.proto` with protox (no system protoc) and prost-build.
//! `bytes` fields decode as `bytes::Bytes`, so decoding a memory-mapped model
//! leaves initializer data in the map instead of copying it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["proto/onnx.proto"], ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
