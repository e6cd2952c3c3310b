//! `toolstack domain console`: a domain's console history, then its live
//! output; what is typed goes to the domain; Ctrl-] leaves (as `xl console`).
//!
//! Owns: the terminal (raw while attached, restored on every way out), a
//! thread reading standard input, and the loop that alternates sending what
//! was typed with reading output (each read waits about 100 ms on the
//! machine for something new, which paces the loop).

use std::io::{Read, Write};
use std::sync::mpsc;
use toolstack::{Client, Error};

/// Ctrl-]: leaves the console.
const LEAVE: u8 = 0x1d;

/// The terminal in raw mode for as long as this lives (if stdin is one).
struct RawTerminal {
    saved: Option<rustix::termios::Termios>,
}

impl RawTerminal {
    fn enter() -> RawTerminal {
        let stdin = rustix::stdio::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(stdin) else {
            return RawTerminal { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        if rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &raw).is_err() {
            return RawTerminal { saved: None };
        }
        RawTerminal { saved: Some(saved) }
    }

    fn is_raw(&self) -> bool {
        self.saved.is_some()
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                rustix::stdio::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}

/// How an attachment ended.
pub enum Ended {
    /// The user pressed Ctrl-].
    Left,
    /// The domain's console closed (it stopped) and everything was shown.
    Closed,
    /// `--no-follow`: the history has been shown.
    CaughtUp,
}

/// Shows `domain`'s console until Ctrl-], its end, or (with `follow` off)
/// the end of what it printed so far.
pub fn attach(client: &mut Client, domain: u32, follow: bool) -> Result<Ended, Error> {
    let terminal = RawTerminal::enter();
    let (typed, keys) = mpsc::channel::<Vec<u8>>();
    if follow {
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || typed.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    if terminal.is_raw() {
        eprint!(
            "toolstack: console of domain {} (Ctrl-] leaves)\r\n",
            domain & 0xffff
        );
    }
    let mut out = std::io::stdout();
    let mut offset = 0u64;
    loop {
        while let Ok(bytes) = keys.try_recv() {
            match bytes.iter().position(|&b| b == LEAVE) {
                Some(at) => {
                    client.console_write(domain, &bytes[..at])?;
                    return Ok(Ended::Left);
                }
                None => client.console_write(domain, &bytes)?,
            }
        }
        let chunk = client.console_read(domain, offset)?;
        if chunk.offset > offset {
            let cut = chunk.offset - offset;
            eprint!("toolstack: [{cut} older bytes were cut from the history]\r\n");
        }
        let text = if terminal.is_raw() {
            // Raw mode does not turn LF into CR LF.
            chunk
                .data
                .iter()
                .flat_map(|&b| {
                    if b == b'\n' {
                        vec![b'\r', b'\n']
                    } else {
                        vec![b]
                    }
                })
                .collect()
        } else {
            chunk.data.clone()
        };
        out.write_all(&text)
            .and_then(|()| out.flush())
            .map_err(|e| Error::Channel(format!("standard output: {e}")))?;
        offset = chunk.offset + chunk.data.len() as u64;
        if chunk.closed {
            return Ok(Ended::Closed);
        }
        // Caught up with what was kept when asked: later output is not
        // waited for (a domain printing all the time would never end it).
        if !follow && (chunk.data.is_empty() || !chunk.more) {
            return Ok(Ended::CaughtUp);
        }
    }
}
