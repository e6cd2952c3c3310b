//! The NMI watchdog (`watchdog` on the command line), for every CPU.
//!
//! Owns: the rule that turns a steady NMI into a verdict — a CPU whose timer
//! count has not moved for [`STUCK_NMIS`] NMIs (about five seconds) is stuck
//! in the kernel with interrupts off — and, on bare metal, starting the NMI
//! source (the PIT, to the boot CPU), counting each CPU's timer ticks, and
//! the report: the boot CPU sends a stuck CPU an NMI, and that CPU prints
//! its interrupted registers and the return addresses on its stack, then
//! panics (which halts or resets as `noreboot` says). Pure rule,
//! host-tested; hardware in `arch/`.

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
    use crate::arch::cpu::MAX_CPUS;
    use crate::arch::idt::TrapFrame;
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use spin::Mutex;

    static ON: AtomicBool = AtomicBool::new(false);
    /// Each CPU's timer interrupts so far.
    static TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
    /// What the boot CPU's NMI handler remembers of each CPU.
    static WATCHES: Mutex<[Watch; MAX_CPUS]> = Mutex::new(
        [Watch {
            last_ticks: 0,
            quiet_nmis: 0,
        }; MAX_CPUS],
    );
    /// A CPU found stuck, asked (by an NMI) to report and panic, and how
    /// long its timer had been quiet (ms); 0: none asked.
    static REPORT_DUE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

    /// Starts the NMI source: the PIT, routed to this (the boot) CPU as an NMI.
    pub fn start() -> bool {
        if !crate::arch::ioapic::route_nmi(0) {
            return false;
        }
        crate::arch::pit::start_periodic(0);
        ON.store(true, Ordering::Relaxed);
        true
    }

    /// This CPU took a timer interrupt.
    #[inline(always)]
    pub fn tick(cpu: usize) {
        if let Some(t) = TICKS.get(cpu) {
            t.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An NMI: false if the watchdog does not own NMIs (the caller reports it).
    /// On the boot CPU (the PIT's NMI) it looks at every CPU's ticks and
    /// sends a stuck one an NMI of its own; a CPU so asked reports itself.
    pub fn nmi(frame: &TrapFrame) -> bool {
        if !ON.load(Ordering::Relaxed) {
            return false;
        }
        let me = crate::domain::this_cpu();
        let asked = REPORT_DUE[me].swap(0, Ordering::Relaxed);
        if asked != 0 {
            report(me, asked, frame);
        }
        if me != 0 {
            return true;
        }
        // NMIs do not nest and only this handler takes WATCHES: `try_lock`
        // keeps that an argument, not a hope.
        let Some(mut w) = WATCHES.try_lock() else {
            return true;
        };
        for cpu in 0..crate::arch::smp::online() {
            if !w[cpu].nmi(TICKS[cpu].load(Ordering::Relaxed)) {
                continue;
            }
            let quiet = w[cpu].quiet_ms().max(1);
            if cpu == me {
                drop(w);
                report(me, quiet, frame);
            }
            REPORT_DUE[cpu].store(quiet, Ordering::Relaxed);
            crate::arch::smp::nmi_to(cpu);
        }
        true
    }

    /// Prints a stuck CPU's registers and the kernel addresses on its stack, then panics.
    fn report(cpu: usize, quiet_ms: u64, frame: &TrapFrame) -> ! {
        crate::console::print_panic(format_args!(
            "\nwatchdog: CPU {cpu} took no timer interrupt for {quiet_ms} ms: stuck in the kernel\n{frame}\n"
        ));
        let trace = crate::arch::backtrace::scan(cpu, frame.rsp);
        crate::console::print_panic(format_args!(
            "backtrace (return addresses on the stack, innermost first; addr2line -e the kernel ELF):"
        ));
        for addr in &trace {
            crate::console::print_panic(format_args!(" {addr:#x}"));
        }
        crate::console::print_panic(format_args!("\n"));
        panic!("watchdog: CPU {cpu} stuck");
    }
}

#[cfg(target_os = "none")]
pub use machine::{nmi, start, tick};

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
