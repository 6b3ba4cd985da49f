//! Compiles `proto/` with protox (pure Rust, no protoc) and writes the
//! descriptor set that server reflection serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/offerbandit/v1/offer_bandit.proto";
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("offerbandit_descriptor.bin"), fds.encode_to_vec())?;
    // The messages and the clients, for clients of any kind (tests, the
    // simulator, users' Rust code).
    tonic_prost_build::configure()
        // Undecodable bodies are INVALID_ARGUMENT (src/codec.rs).
        .codec_path("crate::codec::ProtoCodec")
        .build_client(true)
        .build_server(false)
        .compile_fds(fds.clone())?;
    // The servers, apart: they take the messages above, except that
    // SelectOffer's request is decoded by our own decoder
    // (src/service/wire.rs), which puts the context straight into its
    // sorted form instead of a hash map.
    let servers = out.join("servers");
    fs::create_dir_all(&servers)?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::ProtoCodec")
        .build_client(false)
        .build_server(true)
        .out_dir(&servers)
        .extern_path(".offerbandit.v1", "crate::proto")
        .extern_path(
            ".offerbandit.v1.SelectOfferRequest",
            "crate::service::wire::SelectOfferRequest",
        )
        .compile_fds(fds)?;
    Ok(())
}
