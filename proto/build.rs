//! Compiles the `.proto` files with protox (pure Rust), so building needs no protoc binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/sluice/v1/node.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
