//! Any bytes as a SelectOffer request: decode with the server's decoder
//! (which must accept exactly what the generated one accepts), validate,
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
    let Ok(request) = decoded else {
        return;
    };
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
