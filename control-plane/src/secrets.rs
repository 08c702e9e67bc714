//! Random identifiers, API keys and admin tokens, and how they are stored (SHA-256, never plaintext).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// Bytes of randomness in an API key (192 bits; the brief asks for at least 128).
pub const KEY_RANDOM_BYTES: usize = 24;
/// Bytes of randomness in an admin or gateway token.
pub const TOKEN_RANDOM_BYTES: usize = 32;
/// Characters of a key kept in clear for display (`tg_AbC1…`): enough to tell keys apart, far too
/// few to guess the rest.
pub const KEY_PREFIX_CHARS: usize = 7;

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS RNG failing is not something to limp on with a weaker key.
    if getrandom::fill(&mut b).is_err() {
        std::process::abort();
    }
    b
}

/// A new API key: `tg_` + 192 random bits, URL-safe.
pub fn new_api_key() -> String {
    format!(
        "tg_{}",
        URL_SAFE_NO_PAD.encode(random::<KEY_RANDOM_BYTES>())
    )
}

/// A new admin token: `tga_` + 256 random bits.
pub fn new_admin_token() -> String {
    format!(
        "tga_{}",
        URL_SAFE_NO_PAD.encode(random::<TOKEN_RANDOM_BYTES>())
    )
}

/// A new gateway token: `tgw_` + 256 random bits.
pub fn new_gateway_token() -> String {
    format!(
        "tgw_{}",
        URL_SAFE_NO_PAD.encode(random::<TOKEN_RANDOM_BYTES>())
    )
}

/// A new developer (account-scoped) token: `tgd_` + 256 random bits.
pub fn new_account_token() -> String {
    format!(
        "tgd_{}",
        URL_SAFE_NO_PAD.encode(random::<TOKEN_RANDOM_BYTES>())
    )
}

/// A new portal session cookie value: 256 random bits.
pub fn new_session_token() -> String {
    URL_SAFE_NO_PAD.encode(random::<TOKEN_RANDOM_BYTES>())
}

/// Bytes of randomness in a webhook signing secret (`whsec_` + base64 of them; the Standard
/// Webhooks specification asks for 24 to 64).
pub const WEBHOOK_SECRET_BYTES: usize = 24;

/// The random bytes of a new webhook signing secret.
pub fn random_webhook_secret() -> [u8; WEBHOOK_SECRET_BYTES] {
    random::<WEBHOOK_SECRET_BYTES>()
}

/// A random 64-bit number (retry jitter).
pub fn random_u64() -> u64 {
    u64::from_le_bytes(random::<8>())
}

/// 16 random bytes (password salts).
pub fn random_salt() -> [u8; 16] {
    random::<16>()
}

/// A 256-bit key derived from a secret and a purpose (domain separation).
pub fn derive_key(purpose: &str, secret: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(purpose.as_bytes())
        .chain_update([0u8])
        .chain_update(secret)
        .finalize()
        .into()
}

/// Where a sealed value belongs (its associated data): the table, the field and the owning row or
/// settings key. A value sealed for one place does not open in another, so someone with write
/// access to the database cannot move a secret between fields or rows (for example the webhook
/// secret into the API key's field) and have Tollgate use it as the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedAt<'a> {
    pub table: &'a str,
    pub field: &'a str,
    pub row: &'a str,
}

impl SealedAt<'_> {
    /// The associated data: a version tag, then each part with its length (so no two places
    /// encode alike, whatever bytes a row key holds).
    fn associated_data(&self) -> Vec<u8> {
        let mut ad = b"tollgate sealed v2".to_vec();
        for part in [self.table, self.field, self.row] {
            ad.extend((part.len() as u64).to_be_bytes());
            ad.extend(part.as_bytes());
        }
        ad
    }
}

impl std::fmt::Display for SealedAt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{} of {}", self.table, self.field, self.row)
    }
}

/// The prefix of the current sealed format: `v2:` + base64(nonce || ciphertext || tag), sealed
/// with [`SealedAt`] as associated data. Values without it are the first format (no associated
/// data), read only to be re-sealed ([`open_v1`]).
pub const SEALED_V2_PREFIX: &str = "v2:";
const NONCE_BYTES: usize = 12;

/// Why a sealed value did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Sealed in the first format (no associated data): only [`open_v1`] reads it.
    FirstFormat,
    /// Not base64 of a nonce and a tag.
    Malformed,
    /// Sealed with another key, for another place, or altered.
    Refused,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpenError::FirstFormat => "sealed in the first format, without its place; a server start re-seals it",
            OpenError::Malformed => "not a sealed value",
            OpenError::Refused => {
                "does not open here: sealed with another master key, for another field or row, or altered"
            }
        })
    }
}

/// Encrypts with ChaCha20-Poly1305 under `key`, bound to `at`: `v2:` + base64(nonce || ciphertext || tag).
pub fn seal(key: &[u8; 32], plaintext: &[u8], at: SealedAt<'_>) -> String {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let nonce = random::<NONCE_BYTES>();
    let ad = at.associated_data();
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &ad,
                },
            )
            .unwrap_or_default(),
    );
    format!("{SEALED_V2_PREFIX}{}", STANDARD.encode(out))
}

