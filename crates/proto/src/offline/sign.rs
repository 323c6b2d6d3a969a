//! The site's Ed25519 key, which signs the `.cfg` files of the file-share CAP, and its public
//! half, which agents keep from enrollment and check every `.cfg` with.
//!
//! ring does the cryptography (it is already linked for TLS). Every signature covers a context
//! string before the message, so a signature made for one kind of file can never be presented
//! as one of another kind.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// The site's signing key.
pub struct SiteKey {
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private half.
        write!(f, "SiteKey({})", self.public())
    }
}

impl SiteKey {
    /// A new random key and its PKCS#8 document, which is what the site keeps on disk.
    pub fn generate() -> Result<(SiteKey, Vec<u8>), String> {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| "the system random number generator failed".to_string())?;
        let bytes = doc.as_ref().to_vec();
        Ok((SiteKey::from_pkcs8(&bytes)?, bytes))
    }

    /// The key from its PKCS#8 document.
    pub fn from_pkcs8(doc: &[u8]) -> Result<SiteKey, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(doc)
            .map_err(|e| format!("not an Ed25519 key in PKCS#8 form ({e})"))?;
        Ok(SiteKey { pair })
    }

    pub fn public(&self) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(key)
    }

    /// Signs `message` under `context`.
    pub fn sign(&self, context: &[u8], message: &[u8]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(self.pair.sign(&framed(context, message)).as_ref());
        sig
    }
}

/// The public half of a site's key: 32 bytes, written as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(raw: &str) -> Option<PublicKey> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(raw.trim(), &mut key).ok()?;
        Some(PublicKey(key))
    }

    /// Whether `signature` is this key's signature of `message` under `context`.
    pub fn verify(&self, context: &[u8], message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(&framed(context, message), signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let raw = String::deserialize(d)?;
        PublicKey::from_hex(&raw)
            .ok_or_else(|| serde::de::Error::custom("a public key is 64 hex digits"))
    }
}

/// The signed bytes: the context's length, the context, then the message, so no context can
/// be the prefix of another's message.
fn framed(context: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + context.len() + message.len());
    out.extend_from_slice(&(context.len() as u64).to_le_bytes());
    out.extend_from_slice(context);
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_same_key_context_and_message() {
        let (key, doc) = SiteKey::generate().unwrap();
        let again = SiteKey::from_pkcs8(&doc).unwrap();
        assert_eq!(key.public(), again.public());
        let sig = key.sign(b"cfg", b"hello");
        let public = key.public();
        assert!(public.verify(b"cfg", b"hello", &sig));
        assert!(!public.verify(b"cfg", b"hellO", &sig));
        assert!(!public.verify(b"inv", b"hello", &sig));
        assert!(!public.verify(b"cf", b"ghello", &sig));
        let (other, _) = SiteKey::generate().unwrap();
        assert!(!other.public().verify(b"cfg", b"hello", &sig));
        assert_eq!(PublicKey::from_hex(&public.to_hex()), Some(public));
        assert!(!format!("{key:?}").contains(&hex::encode(&doc)));
    }

    #[test]
    fn ring_agrees_with_the_rfc_8032_test_vector() {
        // RFC 8032 section 7.1, TEST 1: the empty message, signed without our framing, checks
        // that the public half is the plain 32-byte Ed25519 key other tools use.
        let public =
            PublicKey::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let sig = hex::decode(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        )
        .unwrap();
        assert!(
            UnparsedPublicKey::new(&ED25519, &public.0)
                .verify(b"", &sig)
                .is_ok()
        );
    }
}
