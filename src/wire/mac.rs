//! The MAC of `--sign-key`: HMAC-SHA256, truncated, verified in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the HMAC kept in `m`; written as twice as many hex digits.
pub const MAC_BYTES: usize = 16;

/// HMAC-SHA256 with the shared key, truncated to [`MAC_BYTES`].
#[derive(Clone)]
pub struct Signer(Hmac<Sha256>);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

pub(super) const MAC_LEN: usize = "&m=".len() + 2 * MAC_BYTES;

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        // HMAC takes keys of any length (a long one is hashed first), so this cannot fail.
        match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(mac) => Signer(mac),
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }

    pub(super) fn tag(&self, signed: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = self.0.clone();
        mac.update(signed);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; MAC_BYTES];
        tag.copy_from_slice(&full[..MAC_BYTES]);
        tag
    }

    /// Whether `tag` is the MAC of `signed`, compared in constant time.
    pub fn verify(&self, signed: &[u8], tag: &[u8; MAC_BYTES]) -> bool {
        let mut mac = self.0.clone();
        mac.update(signed);
        mac.verify_truncated_left(tag).is_ok()
    }
}
