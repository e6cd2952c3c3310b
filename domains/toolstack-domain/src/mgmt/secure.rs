//! The encryption and authentication of one management connection over TCP
//! (`ipc_abi::mgmt_net`): Noise XX as the responder, with snow.
//!
//! Owns: the connection's Noise state (handshake, then transport), cutting
//! the TCP byte stream into length-delimited messages, checking the
//! client's static key against the authorised keys, and turning answers
//! into encrypted messages. Anything that does not decrypt ends the
//! connection (a changed, replayed or reordered message included).

extern crate alloc;
use alloc::boxed::Box;
use alloc::vec::Vec;
use domain_runtime::ipc_abi::mgmt_net::{
    length_bytes, message_len, Key, KEY_LEN, LENGTH_LEN, MAX_MESSAGE, MAX_PLAINTEXT, NOISE_PATTERN,
};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{HandshakeState, TransportState};

/// Why a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A message that is not what the protocol allows here, or that does
    /// not decrypt.
    Garbled,
    /// A client whose key is not authorised (the key).
    Unauthorised(Key),
    /// No random numbers for the handshake.
    NoRandom,
}

/// The CPU's random numbers, for snow.
struct CpuRandom;

impl Random for CpuRandom {
    fn try_fill_bytes(&mut self, out: &mut [u8]) -> Result<(), snow::Error> {
        domain_runtime::random::fill(out).map_err(|_| snow::Error::Rng)
    }
}

/// snow's own ciphers, hash and curve, with the CPU's random numbers.
struct Resolver;

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(CpuRandom))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

fn builder() -> snow::Builder<'static> {
    let params = NOISE_PATTERN.parse().expect("the pattern is a Noise name");
    snow::Builder::with_resolver(params, Box::new(Resolver))
}

/// A new key pair (private, public) from the CPU's random numbers.
pub fn generate_keypair() -> Option<(Key, Key)> {
    let pair = builder().generate_keypair().ok()?;
    Some((
        pair.private.as_slice().try_into().ok()?,
        pair.public.as_slice().try_into().ok()?,
    ))
}

/// The public key of a private one.
pub fn public_key(private: &Key) -> Key {
    curve25519_dalek::MontgomeryPoint::mul_base_clamped(*private).to_bytes()
}

/// One connection's Noise state.
pub struct Secure {
    state: State,
    /// Bytes received not yet cut into messages.
    wire_in: Vec<u8>,
    /// Room to decrypt into.
    scratch: Vec<u8>,
}

enum State {
    Handshake(Box<HandshakeState>),
    Open(Box<TransportState>),
    Broken,
}

impl Secure {
    /// The responder's side of a new connection, with domain 0's private key.
    pub fn responder(private: &Key) -> Result<Secure, Refusal> {
        let hs = builder()
            .local_private_key(private)
            .and_then(|b| b.build_responder())
            .map_err(|_| Refusal::NoRandom)?;
        Ok(Secure {
            state: State::Handshake(Box::new(hs)),
            wire_in: Vec::new(),
            scratch: alloc::vec![0; MAX_MESSAGE],
        })
    }

    /// Whether the client is authenticated and data flows.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// How many more bytes it takes now (never more than one whole message
    /// waits here).
    pub fn room(&self) -> usize {
        let want = message_len(&self.wire_in).map_or(LENGTH_LEN, |n| LENGTH_LEN + n);
        want.saturating_sub(self.wire_in.len())
    }

    /// Takes bytes from the stream (at most [`Secure::room`]); management
    /// bytes they carry go to `plain`, handshake answers to `wire_out`.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        authorised: &dyn Fn(&Key) -> bool,
        plain: &mut Vec<u8>,
        wire_out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        self.wire_in.extend_from_slice(bytes);
        let Some(len) = message_len(&self.wire_in) else {
            return Ok(());
        };
        if self.wire_in.len() < LENGTH_LEN + len {
            return Ok(());
        }
        let message = core::mem::take(&mut self.wire_in);
        let message = &message[LENGTH_LEN..LENGTH_LEN + len];
        let result = self.take_message(message, authorised, plain, wire_out);
        if result.is_err() {
            self.state = State::Broken;
        }
        result
    }

    fn take_message(
        &mut self,
        message: &[u8],
        authorised: &dyn Fn(&Key) -> bool,
        plain: &mut Vec<u8>,
        wire_out: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        match &mut self.state {
            State::Open(t) => {
                let n = t
                    .read_message(message, &mut self.scratch)
                    .map_err(|_| Refusal::Garbled)?;
                plain.extend_from_slice(&self.scratch[..n]);
                Ok(())
            }
            State::Handshake(hs) => {
                hs.read_message(message, &mut self.scratch)
                    .map_err(|_| Refusal::Garbled)?;
                if !hs.is_handshake_finished() {
                    // The client's first message: answer with ours.
                    let n = hs
                        .write_message(&[], &mut self.scratch)
                        .map_err(|_| Refusal::Garbled)?;
                    push_message(wire_out, &self.scratch[..n]);
                    return Ok(());
                }
                let key: Key = hs
                    .get_remote_static()
                    .and_then(|k| <[u8; KEY_LEN]>::try_from(k).ok())
                    .ok_or(Refusal::Garbled)?;
                if !authorised(&key) {
                    return Err(Refusal::Unauthorised(key));
                }
                let State::Handshake(hs) = core::mem::replace(&mut self.state, State::Broken)
                else {
                    return Err(Refusal::Garbled);
                };
                let t = hs.into_transport_mode().map_err(|_| Refusal::Garbled)?;
                self.state = State::Open(Box::new(t));
                Ok(())
            }
            State::Broken => Err(Refusal::Garbled),
        }
    }

    /// Encrypts `plain` (management bytes) into messages on `wire_out`.
    pub fn send(&mut self, plain: &[u8], wire_out: &mut Vec<u8>) -> Result<(), Refusal> {
        let State::Open(t) = &mut self.state else {
            return Err(Refusal::Garbled);
        };
        for piece in plain.chunks(MAX_PLAINTEXT) {
            let n = t
                .write_message(piece, &mut self.scratch)
                .map_err(|_| Refusal::Garbled)?;
            push_message(wire_out, &self.scratch[..n]);
        }
        Ok(())
    }
}

/// Appends `message` with its length before it.
fn push_message(wire_out: &mut Vec<u8>, message: &[u8]) {
    if let Some(len) = length_bytes(message.len()) {
        wire_out.extend_from_slice(&len);
        wire_out.extend_from_slice(message);
    }
}
