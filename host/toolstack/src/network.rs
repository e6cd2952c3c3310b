//! The client's end of the management channel over the network
//! (`ipc_abi::mgmt_net`): TCP to domain 0, encrypted and mutually
//! authenticated with Noise XX (snow), the client as initiator.
//!
//! Owns: the client key file (`private HEX`, and optionally `host HEX`, the
//! machine's public key, checked at each connection), making keys, the
//! handshake, and a byte stream over the encrypted messages that the
//! management frames travel in as they would on COM2.

use ipc_abi::mgmt_net::{
    length_bytes, message_len, parse_key, Key, KeyText, LENGTH_LEN, MAX_MESSAGE, MAX_PLAINTEXT,
    NOISE_PATTERN,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Who the client is, and whom it expects to reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub private: Key,
    /// The machine's public key; when absent any machine is accepted (and
    /// its key is printed for the user to pin).
    pub host: Option<Key>,
}

impl Identity {
    /// Reads a key file: `private HEX` and optionally `host HEX` lines
    /// (`#` starts a comment).
    pub fn parse(text: &str) -> Result<Identity, String> {
        let mut private = None;
        let mut host = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let key = parse_key(value).ok_or_else(|| format!("line {}: not a key", i + 1))?;
            match word {
                "private" => private = Some(key),
                "host" => host = Some(key),
                other => return Err(format!("line {}: unknown word {other:?}", i + 1)),
            }
        }
        let private = private.ok_or("no `private` key")?;
        Ok(Identity { private, host })
    }

    pub fn load(path: &Path) -> Result<Identity, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Identity::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "# A Xenolith toolstack client key: keep it private. Its public half,\n\
             # for the machine's mgmt/authorized_keys: {}\nprivate {}\n",
            KeyText(&public_key(&self.private)),
            KeyText(&self.private)
        );
        if let Some(h) = self.host {
            text.push_str(&format!(
                "# The machine's public key, checked at each connection.\nhost {}\n",
                KeyText(&h)
            ));
        }
        text
    }
}

fn builder() -> snow::Builder<'static> {
    snow::Builder::new(NOISE_PATTERN.parse().expect("a Noise name"))
}

/// A new key pair (private, public).
pub fn generate_keypair() -> (Key, Key) {
    let pair = builder()
        .generate_keypair()
        .expect("the OS gives random numbers");
    let key = |v: Vec<u8>| Key::try_from(v.as_slice()).expect("32-byte keys");
    (key(pair.private), key(pair.public))
}

/// The public key of a private one (X25519 of the base point).
pub fn public_key(private: &Key) -> Key {
    curve25519_dalek::MontgomeryPoint::mul_base_clamped(*private).to_bytes()
}

/// The TCP stream cut into length-delimited messages.
struct Wire {
    tcp: TcpStream,
    /// Bytes read, not yet a whole message.
    wire_in: Vec<u8>,
}

impl Wire {
    fn send_message(&mut self, message: &[u8]) -> std::io::Result<()> {
        let len = length_bytes(message.len()).ok_or(std::io::ErrorKind::InvalidInput)?;
        let mut framed = Vec::with_capacity(LENGTH_LEN + message.len());
        framed.extend_from_slice(&len);
        framed.extend_from_slice(message);
        self.tcp.write_all(&framed)
    }

    /// Reads until one whole message is in.
    fn read_message(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(m) = self.take_message() {
                return Ok(m);
            }
            self.fill()?;
        }
    }

    /// One whole message, if one is in.
    fn take_message(&mut self) -> Option<Vec<u8>> {
        let len = message_len(&self.wire_in)?;
        if self.wire_in.len() < LENGTH_LEN + len {
            return None;
        }
        let m = self.wire_in[LENGTH_LEN..LENGTH_LEN + len].to_vec();
        self.wire_in.drain(..LENGTH_LEN + len);
        Some(m)
    }

    /// Reads what TCP has (or times out).
    fn fill(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 16384];
        let n = self.tcp.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.wire_in.extend_from_slice(&buf[..n]);
        Ok(())
    }
}

