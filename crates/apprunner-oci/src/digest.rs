//! Content digests as registries and `BuildKit` write them: `sha256:<hex>`.

use sha2::{Digest, Sha256};

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
