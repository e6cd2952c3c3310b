//! Console protocol: a domain's output and input byte streams, between a
//! domain (frontend) and `console-dom` (backend).
//!
//! `Write` carries up to [`CHUNK`] bytes of output, never past a line's end
//! (a frontend that breaks this may see its own lines cut or repeated
//! across a restart). The answer comes once every byte of it is on the
//! UART: a domain that writes faster than the UART drains waits for slots,
//! and after a backend restart the unanswered writes are exactly the ones
//! to send again.
//! `Read` asks for input; the answer carries up to [`CHUNK`] bytes when some
//! arrive while this domain has the focus. A frontend keeps one `Read` posted.
//!
//! The control domain's console ring may also look at other domains'
//! consoles (console-dom refuses these from anyone else, `Denied`):
//! - `Peek` reads `domain`'s output as a byte stream: every byte a domain
//!   printed has a stream offset, counted from its first. The answer carries
//!   up to [`CHUNK`] bytes from `offset` and, in its own `offset`, where they
//!   start (later than asked when older bytes were cut from the history).
//!   At the end of a console still open, a `Peek` with `len` non-zero waits
//!   for more output (a long poll); with `len` zero it is answered empty at
//!   once. `status` is `Disconnected` when the console is closed and nothing
//!   is left, `NoDevice` when console-dom knows nothing of `domain`.
//! - `Type` gives `data[..len]` to `domain` as typed input.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const CONSOLE_VERSION: u32 = 2;

/// Makes a line of a domain's output safe to put on a terminal, in place:
/// every control character (C0 but tab, DEL, and C1 as UTF-8 `C2 80`-`C2
/// 9F`) becomes `?`. A domain's `\r` or escape sequence could otherwise
/// move the cursor and forge a line of another domain or of the kernel
/// on the console, or drive the host's terminal. The kernel and
/// console-dom pass every line through it before printing or keeping it.
pub fn make_printable(line: &mut [u8]) {
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            line[i] = b'?';
        } else if b == 0xc2 && line.get(i + 1).is_some_and(|&n| (0x80..0xa0).contains(&n)) {
            line[i] = b'?';
            line[i + 1] = b'?';
            i += 1;
        }
        i += 1;
    }
}

/// Bytes of data in one message.
pub const CHUNK: usize = 40;

/// What a console request asks.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleOp {
    Write = 1,
    Read = 2,
    Peek = 3,
    Type = 4,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ConsoleRequest {
    pub id: u64,
    /// A [`ConsoleOp`].
    pub op: u16,
    /// Bytes of `data` used (`Write`, `Type`), the most wanted (`Read`), or
    /// whether to wait for output (`Peek`).
    pub len: u16,
    /// The domain looked at (`Peek`, `Type`); 0 otherwise.
    pub domain: u32,
    /// Stream offset (`Peek`).
    pub offset: u64,
    pub data: [u8; CHUNK],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ConsoleResponse {
    pub id: u64,
    /// 0 success; otherwise a [`crate::proto::control::Status`].
    pub status: u32,
    /// Bytes of `data` used (`Read`, `Peek`).
    pub len: u16,
    /// [`RESPONSE_MORE`], or 0.
    pub flags: u16,
    /// Stream offset of `data[0]` (`Peek`).
    pub offset: u64,
    pub data: [u8; CHUNK],
}

/// `ConsoleResponse::flags` of a `Peek`: more output than this chunk was
/// already kept when it was answered (a reader that has not caught up).
pub const RESPONSE_MORE: u16 = 1;

const _: () = assert!(core::mem::size_of::<ConsoleRequest>() == 64);
const _: () = assert!(core::mem::size_of::<ConsoleResponse>() == 64);

/// A checked console request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console<'a> {
    Write(&'a [u8]),
    Read,
    Peek {
        domain: u32,
        offset: u64,
        wait: bool,
    },
    Type {
        domain: u32,
        data: &'a [u8],
    },
}

impl ConsoleRequest {
    /// The request, if it is well formed.
    pub fn check(&self) -> Option<Console<'_>> {
        let len = self.len as usize;
        match self.op {
            1 if len <= CHUNK => Some(Console::Write(&self.data[..len])),
            2 => Some(Console::Read),
            3 => Some(Console::Peek {
                domain: self.domain,
                offset: self.offset,
                wait: self.len != 0,
            }),
            4 if len <= CHUNK => Some(Console::Type {
                domain: self.domain,
                data: &self.data[..len],
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod printable_tests {
    use super::make_printable;

    #[test]
    fn control_characters_become_question_marks_and_text_stays() {
        let mut line = *b"ok\r[0] forged\x1b[2J\x7f tab\there \xc2\x9b31m caf\xc3\xa9";
        make_printable(&mut line);
        assert_eq!(&line, b"ok?[0] forged?[2J? tab\there ??31m caf\xc3\xa9");
    }
}
