//! Compiles the .proto files under `proto/` without a `protoc` binary:
//! `protox` (a pure-Rust protobuf compiler) parses them into a
//! `FileDescriptorSet`, which `tonic-prost-build` turns into prost messages
//! and tonic client/server code. The encoded descriptor set is also written
//! to `OUT_DIR` for gRPC reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

/// Root .proto files, relative to the include directory `proto/`.
const PROTOS: &[&str] = &[
    "flow/flow.proto",
    "relay/relay.proto",
    "observer/observer.proto",
    "peer/peer.proto",
    "lumen/v1/lumen.proto",
    "lumen/v1/control.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let include = manifest_dir.join("proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", include.display());
    for p in PROTOS {
        println!("cargo:rerun-if-changed={}", include.join(p).display());
    }

    let mut compiler = protox::Compiler::new([&include])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    let fds = compiler.file_descriptor_set();

    // Descriptor set for reflection: every file including the google
    // well-known imports, without source info (comments) to keep it small.
    let mut reflection = fds.clone();
    for file in &mut reflection.file {
        file.source_code_info = None;
    }
    fs::write(out_dir.join("lumen_proto_descriptor.bin"), reflection.encode_to_vec())?;

    // Code generation. The google well-known imports stay in the set (prost-build
    // inspects them) but map to `prost_types` instead of being generated.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
