//! A P-256 public key: what `verify --key` is given (`openssl pkey -pubout`, cosign's `.pub`),
//! and what checks the worker's own signatures.

use base64::Engine as _;
use ring::signature;

/// The DER prefix of a P-256 public key's `SubjectPublicKeyInfo`, before its 65-byte point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The uncompressed point (65 bytes).
    point: Vec<u8>,
    /// `SHA256:<hex>` of the `SubjectPublicKeyInfo` DER: how logs name the key.
    pub fingerprint: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint)
    }
}

impl PublicKey {
    pub(super) fn of_point(point: &[u8]) -> Self {
        let spki = [P256_SPKI_PREFIX, point].concat();
        let fingerprint = format!("SHA256:{}", crate::core::digest::Digest::of(&spki).hex());
        Self { point: point.to_vec(), fingerprint }
    }

    /// The key in `pem` (`-----BEGIN PUBLIC KEY-----`, a P-256 `SubjectPublicKeyInfo`).
    pub fn from_pem(pem: &str) -> Result<Self, &'static str> {
        let body = pem
            .split_once("-----BEGIN PUBLIC KEY-----")
            .and_then(|(_, rest)| rest.split_once("-----END PUBLIC KEY-----"))
            .map(|(body, _)| body.split_whitespace().collect::<String>())
            .ok_or("no PUBLIC KEY block")?;
        let der = base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| "the PEM block is not base64")?;
        match der.strip_prefix(P256_SPKI_PREFIX) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(Self::of_point(point)),
            _ => Err("not an ECDSA P-256 public key"),
        }
    }

    /// The key in the file at `path`: a regular file (not through a symlink), at most 16 KiB.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let shown = path.display();
        let text = super::read_key_file(path).map_err(|why| format!("public key {shown}: {why}"))?;
        Self::from_pem(&text).map_err(|why| {
            format!("public key {shown}: {why}; give the PEM public key of the signing key (openssl pkey -in signing.pem -pubout -out signing.pub)")
        })
    }

    /// Whether `signature_b64` (base64 of ASN.1 DER) is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64) else { return false };
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.point).verify(message, &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_key_is_read_from_its_pem_and_others_are_refused() {
        // The public half of the throwaway key in signing's tests (openssl pkey -pubout).
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEuY+hRZY/4ADP1TNpJZHSWLhUKmyy\nxcCqdpoeLv0M2hucxmVirgyUSajwiloS3HI4mn7UFDCB+PCc/IF8CUisaw==\n-----END PUBLIC KEY-----\n";
        let key = PublicKey::from_pem(pem).unwrap();
        assert!(key.fingerprint.starts_with("SHA256:"));
        assert_eq!(PublicKey::from_pem("x").unwrap_err(), "no PUBLIC KEY block");
        let rsa_like = "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----";
        assert_eq!(PublicKey::from_pem(rsa_like).unwrap_err(), "not an ECDSA P-256 public key");
    }
}
