//! Standard Webhooks asymmetric signatures (`v1a`): Ed25519 over `{id}.{timestamp}.{body}`,
//! with public keys written `whpk_<base64 of 32 bytes>` and signing seeds
//! `whsk_<base64 of 32 bytes>`.
//!
//! Verification is strict (`ed25519-dalek`'s `verify_strict`): a non-canonical signature or
//! one made with a small-order key is refused, and a small-order public key is refused when
//! the verifier is built, since such a key would accept signatures of almost any message.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::parse::{Signature, Tag};
use super::Prefix;

/// A key written as a Standard Webhooks sender writes asymmetric keys.
pub(crate) enum AsymmetricKey {
    /// `whpk_...`: verifies.
    Public(VerifyingKey),
    /// `whsk_...`: signs.
    Signing(SigningKey),
}

/// The key `secret` names, if it is an asymmetric one (`whpk_` or `whsk_`); `None` otherwise.
pub(crate) fn decode(secret: &str) -> Option<Result<AsymmetricKey, &'static str>> {
    let (public, text) = match (secret.strip_prefix("whpk_"), secret.strip_prefix("whsk_")) {
        (Some(text), _) => (true, text),
        (None, Some(text)) => (false, text),
        (None, None) => return None,
    };
    // A seed is secret: the copies made here are wiped when dropped, as `SigningKey` wipes
    // its own.
    let mut bytes = Zeroizing::new([0u8; 33]);
    let key: Zeroizing<[u8; 32]> = match STANDARD.decode_slice(text, &mut *bytes) {
        Ok(32) => Zeroizing::new(bytes[..32].try_into().unwrap_or_default()),
        _ => {
            return Some(Err(
                "an Ed25519 key is base64 of 32 bytes after whpk_ or whsk_",
            ))
        }
    };
    if !public {
        return Some(Ok(AsymmetricKey::Signing(SigningKey::from_bytes(&key))));
    }
    Some(match VerifyingKey::from_bytes(&key) {
        Err(_) => Err("not an Ed25519 public key"),
        Ok(key) if key.is_weak() => Err("a small-order Ed25519 public key, which proves nothing"),
        Ok(key) => Ok(AsymmetricKey::Public(key)),
    })
}

/// What a `v1a` signature covers: the prefix (`{id}.{timestamp}.`) and the body, joined.
pub(crate) fn message(prefix: &Prefix<'_>, body: &[u8]) -> Vec<u8> {
    let parts = prefix.parts();
    let mut message = Vec::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + body.len());
    for part in parts {
        message.extend_from_slice(part);
    }
    message.extend_from_slice(body);
    message
}

/// Whether `signature` is `key`'s over `message`, strictly.
pub(crate) fn verifies(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    let signature = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(message, &signature).is_ok()
}

/// A fixed-size digest of a verified signature, standing for it where a tag is kept.
pub(crate) fn digest(signature: &Signature) -> Tag {
    Sha256::digest(signature).into()
}

/// The `v1a,<base64>` entry signing `message` with `key`.
pub(crate) fn sign(key: &SigningKey, message: &[u8]) -> String {
    format!("v1a,{}", STANDARD.encode(key.sign(message).to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=";

    fn signing() -> SigningKey {
        match decode(SEED) {
            Some(Ok(AsymmetricKey::Signing(key))) => key,
            _ => panic!("a seed"),
        }
    }

    #[test]
    fn small_order_and_malformed_keys_are_refused() {
        // The identity point: a public key of order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = format!("whpk_{}", STANDARD.encode(identity));
        assert!(matches!(decode(&key), Some(Err(_))));
        for bad in [
            "whpk_",
            "whpk_AAAA",
            "whsk_!!!!",
            &format!("whpk_{}", STANDARD.encode([7u8; 31])),
        ] {
            assert!(matches!(decode(bad), Some(Err(_))), "{bad}");
        }
        assert!(decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
    }

    #[test]
    fn a_non_canonical_signature_is_refused() {
        let key = signing();
        let message = b"msg_1.1614265330.{}";
        let signature = key.sign(message).to_bytes();
        assert!(verifies(&key.verifying_key(), message, &signature));
        // The same signature with s + L, the group order: the same point equation holds, but
        // the encoding is not canonical, so a strict verifier refuses it.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut malleated = signature;
        let mut carry = 0u16;
        for (byte, l) in malleated[32..].iter_mut().zip(L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        assert!(!verifies(&key.verifying_key(), message, &malleated));
    }

    #[test]
    fn the_digest_stands_for_the_signature() {
        let a = signing().sign(b"a").to_bytes();
        let b = signing().sign(b"b").to_bytes();
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(digest(&a), digest(&a));
    }
}
