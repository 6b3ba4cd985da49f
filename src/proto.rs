//! Generated protobuf and gRPC types of `offerbandit.v1`. Only [`crate::service`]
//! and clients use them; the domain never does.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

tonic::include_proto!("offerbandit.v1");

/// The servers, generated apart from the messages (`build.rs`): SelectOffer's
/// request is [`crate::service::wire::SelectOfferRequest`], decoded by our own
/// decoder; every other message is the one above.
mod servers {
    include!(concat!(env!("OUT_DIR"), "/servers/offerbandit.v1.rs"));
}
pub(crate) use servers::{campaign_admin_server, offer_service_server};

/// Encoded descriptor set of the API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/offerbandit_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message as _;

    /// Clients in other languages get their packages from the proto.
    #[test]
    fn the_proto_names_go_and_java_packages() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let file = set
            .file
            .iter()
            .find(|f| f.name() == "offerbandit/v1/offer_bandit.proto")
            .expect("our file");
        let options = file.options.as_ref().expect("file options");
        assert!(
            options
                .go_package()
                .ends_with("/offerbandit/v1;offerbanditv1"),
            "{}",
            options.go_package()
        );
        assert_eq!(options.java_package(), "com.offerbandit.v1");
        assert!(options.java_multiple_files());
        assert_eq!(options.java_outer_classname(), "OfferBanditProto");
    }
}
