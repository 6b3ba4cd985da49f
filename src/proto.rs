//! Generated protobuf and gRPC types of `offerbandit.v1`. Only [`crate::service`]
//! and clients use them; the domain never does.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("offerbandit.v1");

/// Encoded descriptor set of the API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/offerbandit_descriptor.bin"));
