//! Any bytes as a backup file: parsing must refuse or accept, never panic
//! (`offer-bandit restore` reads files from outside).
#![no_main]

use libfuzzer_sys::fuzz_target;
use offer_bandit::store::{check_entry, parse_snapshot};

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = parse_snapshot(data) {
        for (k, v) in entries {
            let _ = check_entry(k, v);
        }
    }
});
