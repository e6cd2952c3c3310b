//! The management protocol over the network: what the host `toolstack`
//! command and domain 0 agree on when the frames of [`crate::mgmt`] travel
//! over TCP instead of COM2.
//!
//! Owns: the Noise handshake pattern both sides run, how an encrypted
//! message is delimited on the TCP stream, the `mgmt-net=` word on domain
//! 0's command line (its address, port and MAC), where the keys are in the
//! boot bundle, and the text form of a key.
//!
//! ```text
//! TCP stream: ( length: u16 big-endian | Noise message of that length )*
//! handshake:  Noise XX (three messages, client first), then every message
//!             is a transport message holding a piece of the mgmt byte stream
//! ```
//!
//! The client is the initiator. Domain 0 answers a client whose static key
//! is not in the bundle's authorised keys by closing the connection. A
//! message that fails to decrypt (changed, replayed, reordered) ends the
//! connection: Noise's nonces make every message count exactly once.

use crate::proto::net::{parse_mac, Mac, MacText};

/// The Noise protocol name: XX (each side sends its static key, encrypted),
/// X25519, ChaCha20-Poly1305, BLAKE2s.
pub const NOISE_PATTERN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// The longest Noise message (the specification's limit).
pub const MAX_MESSAGE: usize = 65535;
/// Bytes of authentication tag in each transport message.
pub const TAG_LEN: usize = 16;
/// The most management bytes one transport message carries.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG_LEN;
/// Bytes of the length before each message.
pub const LENGTH_LEN: usize = 2;
/// The TCP port domain 0 listens on unless its command line says otherwise.
pub const DEFAULT_PORT: u16 = 7070;
/// The key length of X25519 (public and private).
pub const KEY_LEN: usize = 32;
/// A public or private X25519 key.
pub type Key = [u8; KEY_LEN];

/// Domain 0's command-line word naming its management endpoint.
pub const WORD: &str = "mgmt-net";
/// Domain 0's private key in the boot bundle (64 hex digits). Without it,
/// domain 0 makes one at boot and prints its public half.
pub const HOST_KEY_PATH: &str = "mgmt/host.key";
/// The public keys of the clients domain 0 serves, one per line (64 hex
/// digits, then an optional comment; `#` starts a comment line).
pub const AUTHORIZED_KEYS_PATH: &str = "mgmt/authorized_keys";

/// Where domain 0 listens: `mgmt-net=A.B.C.D/N[:PORT],mac=MAC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: [u8; 4],
    pub prefix: u8,
    pub port: u16,
    pub mac: Mac,
}

impl Endpoint {
    /// Parses the value of the `mgmt-net=` word.
    pub fn parse(value: &str) -> Option<Endpoint> {
        let (addr, rest) = value.split_once(',')?;
        let mac = parse_mac(rest.strip_prefix("mac=")?)?;
        if crate::proto::net::is_group(&mac) {
            return None;
        }
        let (cidr, port) = match addr.split_once(':') {
            Some((c, p)) => (c, p.parse().ok().filter(|&p: &u16| p != 0)?),
            None => (addr, DEFAULT_PORT),
        };
        let (ip, prefix) = cidr.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|&p| (1..=32).contains(&p))?;
        let mut address = [0u8; 4];
        let mut n = 0;
        for part in ip.split('.') {
            if part.is_empty() || part.len() > 3 {
                return None;
            }
            *address.get_mut(n)? = part.parse().ok()?;
            n += 1;
        }
        (n == 4).then_some(Endpoint {
            address,
            prefix,
            port,
            mac,
        })
    }

    /// Finds the word on a command line.
    pub fn from_command_line(line: &str) -> Option<Endpoint> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(WORD)?.strip_prefix('='))
            .and_then(Endpoint::parse)
    }
}

impl core::fmt::Display for Endpoint {
    /// The whole word, `mgmt-net=...`, as `parse` reads its value.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let a = self.address;
        write!(
            f,
            "{WORD}={}.{}.{}.{}/{}:{},mac={}",
            a[0],
            a[1],
            a[2],
            a[3],
            self.prefix,
            self.port,
            MacText(self.mac)
        )
    }
}

