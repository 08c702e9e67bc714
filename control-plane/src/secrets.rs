//! Random identifiers, API keys and admin tokens, and how they are stored (SHA-256, never plaintext).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
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

/// Encrypts with ChaCha20-Poly1305 under `key`: base64(nonce || ciphertext || tag).
pub fn seal(key: &[u8; 32], plaintext: &[u8]) -> String {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let nonce = random::<12>();
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .unwrap_or_default(),
    );
    STANDARD.encode(out)
}

/// Decrypts what [`seal`] made; `None` if the key is wrong or the text was altered.
pub fn open(key: &[u8; 32], sealed: &str) -> Option<Vec<u8>> {
    let raw = STANDARD.decode(sealed).ok()?;
    let (nonce, ct) = raw.split_at_checked(12)?;
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
        let sealed = seal(&k, b"sk_test_123");
        assert_eq!(open(&k, &sealed).as_deref(), Some(&b"sk_test_123"[..]));
        assert!(open(&derive_key("test", b"other"), &sealed).is_none());
        assert!(!sealed.contains("sk_test"));
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
