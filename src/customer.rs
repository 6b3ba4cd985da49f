//! Customer ids as the server keeps them: a keyed BLAKE3 hash under a server
//! secret, never the id itself. The hash indexes a customer's decisions so
//! that `ForgetCustomer` can erase them; without the secret it cannot be
//! reversed by hashing candidate ids (loyalty numbers, e-mails).

use std::fmt;

/// The server secret customer ids are hashed under.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomerKey([u8; 32]);

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerKey({})", self.fingerprint())
    }
}

/// A customer id under the server's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CustomerHash(pub [u8; 32]);

impl CustomerKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        CustomerKey(bytes)
    }

    /// A new random key.
    pub fn generate() -> Self {
        CustomerKey(rand::random())
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if !t.is_ascii() || t.len() != 64 {
            return Err(format!(
                "a customer key is 64 hex digits (32 bytes); got {} characters",
                t.len()
            ));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&t[2 * i..2 * i + 2], 16)
                .map_err(|_| "a customer key is 64 hex digits (0-9, a-f)".to_owned())?;
        }
        Ok(CustomerKey(out))
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short public name of the key (the first 8 bytes of its hash), to
    /// notice a changed key without revealing it.
    pub fn fingerprint(&self) -> String {
        blake3::hash(&self.0).as_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The hash of a customer id under this key.
    pub fn hash(&self, customer_id: &str) -> CustomerHash {
        CustomerHash(*blake3::keyed_hash(&self.0, customer_id.as_bytes()).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_the_key_and_the_id() {
        let a = CustomerKey::from_bytes([1; 32]);
        let b = CustomerKey::from_bytes([2; 32]);
        assert_eq!(a.hash("c-1"), a.hash("c-1"));
        assert_ne!(a.hash("c-1"), a.hash("c-2"));
        assert_ne!(a.hash("c-1"), b.hash("c-1"));
        // Not the plain hash of the id.
        assert_ne!(a.hash("c-1").0, *blake3::hash(b"c-1").as_bytes());
    }

    #[test]
    fn hex_keys_parse_and_fingerprints_are_stable() {
        let hex = "00".repeat(31) + "ff";
        let k = CustomerKey::from_hex(&format!(" {hex}\n")).expect("valid");
        assert_eq!(k.bytes()[31], 0xff);
        assert_eq!(
            k.fingerprint(),
            CustomerKey::from_hex(&hex).expect("valid").fingerprint()
        );
        assert_eq!(k.fingerprint().len(), 16);
        assert!(CustomerKey::from_hex("abc").is_err());
        assert!(CustomerKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(
            !format!("{k:?}").contains(&hex),
            "Debug must not print the key"
        );
    }
}