/// An encrypted, authenticated connection to a machine's domain 0.
pub struct SecureStream {
    wire: Wire,
    transport: snow::TransportState,
    /// Decrypted bytes not yet read.
    plain_in: Vec<u8>,
    scratch: Vec<u8>,
}

impl SecureStream {
    /// Connects to `address` (`HOST:PORT`) and runs the handshake; fails if
    /// the machine's key is not `identity.host` or the machine refuses us.
    pub fn connect(address: &str, identity: &Identity) -> Result<SecureStream, String> {
        let tcp = TcpStream::connect(address).map_err(|e| format!("{address}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let mut wire = Wire {
            tcp,
            wire_in: Vec::new(),
        };
        let mut hs = builder()
            .local_private_key(&identity.private)
            .and_then(|b| b.build_initiator())
            .map_err(|e| e.to_string())?;
        let mut scratch = vec![0u8; MAX_MESSAGE];
        let refused = |e: std::io::Error| {
            format!("{address}: the machine closed the connection during the handshake ({e}): is this client's key in its mgmt/authorized_keys?")
        };
        // -> e
        let n = hs
            .write_message(&[], &mut scratch)
            .map_err(|e| e.to_string())?;
        wire.send_message(&scratch[..n]).map_err(refused)?;
        // <- e, ee, s, es
        let answer = wire.read_message().map_err(refused)?;
        hs.read_message(&answer, &mut scratch)
            .map_err(|e| format!("{address}: the machine's handshake is not valid: {e}"))?;
        let theirs = hs
            .get_remote_static()
            .and_then(|k| Key::try_from(k).ok())
            .ok_or_else(|| format!("{address}: the machine sent no key"))?;
        if identity.host.is_some_and(|expected| expected != theirs) {
            return Err(format!(
                "{address}: the machine's key is {}, not the one this key file expects",
                KeyText(&theirs)
            ));
        }
        // -> s, se
        let n = hs
            .write_message(&[], &mut scratch)
            .map_err(|e| e.to_string())?;
        wire.send_message(&scratch[..n]).map_err(refused)?;
        let transport = hs.into_transport_mode().map_err(|e| e.to_string())?;
        Ok(SecureStream {
            wire,
            transport,
            plain_in: Vec::new(),
            scratch,
        })
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.wire.tcp.set_read_timeout(t)
    }
}

impl Read for SecureStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.plain_in.is_empty() {
            match self.wire.take_message() {
                Some(m) => {
                    let n = self
                        .transport
                        .read_message(&m, &mut self.scratch)
                        .map_err(|e| {
                            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                        })?;
                    self.plain_in.extend_from_slice(&self.scratch[..n]);
                }
                None => match self.wire.fill() {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                },
            }
        }
        let n = out.len().min(self.plain_in.len());
        out[..n].copy_from_slice(&self.plain_in[..n]);
        self.plain_in.drain(..n);
        Ok(n)
    }
}

impl Write for SecureStream {
    fn write(&mut self, plain: &[u8]) -> std::io::Result<usize> {
        let piece = &plain[..plain.len().min(MAX_PLAINTEXT)];
        let n = self
            .transport
            .write_message(piece, &mut self.scratch)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.wire.send_message(&self.scratch[..n])?;
        Ok(piece.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.wire.tcp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_reads_back_what_it_writes() {
        let (private, _) = generate_keypair();
        let (_, host) = generate_keypair();
        for id in [
            Identity {
                private,
                host: None,
            },
            Identity {
                private,
                host: Some(host),
            },
        ] {
            assert_eq!(Identity::parse(&id.to_text()), Ok(id.clone()));
        }
        assert!(Identity::parse("host 00").is_err());
        assert!(Identity::parse("").is_err());
        assert!(Identity::parse(&format!("public {}", KeyText(&private))).is_err());
    }

    #[test]
    fn the_public_key_is_the_pairs() {
        let (private, public) = generate_keypair();
        assert_eq!(public_key(&private), public);
    }
}
