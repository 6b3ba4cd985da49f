//! Any bytes as a stored value under each kind of key: decoding must answer
//! Ok or a clear error, never panic (startup decodes every record).
#![no_main]

use libfuzzer_sys::fuzz_target;
use offer_bandit::store::check_entry;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, value)) = data.split_first() else {
        return;
    };
    let key: &[u8] = match kind % 6 {
        0 => b"d/0123456789abcdef",
        1 => b"m/coffee\0lapsing|afternoon\0bogo_afternoon",
        2 => b"p/coffee-personal\0bogo_afternoon",
        3 => b"k/coffee",          // a campaign config revision (TOML inside)
        4 => b"q/coffee-personal", // a learned prior
        _ => value,                // the key itself is fuzzed too
    };
    let _ = check_entry(key, value);
});
