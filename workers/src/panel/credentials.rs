//! The credentials of a new panel client: its UUID (VLESS, VMess, TUIC) and passwords
//! (trojan, shadowsocks, hysteria, tuic, …). These are what a customer connects with, so
//! whoever could predict them would use the service: every byte comes from the operating
//! system's RNG (`getrandom`), never from a seeded generator, and a failure to read it is an
//! error, never a fallback.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The operating system's RNG could not be read.
#[derive(Debug, thiserror::Error)]
#[error("no random bytes from the operating system: {0}")]
pub struct RandomUnavailable(String);

/// One client's fresh secrets.
pub struct ClientCredentials {
    /// A version 4 UUID, as the panel's frontend makes.
    pub uuid: String,
    /// 16 letters and digits (about 95 bits).
    pub password: String,
    /// Standard base64 of 32 random bytes (shadowsocks 2022 with a 256-bit key, shadowtls).
    pub key_32: String,
    /// Standard base64 of 16 random bytes (shadowsocks 2022 with a 128-bit key).
    pub key_16: String,
}

// No Debug: these are secrets.

impl ClientCredentials {
    pub fn generate() -> Result<Self, RandomUnavailable> {
        Ok(Self {
            uuid: random_uuid()?,
            password: random_alphanumeric(16)?,
            key_32: random_base64(32)?,
            key_16: random_base64(16)?,
        })
    }

    /// The panel's `config` object: every protocol's entry, as its own frontend fills it
    /// (`randomConfigs`), each named after the client (before 1.5 the server does not do it).
    pub fn panel_config(&self, name: &str) -> Value {
        let (uuid, password) = (&self.uuid, &self.password);
        json!({
            "mixed": {"username": name, "password": password},
            "socks": {"username": name, "password": password},
            "http": {"username": name, "password": password},
            "naive": {"username": name, "password": password},
            "shadowsocks": {"name": name, "password": self.key_32},
            "shadowsocks16": {"name": name, "password": self.key_16},
            "shadowtls": {"name": name, "password": self.key_32},
            "vmess": {"name": name, "uuid": uuid, "alterId": 0},
            "vless": {"name": name, "uuid": uuid, "flow": ""},
            "trojan": {"name": name, "password": password},
            "hysteria": {"name": name, "auth_str": password},
            "hysteria2": {"name": name, "password": password},
            "tuic": {"name": name, "uuid": uuid, "password": password},
            "anytls": {"name": name, "password": password},
        })
    }
}

fn os_random(bytes: &mut [u8]) -> Result<(), RandomUnavailable> {
    getrandom::fill(bytes).map_err(|e| RandomUnavailable(e.to_string()))
}

fn random_uuid() -> Result<String, RandomUnavailable> {
    let mut bytes = [0u8; 16];
    os_random(&mut bytes)?;
    // The builder sets the version (4) and variant (RFC 9562) bits.
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string())
}

fn random_base64(len: usize) -> Result<String, RandomUnavailable> {
    let mut bytes = vec![0u8; len];
    os_random(&mut bytes)?;
    Ok(STANDARD.encode(bytes))
}

/// `len` characters drawn uniformly from letters and digits: a byte is kept only below the
/// largest multiple of 62 (248), so no character is likelier than another.
fn random_alphanumeric(len: usize) -> Result<String, RandomUnavailable> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const LIMIT: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut out = String::with_capacity(len);
    let mut buffer = [0u8; 64];
    while out.len() < len {
        os_random(&mut buffer)?;
        for &byte in buffer.iter().filter(|&&b| b < LIMIT) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[usize::from(byte) % ALPHABET.len()] as char);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn alphanumeric_uses_the_whole_alphabet_evenly() {
        let text: String = (0..200)
            .map(|_| random_alphanumeric(50).expect("random"))
            .collect();
        assert_eq!(text.len(), 10_000);
        let mut counts = std::collections::HashMap::<char, usize>::new();
        for c in text.chars() {
            assert!(c.is_ascii_alphanumeric(), "{c:?}");
            *counts.entry(c).or_default() += 1;
        }
        assert_eq!(counts.len(), 62, "every letter and digit appears");
        // Expected 161 each; a biased or broken draw lands far outside this band.
        for (c, n) in counts {
            assert!((80..=260).contains(&n), "{c:?} drawn {n} times of 10,000");
        }
    }

    #[test]
    fn many_draws_never_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..2_000 {
            let c = ClientCredentials::generate().expect("random");
            assert!(seen.insert(c.uuid));
            assert!(seen.insert(c.password));
            assert!(seen.insert(c.key_32));
            assert!(seen.insert(c.key_16));
        }
    }
}
