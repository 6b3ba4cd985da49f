//! Any bytes as a backup file: parsing must refuse or accept, never panic
//! (`offer-bandit restore` reads files from outside). Random bytes almost
//! never carry a valid checksum, so each input is also tried with its
//! correct BLAKE3 digest appended, which lets the fuzzer reach the entry
//! parser behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offer_bandit::store::{check_entry, parse_snapshot};

fn parse(bytes: &[u8]) {
    if let Ok(entries) = parse_snapshot(bytes) {
        for (k, v) in entries {
            let _ = check_entry(k, v);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    parse(data);
    let mut signed = b"offer-bandit backup 1\n".to_vec();
    signed.extend_from_slice(data);
    let digest = blake3::hash(&signed);
    signed.extend_from_slice(digest.as_bytes());
    parse(&signed);
});
