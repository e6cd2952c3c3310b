//! The NMI watchdog (`watchdog` on the command line).
//!
//! Owns: the rule that turns a steady NMI into a verdict — a CPU whose timer
//! count has not moved for [`STUCK_NMIS`] NMIs (about five seconds) is stuck
//! in the kernel with interrupts off — and, on bare metal, starting the NMI
//! source and the report: the interrupted registers and the return
//! addresses found on the stack, then a panic (which halts or resets as
//! `noreboot` says). Pure rule, host-tested; hardware in `arch/`.

/// NMIs a second: the PIT's slowest rate (1,193,182 Hz / 65,536).
pub const NMI_HZ: u64 = 18;
/// NMIs without a timer tick before a CPU counts as stuck (about 5 s).
pub const STUCK_NMIS: u32 = 5 * NMI_HZ as u32;

/// What one CPU's watchdog remembers between NMIs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    last_ticks: u64,
    quiet_nmis: u32,
}

impl Watch {
    /// One NMI, with the CPU's timer tick count now; true when it is stuck.
    pub fn nmi(&mut self, ticks: u64) -> bool {
        if ticks != self.last_ticks {
            self.last_ticks = ticks;
            self.quiet_nmis = 0;
            return false;
        }
        self.quiet_nmis = self.quiet_nmis.saturating_add(1);
        self.quiet_nmis >= STUCK_NMIS
    }

    /// How long the timer has been quiet, in milliseconds.
    pub fn quiet_ms(&self) -> u64 {
        u64::from(self.quiet_nmis) * 1000 / NMI_HZ
    }
}

#[cfg(target_os = "none")]
mod machine {
    use super::Watch;
    use crate::arch::idt::TrapFrame;
    use core::sync::atomic::{AtomicBool, Ordering};
    use spin::Mutex;

    static ON: AtomicBool = AtomicBool::new(false);
    static WATCH: Mutex<Watch> = Mutex::new(Watch {
        last_ticks: 0,
        quiet_nmis: 0,
    });

    /// Starts the NMI source: the PIT, routed to this CPU as an NMI.
    pub fn start() -> bool {
        if !crate::arch::ioapic::route_nmi(0) {
            return false;
        }
        crate::arch::pit::start_periodic(0);
        ON.store(true, Ordering::Relaxed);
        true
    }

    /// An NMI: false if the watchdog does not own NMIs (the caller reports it).
    pub fn nmi(frame: &TrapFrame) -> bool {
        if !ON.load(Ordering::Relaxed) {
            return false;
        }
        // NMIs do not nest and this CPU holds no other lock here: the only
        // holder of WATCH is this handler. `try_lock` keeps that an argument,
        // not a hope: a second NMI inside would just be counted as fine.
        let Some(mut w) = WATCH.try_lock() else {
            return true;
        };
        if !w.nmi(crate::time::ticks()) {
            return true;
        }
        let quiet = w.quiet_ms();
        drop(w);
        crate::console::print_panic(format_args!(
            "\nwatchdog: CPU {} took no timer interrupt for {} ms: stuck in the kernel\n{}\n",
            crate::domain::this_cpu(),
            quiet,
            frame
        ));
        let trace = crate::arch::backtrace::scan(frame.rsp);
        crate::console::print_panic(format_args!(
            "backtrace (return addresses on the stack, innermost first; addr2line -e the kernel ELF):"
        ));
        for addr in &trace {
            crate::console::print_panic(format_args!(" {addr:#x}"));
        }
        crate::console::print_panic(format_args!("\n"));
        panic!("watchdog: CPU {} stuck", crate::domain::this_cpu());
    }
}

#[cfg(target_os = "none")]
pub use machine::{nmi, start};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_is_stuck_only_after_five_seconds_without_a_tick() {
        let mut w = Watch::default();
        assert!(!w.nmi(1));
        for _ in 1..STUCK_NMIS {
            assert!(!w.nmi(1));
        }
        assert!(w.nmi(1));
        assert!(w.quiet_ms() >= 5000);
        // A tick resets the count.
        assert!(!w.nmi(2));
        assert_eq!(w.quiet_ms(), 0);
    }

    #[test]
    fn ticking_cpus_are_never_stuck() {
        let mut w = Watch::default();
        assert!((0..10_000).all(|t| !w.nmi(t / 3)));
    }
}
