//! DSSE (Dead Simple Signing Envelope) as in-toto and cosign use it: what is signed is the
//! pre-authentication encoding of the payload and its type, never the payload's JSON alone, so a
//! signature cannot be moved to another type of document. Signing and checking (a key) are the
//! service crate's; here is what is signed and the envelope that carries it.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD: &str = "application/vnd.in-toto+json";

/// What a DSSE signature is over: `DSSEv1 <len(type)> <type> <len(payload)> <payload>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A signed payload: base64 of the payload, and base64 signatures over its `pae`. Its fields in
/// cosign's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// cosign writes an empty key id for a key given as a file.
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// Why an envelope's payload cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("its payload is not base64")]
    NotBase64,
}

impl Envelope {
    /// The in-toto statement `payload` with the one signature `sig_b64` (over `pae` of both).
    pub fn in_toto(payload: &[u8], sig_b64: String) -> Self {
        Self {
            payload_type: IN_TOTO_PAYLOAD.into(),
            payload: base64::engine::general_purpose::STANDARD.encode(payload),
            signatures: vec![Signature { keyid: String::new(), sig: sig_b64 }],
        }
    }

    /// The payload's bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        base64::engine::general_purpose::STANDARD.decode(&self.payload).map_err(|_| EnvelopeError::NotBase64)
    }

    /// The bytes each signature must be over.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(pae(&self.payload_type, &self.payload_bytes()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_is_the_specifications() {
        // The DSSE specification's own example (protocol.md).
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        let e = Envelope::in_toto(b"{}", "c2ln".into());
        assert_eq!(
            String::from_utf8(crate::to_bytes(&e)).unwrap(),
            r#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"c2ln"}]}"#
        );
        assert_eq!(e.signed_bytes().unwrap(), b"DSSEv1 28 application/vnd.in-toto+json 2 {}");
    }
}
