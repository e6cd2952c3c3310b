//! Trace buffers: what the kernel did, recorded per CPU for `toolstack host trace`.
//!
//! Owns: the switch (`tbuf_size=N` pages per CPU at boot; 0, the default,
//! leaves it off), the per-CPU byte rings ([`ring`]), the `defmt` global
//! logger that encodes events into the ring of the CPU it runs on, the
//! event timestamp (microseconds since boot), and reading a ring out for
//! the control domain (`ipc_abi::trace` describes what a reader gets).
//!
//! Events are written with [`trace_event!`]. On the hypercall path the
//! path's [`Gate`] decides at compile time (it is built traced and quiet,
//! chosen once per kernel entry); elsewhere an event costs one load and
//! branch when tracing is off; a kernel built without the `trace` feature
//! has no event code at all. Events name domains as `dom<id>` (the decoder on the host adds
//! their names); the kernel runs with interrupts off, so an event is never
//! interleaved with another on the same CPU.

#[cfg_attr(not(feature = "trace"), allow(dead_code))]
pub mod ring;

/// Records a kernel event (a `defmt` format string and its arguments) when
/// tracing is on. `trace_event!(<G> ...)` lets the path's [`Gate`] decide
/// (known when the code is compiled); without one, the switch is read.
#[cfg(feature = "trace")]
#[allow(unused_macros)]
macro_rules! trace_event {
    (<$gate:ty> $($arg:tt)*) => {
        if <$gate as $crate::trace::Gate>::on() {
            $crate::trace::record(|| defmt::println!($($arg)*));
        }
    };
    ($($arg:tt)*) => {
        trace_event!(<$crate::trace::Checked> $($arg)*)
    };
}

/// Tracing is not built into this kernel: events cost nothing.
#[cfg(not(feature = "trace"))]
#[allow(unused_macros)]
macro_rules! trace_event {
    ($($arg:tt)*) => {
        ()
    };
}

#[cfg(all(target_os = "none", feature = "trace"))]
mod sink;
#[cfg(all(target_os = "none", feature = "trace"))]
pub use sink::{enabled, init, read};

#[cfg(all(target_os = "none", not(feature = "trace")))]
pub use off::{enabled, init, read};

/// Whether a path records events. The hypercall path is compiled twice,
/// for [`Traced`] and [`Quiet`], and the choice is made once per kernel
/// entry, so with tracing off it runs the very code of a kernel built
/// without tracing. Other paths are [`Checked`]: they read the switch.
#[cfg_attr(not(feature = "trace"), allow(dead_code))]
pub trait Gate {
    fn on() -> bool;
}

/// Records (tracing is on).
pub enum Traced {}
/// Never records.
pub enum Quiet {}
/// Records if tracing is on.
pub enum Checked {}

impl Gate for Traced {
    #[inline(always)]
    fn on() -> bool {
        true
    }
}

impl Gate for Quiet {
    #[inline(always)]
    fn on() -> bool {
        false
    }
}

#[cfg(target_os = "none")]
impl Gate for Checked {
    #[inline(always)]
    fn on() -> bool {
        enabled()
    }
}

/// Records an event out of line: the caller's code keeps only the check,
/// and the compiler treats recording as the unlikely path.
#[cfg(feature = "trace")]
#[cold]
#[inline(never)]
pub fn record(event: impl FnOnce()) {
    event()
}

/// A kernel built without tracing: `tbuf_size` is refused with a warning.
#[cfg(all(target_os = "none", not(feature = "trace")))]
mod off {
    use ipc_abi::hypercall::Error;
    use ipc_abi::trace::TraceChunk;

    /// Never: nothing records events.
    #[inline(always)]
    pub fn enabled() -> bool {
        false
    }

    pub fn init(pages: u32, _cpus: usize) {
        if pages != 0 {
            kprintln!("warning: trace: this kernel is built without tracing; tbuf_size ignored");
        }
    }

    pub fn read(_cpu: usize, _from: u64, _out: &mut [u8]) -> Result<TraceChunk, Error> {
        Err(Error::Disabled)
    }
}
