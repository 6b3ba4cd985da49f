//! Any bytes as a SelectOffer request: decode with the server's decoder
//! (which must accept exactly what the generated one accepts, and read the
//! same request from it), validate,
//! then segment and encode the context for every demo campaign, as the
//! server would. Nothing may panic; invalid input must come back as an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offer_bandit::{Limits, config, policy::segment::segment_key, proto, validate_select, wire};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let generated = proto::SelectOfferRequest::decode(data);
    let decoded = wire::SelectOfferRequest::decode(data);
    assert_eq!(generated.is_ok(), decoded.is_ok(), "the decoders disagree");
    let (Ok(generated), Ok(request)) = (generated, decoded) else {
        return;
    };
    // What validation reads: each context name's last entry, and the rest
    // (compared as text: a NaN is not equal to itself).
    let read = |r: &wire::SelectOfferRequest| {
        let context = wire::split_context(r.context.clone());
        let rest = wire::SelectOfferRequest {
            context: Vec::new(),
            ..r.clone()
        };
        format!("{context:?} {rest:?}")
    };
    assert_eq!(
        read(&wire::SelectOfferRequest::from(generated)),
        read(&request),
        "the decoders read different requests"
    );
    let Ok(req) = validate_select(&Limits::default(), request) else {
        return;
    };
    let Ok(campaigns) = config::demo() else {
        return;
    };
    for c in campaigns {
        let _ = segment_key(&c.segment_by, &req.context);
        if let Ok(encoder) = c.encoder() {
            if let Ok(x) = encoder.encode(&req.context) {
                assert!(
                    x.iter()
                        .all(|(i, v)| (*i as usize) < encoder.dim() && v.is_finite())
                );
            }
        }
    }
});