/// A key from its 64 hex digits (surrounding blanks ignored).
pub fn parse_key(text: &str) -> Option<Key> {
    let text = text.trim();
    if text.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// Writes a key as 64 lower-case hex digits.
pub struct KeyText<'a>(pub &'a Key);

impl core::fmt::Display for KeyText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The keys of an authorised-keys text; a line that is not a key (beyond
/// comments and blank lines) is an error naming its number (from 1).
pub fn authorized_keys(text: &str) -> impl Iterator<Item = Result<Key, usize>> + '_ {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let word = line.split_whitespace().next().unwrap_or("");
        Some(parse_key(word).ok_or(i + 1))
    })
}

/// How long the message whose length bytes start `buffered` is, once
/// those two bytes are there.
pub fn message_len(buffered: &[u8]) -> Option<usize> {
    match buffered {
        [hi, lo, ..] => Some(usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => None,
    }
}

/// The length bytes before a message of `len` bytes (at most [`MAX_MESSAGE`]).
pub fn length_bytes(len: usize) -> Option<[u8; LENGTH_LEN]> {
    u16::try_from(len).ok().map(u16::to_be_bytes)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn an_endpoint_reads_back_what_it_writes() {
        let e = Endpoint::parse("10.0.2.9/24:7071,mac=00:16:3e:00:00:02").unwrap();
        assert_eq!(e.address, [10, 0, 2, 9]);
        assert_eq!((e.prefix, e.port), (24, 7071));
        assert_eq!(e.mac, [0, 0x16, 0x3e, 0, 0, 2]);
        let word = e.to_string();
        assert_eq!(word, "mgmt-net=10.0.2.9/24:7071,mac=00:16:3e:00:00:02");
        assert_eq!(
            Endpoint::from_command_line(&std::format!("toolstack-domain mgmt=com2 {word}")),
            Some(e)
        );
        let default = Endpoint::parse("10.0.2.9/24,mac=00:16:3e:00:00:02").unwrap();
        assert_eq!(default.port, DEFAULT_PORT);
    }

    #[test]
    fn a_malformed_endpoint_is_refused() {
        for bad in [
            "",
            "10.0.2.9/24",
            "10.0.2.9,mac=00:16:3e:00:00:02",
            "10.0.2/24,mac=00:16:3e:00:00:02",
            "10.0.2.9.1/24,mac=00:16:3e:00:00:02",
            "10.0.2.256/24,mac=00:16:3e:00:00:02",
            "10.0.2.9/33,mac=00:16:3e:00:00:02",
            "10.0.2.9/0,mac=00:16:3e:00:00:02",
            "10.0.2.9/24:0,mac=00:16:3e:00:00:02",
            "10.0.2.9/24:65536,mac=00:16:3e:00:00:02",
            "10.0.2.9/24,mac=01:16:3e:00:00:02",
            "10.0.2.9/24,mac=00:16:3e:00:00",
            "10.0.2.9/24,ma=00:16:3e:00:00:02",
        ] {
            assert_eq!(Endpoint::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn keys_read_back_and_bad_lines_are_named() {
        let key: Key = core::array::from_fn(|i| i as u8 * 7);
        let text = KeyText(&key).to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(parse_key(&text), Some(key));
        assert_eq!(parse_key(&text[1..]), None);
        assert_eq!(parse_key(&text.replace('0', "g")), None);
        let list = std::format!("# clients\n\n{text} alice@laptop\nnot-a-key\n  {text}\n");
        let read: std::vec::Vec<_> = authorized_keys(&list).collect();
        assert_eq!(read, [Ok(key), Err(4), Ok(key)]);
    }

    #[test]
    fn message_lengths_are_two_bytes_big_endian() {
        assert_eq!(length_bytes(0x1234), Some([0x12, 0x34]));
        assert_eq!(length_bytes(MAX_MESSAGE + 1), None);
        assert_eq!(message_len(&[0x12, 0x34, 9]), Some(0x1234));
        assert_eq!(message_len(&[0x12]), None);
    }
}
