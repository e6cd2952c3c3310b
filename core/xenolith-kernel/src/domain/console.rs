//! The debug console hypercall: lines from domains, prefixed `[domid]`.
//!
//! Owns: per-domain rate limiting (a token bucket of lines) so a chatty or
//! hostile domain cannot starve the others, and the count of dropped lines,
//! reported once output is allowed again. The control domain's lines are
//! not limited (its caller says so): they are the administrator's record.

/// Lines a domain may print in a burst.
const BURST: u32 = 64;
/// Lines added to the bucket per scheduler tick (800 lines a second at 100 Hz).
const PER_TICK: u32 = 8;
/// Longest line printed; longer ones are cut.
pub const LINE_MAX: usize = 512;

/// A token bucket of console lines.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    tokens: u32,
    last_tick: u64,
    dropped: u64,
}

impl RateLimit {
    pub const fn new() -> RateLimit {
        RateLimit {
            tokens: BURST,
            last_tick: 0,
            dropped: 0,
        }
    }

    fn refill(&mut self, now_ticks: u64) {
        let gained = now_ticks
            .saturating_sub(self.last_tick)
            .saturating_mul(PER_TICK as u64);
        self.tokens = (self.tokens as u64 + gained).min(BURST as u64) as u32;
        self.last_tick = now_ticks;
    }

    /// Whether one more line may go out now; counts it as dropped if not.
    fn take(&mut self, now_ticks: u64) -> bool {
        self.refill(now_ticks);
        if self.tokens == 0 {
            self.dropped += 1;
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Prints a domain's bytes, one console line per `\n`-separated piece,
/// control characters made harmless (`make_printable`); `limited`: within
/// the domain's rate limit.
pub fn write(
    domain_index: u16,
    limit: &mut RateLimit,
    now_ticks: u64,
    bytes: &mut [u8],
    limited: bool,
) {
    for raw in bytes.split_mut(|&b| b == b'\n') {
        if raw.is_empty() {
            continue;
        }
        if limited && !limit.take(now_ticks) {
            continue;
        }
        if limit.dropped > 0 {
            kprintln!(
                "[{}] ({} lines dropped by the rate limit)",
                domain_index,
                limit.dropped
            );
            limit.dropped = 0;
        }
        let keep = raw.len().min(LINE_MAX);
        let mut line = &mut raw[..keep];
        // A CR LF line ending is an ending, not a control character.
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        ipc_abi::proto::console::make_printable(line);
        let text = core::str::from_utf8(line).unwrap_or("(not UTF-8)");
        kprintln!("[{}] {}", domain_index, text);
    }
}