/// Decrypts what [`seal`] made for the same place `at`.
pub fn open(key: &[u8; 32], sealed: &str, at: SealedAt<'_>) -> Result<Vec<u8>, OpenError> {
    let Some(body) = sealed.strip_prefix(SEALED_V2_PREFIX) else {
        return Err(if STANDARD.decode(sealed).is_ok() {
            OpenError::FirstFormat
        } else {
            OpenError::Malformed
        });
    };
    let raw = STANDARD.decode(body).map_err(|_| OpenError::Malformed)?;
    let (nonce, ct) = raw
        .split_at_checked(NONCE_BYTES)
        .ok_or(OpenError::Malformed)?;
    let ad = at.associated_data();
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &ad })
        .map_err(|_| OpenError::Refused)
}

/// Decrypts a value of the first format (base64(nonce || ciphertext || tag), no associated
/// data), so that it can be re-sealed with [`seal`]; `None` if the key is wrong or the text was
/// altered. A `v2:` value never opens here (its tag covers associated data).
pub fn open_v1(key: &[u8; 32], sealed: &str) -> Option<Vec<u8>> {
    let raw = STANDARD.decode(sealed).ok()?;
    let (nonce, ct) = raw.split_at_checked(NONCE_BYTES)?;
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(Nonce::from_slice(nonce), ct)
        .ok()
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn key_prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX_CHARS).collect()
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The last id value this process made (see [`new_id`]).
static LAST_ID: std::sync::Mutex<u128> = std::sync::Mutex::new(0);

/// A time-ordered id: `<prefix>_` + 48-bit milliseconds + 80 random bits in Crockford base32 (ULID
/// layout). Sorting ids sorts by creation, which cursor pagination relies on.
///
/// Monotonic within the process (ULID's monotonic variant): an id made in the same millisecond as
/// the previous one (or after the clock stepped back) is the previous one plus one, so two creates
/// in one millisecond still list in creation order. Across replicas, ids of one millisecond sort
/// in an arbitrary but stable order.
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let rand = random::<10>();
    let mut fresh: u128 = u128::from(millis & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in rand.iter().enumerate() {
        fresh |= u128::from(*b) << (72 - 8 * i);
    }
    let value = {
        // A poisoned lock still holds a valid last value (a plain integer).
        let mut last = LAST_ID.lock().unwrap_or_else(|e| e.into_inner());
        let next = if fresh >> 80 <= *last >> 80 {
            // 80 random bits leave ~2^79 increments before the millisecond field would carry.
            *last + 1
        } else {
            fresh
        };
        *last = next;
        next
    };
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        out.push(char::from(ALPHABET[((value >> (5 * i)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: SealedAt<'static> = SealedAt {
        table: "payment_gateway",
        field: "secret_key",
        row: "1",
    };

    #[test]
    fn ids_made_in_one_millisecond_sort_in_creation_order() {
        let ids: Vec<String> = (0..2000).map(|_| new_id("svc")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
    }

    #[test]
    fn seals_and_opens() {
        let k = derive_key("test", b"secret");
        let sealed = seal(&k, b"sk_test_123", AT);
        assert!(sealed.starts_with(SEALED_V2_PREFIX));
        assert_eq!(open(&k, &sealed, AT).as_deref(), Ok(&b"sk_test_123"[..]));
        assert_eq!(
            open(&derive_key("test", b"other"), &sealed, AT),
            Err(OpenError::Refused)
        );
        assert!(!sealed.contains("sk_test"));
    }

    #[test]
    fn a_sealed_value_opens_only_where_it_was_sealed() {
        let k = derive_key("test", b"secret");
        let sealed = seal(&k, b"sk_test_123", AT);
        for elsewhere in [
            SealedAt {
                field: "webhook_secret",
                ..AT
            },
            SealedAt { row: "2", ..AT },
            SealedAt {
                table: "idempotency_keys",
                ..AT
            },
            // Lengths are encoded: moving a character between parts is another place.
            SealedAt {
                field: "secret_key1",
                row: "",
                ..AT
            },
        ] {
            assert_eq!(open(&k, &sealed, elsewhere), Err(OpenError::Refused));
        }
        // Stripping the version does not make it a first-format value that opens.
        let stripped = sealed.trim_start_matches(SEALED_V2_PREFIX);
        assert!(open_v1(&k, stripped).is_none());
    }

    #[test]
    fn first_format_values_open_only_through_open_v1() {
        let k = derive_key("test", b"secret");
        // What the first format's `seal` wrote: base64(nonce || ciphertext || tag), no data.
        let nonce = [7u8; NONCE_BYTES];
        let mut raw = nonce.to_vec();
        raw.extend(
            ChaCha20Poly1305::new(Key::from_slice(&k))
                .encrypt(Nonce::from_slice(&nonce), &b"whsec_abc"[..])
                .unwrap(),
        );
        let v1 = STANDARD.encode(raw);
        assert_eq!(open(&k, &v1, AT), Err(OpenError::FirstFormat));
        assert_eq!(open_v1(&k, &v1).as_deref(), Some(&b"whsec_abc"[..]));
        assert_eq!(open(&k, "v2:***", AT), Err(OpenError::Malformed));
    }

    #[test]
    fn keys_are_long_random_and_hash_stably() {
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a, b);
        assert!(a.starts_with("tg_") && a.len() == 3 + 32, "{a}");
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(key_prefix(&a).len(), KEY_PREFIX_CHARS);
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let a = new_id("app");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("app");
        assert!(a < b, "{a} {b}");
        assert_eq!(a.len(), 4 + 26);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
