//! What each domain printed, kept after the lines went out (and after the
//! domain died), so a viewer that comes late can still read it.
//!
//! Owns: a byte ring per domain of the most recent output (the last
//! [`HISTORY_BYTES`]), whole lines only, with a count of what was cut. Each
//! domain's output is a byte stream: a byte's offset counts every byte the
//! domain printed before it, so a viewer can ask for "what follows offset X".

/// Bytes of history kept per domain (64 KiB, as the issue asks by default).
pub const HISTORY_BYTES: usize = 64 * 1024;
/// Domains whose history is kept.
const DOMAINS: usize = 16;

extern crate alloc;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use domain_runtime::DomainId;

struct Log {
    dom: DomainId,
    bytes: VecDeque<u8>,
    /// Bytes that fell off the front.
    cut: u64,
}

/// Every domain's history.
pub struct History {
    logs: heapless::Vec<Box<Log>, DOMAINS>,
    /// Lines recorded since start.
    recorded: u64,
}

impl History {
    pub const fn new() -> History {
        History {
            logs: heapless::Vec::new(),
            recorded: 0,
        }
    }

    /// Lines recorded since start.
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// Records one printed line of `dom`.
    pub fn record(&mut self, dom: DomainId, line: &str) {
        self.recorded += 1;
        let log = match self.logs.iter().position(|l| l.dom == dom) {
            Some(i) => &mut self.logs[i],
            None => {
                if self.logs.is_full() {
                    // The oldest domain's history goes first.
                    self.logs.remove(0);
                }
                let fresh = Box::new(Log {
                    dom,
                    bytes: VecDeque::new(),
                    cut: 0,
                });
                if self.logs.push(fresh).is_err() {
                    return;
                }
                let last = self.logs.len() - 1;
                &mut self.logs[last]
            }
        };
        log.bytes.extend(line.bytes());
        log.bytes.push_back(b'\n');
        while log.bytes.len() > HISTORY_BYTES {
            // Cut whole lines from the front.
            while let Some(b) = log.bytes.pop_front() {
                log.cut += 1;
                if b == b'\n' {
                    break;
                }
            }
        }
    }

    /// `new` (a restored domain) continues `old`'s output: old's history
    /// becomes the start of new's (what new printed already follows it).
    pub fn inherit(&mut self, old: DomainId, new: DomainId) {
        let Some(i) = self.logs.iter().position(|l| l.dom == old) else {
            return;
        };
        let mut log = self.logs.remove(i);
        log.dom = new;
        if let Some(j) = self.logs.iter().position(|l| l.dom == new) {
            let later = self.logs.remove(j);
            log.bytes.extend(later.bytes.iter());
            while log.bytes.len() > HISTORY_BYTES {
                if log.bytes.pop_front().is_some() {
                    log.cut += 1;
                }
            }
        }
        let _ = self.logs.push(log);
    }

    /// Copies `dom`'s output from stream offset `offset` into `out`; returns
    /// where the copied bytes start (later than `offset` if older bytes were
    /// cut; the stream's end if there is nothing after `offset`) and how many
    /// were copied. None if nothing of `dom` is kept.
    pub fn peek(&self, dom: DomainId, offset: u64, out: &mut [u8]) -> Option<(u64, usize)> {
        let log = self.logs.iter().find(|l| l.dom == dom)?;
        let end = log.cut + log.bytes.len() as u64;
        let start = offset.clamp(log.cut, end);
        let from = (start - log.cut) as usize;
        let mut n = 0;
        for (dst, &b) in out.iter_mut().zip(log.bytes.range(from..)) {
            *dst = b;
            n += 1;
        }
        Some((start, n))
    }

    /// The stream offset after the last byte `dom` printed, if any is kept.
    pub fn end(&self, dom: DomainId) -> Option<u64> {
        let log = self.logs.iter().find(|l| l.dom == dom)?;
        Some(log.cut + log.bytes.len() as u64)
    }

    /// Calls `line` for each kept line of `dom`; returns (bytes kept, bytes cut), or None.
    pub fn replay(&self, dom: DomainId, mut line: impl FnMut(&str)) -> Option<(usize, u64)> {
        let log = self.logs.iter().find(|l| l.dom == dom)?;
        let mut cur: alloc::vec::Vec<u8> = alloc::vec::Vec::new();
        for &b in log.bytes.iter() {
            if b == b'\n' {
                line(core::str::from_utf8(&cur).unwrap_or("(not UTF-8)"));
                cur.clear();
            } else {
                cur.push(b);
            }
        }
        Some((log.bytes.len(), log.cut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(h: &History, dom: DomainId) -> alloc::string::String {
        let mut s = alloc::string::String::new();
        h.replay(dom, |l| {
            s.push_str(l);
            s.push('\n');
        });
        s
    }

    #[test]
    fn a_restored_domain_inherits_the_history_before_its_own() {
        let (old, new) = (DomainId(2), DomainId(0x1_0002));
        let mut h = History::new();
        h.record(old, "one");
        h.record(old, "two");
        h.record(new, "three");
        h.inherit(old, new);
        assert_eq!(text(&h, new), "one\ntwo\nthree\n");
        assert!(h.replay(old, |_| {}).is_none());
        // Nothing to inherit: nothing changes.
        h.inherit(DomainId(9), new);
        assert_eq!(text(&h, new), "one\ntwo\nthree\n");
    }
}
