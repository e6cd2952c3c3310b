//! An HVM vCPU's local APIC, in x2APIC mode (its registers are MSRs
//! 0x800–0x8ff, so every access is an MSR exit with its value decoded:
//! no instruction to emulate), with the TSC-deadline timer.
//!
//! Owns: the interrupt request and in-service registers, the task
//! priority, EOI, the timer (TSC-deadline, one-shot and periodic), the
//! inter-processor interrupts a write of the ICR asks for (the kernel
//! delivers them), and which vector, if any, is ready to be taken.
//! Kept in the kernel, as KVM keeps it, because Linux writes its timer
//! and EOI on every interrupt: through a device-model domain each would
//! cost a round trip. Pure: host-tested.

/// The first x2APIC MSR.
pub const MSR_BASE: u32 = 0x800;
pub const MSR_LAST: u32 = 0x8ff;
/// IA32_TSC_DEADLINE.
pub const TSC_DEADLINE: u32 = 0x6e0;

// Register numbers (MSR - 0x800).
const ID: u32 = 0x02;
const VERSION: u32 = 0x03;
const TPR: u32 = 0x08;
const PPR: u32 = 0x0a;
const EOI: u32 = 0x0b;
const LDR: u32 = 0x0d;
const SVR: u32 = 0x0f;
const ISR0: u32 = 0x10;
const TMR0: u32 = 0x18;
const IRR0: u32 = 0x20;
const ESR: u32 = 0x28;
const LVT_CMCI: u32 = 0x2f;
const ICR: u32 = 0x30;
const LVT_TIMER: u32 = 0x32;
const LVT_THERMAL: u32 = 0x33;
const LVT_PERF: u32 = 0x34;
const LVT_LINT0: u32 = 0x35;
const LVT_LINT1: u32 = 0x36;
const LVT_ERROR: u32 = 0x37;
const INITIAL_COUNT: u32 = 0x38;
const CURRENT_COUNT: u32 = 0x39;
const DIVIDE: u32 = 0x3e;
const SELF_IPI: u32 = 0x3f;

const MASKED: u32 = 1 << 16;
const SVR_ENABLED: u32 = 1 << 8;
/// Version 0x14 (integrated APIC), six LVT entries (max LVT index 5).
const VERSION_VALUE: u32 = 0x14 | 5 << 16;

/// Timer modes (LVT timer bits 17–18).
const PERIODIC: u32 = 1;
const DEADLINE: u32 = 2;

/// Nanoseconds one timer count takes before division: the emulated APIC
/// runs its timer at 1 GHz (Linux calibrates what it uses, and with the
/// TSC-deadline timer it uses the TSC).
const NS_PER_COUNT: u64 = 1;

/// What a register write asks of the rest of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The timer changed: its next expiry (the caller's clock) is now this.
    Timer(Option<u64>),
    /// Send an interrupt to the vCPU whose APIC id is `dest` (`u32::MAX`: all but self).
    Ipi {
        dest: u32,
        vector: u8,
        kind: IpiKind,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiKind {
    Fixed,
    Nmi,
    Init,
    Startup,
}

/// An MSI message's destination APIC id and vector (physical destination,
/// fixed or lowest-priority delivery, as Linux programs it with its local
/// APICs in physical mode); `None` for anything else.
pub fn msi(address: u64, data: u64) -> Option<(u32, u8)> {
    let physical = address >> 20 == 0xfee && address & 1 << 2 == 0;
    let vector = (data & 0xff) as u8;
    let delivery = (data >> 8) & 7;
    (physical && vector >= 16 && delivery <= 1 && data >> 16 == 0)
        .then_some((((address >> 12) & 0xff) as u32, vector))
}

/// A vCPU's local APIC. All zeroes is not a valid reset state: use `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Lapic {
    id: u32,
    tpr: u32,
    svr: u32,
    esr: u32,
    irr: [u32; 8],
    isr: [u32; 8],
    /// LVT: timer, thermal, perf, LINT0, LINT1, error, CMCI.
    lvt: [u32; 7],
    initial_count: u32,
    divide: u32,
    /// When the one-shot or periodic count started (ns).
    started_ns: u64,
    tsc_deadline: u64,
    /// The next expiry of the one-shot or periodic timer (ns), 0 none.
    expiry_ns: u64,
}

fn lvt_index(reg: u32) -> Option<usize> {
    Some(match reg {
        LVT_TIMER => 0,
        LVT_THERMAL => 1,
        LVT_PERF => 2,
        LVT_LINT0 => 3,
        LVT_LINT1 => 4,
        LVT_ERROR => 5,
        LVT_CMCI => 6,
        _ => return None,
    })
}

impl Lapic {
    /// The APIC of vCPU `id` after reset: software-disabled, every LVT masked.
    pub fn new(id: u32) -> Lapic {
        Lapic {
            id,
            tpr: 0,
            svr: 0xff,
            esr: 0,
            irr: [0; 8],
            isr: [0; 8],
            lvt: [MASKED; 7],
            initial_count: 0,
            divide: 0,
            started_ns: 0,
            tsc_deadline: 0,
            expiry_ns: 0,
        }
    }

    fn timer_mode(&self) -> u32 {
        (self.lvt[0] >> 17) & 3
    }

    /// Counts per timer tick: the divide configuration (bits 0, 1, 3).
    fn divisor(&self) -> u64 {
        let code = (self.divide & 3) | (self.divide >> 1) & 4;
        if code == 7 {
            1
        } else {
            2 << code
        }
    }

    fn highest(bits: &[u32; 8]) -> Option<u8> {
        (0..8)
            .rev()
            .find(|&i| bits[i] != 0)
            .map(|i| (i * 32 + 31 - bits[i].leading_zeros() as usize) as u8)
    }

    fn ppr(&self) -> u32 {
        let isr = Self::highest(&self.isr).map_or(0, |v| v as u32 & 0xf0);
        if self.tpr & 0xf0 >= isr {
            self.tpr & 0xff
        } else {
            isr
        }
    }

    /// Sets `vector` in the request register (vectors below 16 are illegal: ignored).
    pub fn raise(&mut self, vector: u8) {
        if vector >= 16 {
            self.irr[vector as usize / 32] |= 1 << (vector % 32);
        }
    }

    /// The vector to deliver now, if one outranks the processor priority
    /// and the APIC is enabled.
    pub fn pending(&self) -> Option<u8> {
        if self.svr & SVR_ENABLED == 0 {
            return None;
        }
        let v = Self::highest(&self.irr)?;
        (v as u32 & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// The guest takes `vector` (given by `pending`): request to in-service.
    pub fn accept(&mut self, vector: u8) {
        let (i, bit) = (vector as usize / 32, 1 << (vector % 32));
        self.irr[i] &= !bit;
        self.isr[i] |= bit;
    }

    /// Its interrupt state in one line, for debug key `x`: whether it is
    /// enabled, TPR, the highest requested and in-service vectors, what
    /// `pending` would give, and the timer's LVT and deadline.
    pub fn summary(&self) -> Summary {
        Summary {
            enabled: self.svr & SVR_ENABLED != 0,
            tpr: self.tpr,
            irr: Self::highest(&self.irr),
            isr: Self::highest(&self.isr),
            pending: self.pending(),
            lvt_timer: self.lvt[0],
            tsc_deadline: self.tsc_deadline,
            expiry_ns: self.expiry_ns,
        }
    }

    fn eoi(&mut self) {
        if let Some(v) = Self::highest(&self.isr) {
            self.isr[v as usize / 32] &= !(1 << (v % 32));
        }
    }

    /// Whether the guest's next EOI may skip the register (paravirtual
    /// EOI, `pv_eoi.rs`): exactly one vector in service, none requested,
    /// so the EOI changes nothing that is to be delivered.
    pub fn may_end_without_exit(&self) -> bool {
        self.isr.iter().map(|w| w.count_ones()).sum::<u32>() == 1
            && self.irr.iter().all(|&w| w == 0)
    }

    /// The guest ended its interrupt without the register (`pv_eoi.rs`):
    /// as a write of its EOI register.
    pub fn end_interrupt(&mut self) {
        self.eoi();
    }

    /// The timer's next expiry in the caller's clock (`now_ns`, with the
    /// TSC at `tsc` ticking `tsc_hz` times a second), if it is armed.
    fn expiry(&self, now_ns: u64, tsc: u64, tsc_hz: u64) -> Option<u64> {
        match self.timer_mode() {
            DEADLINE if self.tsc_deadline != 0 => {
                let ahead = self.tsc_deadline.saturating_sub(tsc);
                let ns = (ahead as u128 * 1_000_000_000 / tsc_hz.max(1) as u128) as u64;
                Some(now_ns.saturating_add(ns))
            }
            DEADLINE => None,
            _ => (self.expiry_ns != 0).then_some(self.expiry_ns),
        }
    }

    /// Fires the timer if it is due at `now_ns` (TSC `tsc`): its vector is
    /// raised (unless masked) and a periodic timer starts again. Returns
    /// the next expiry, if any.
    pub fn poll_timer(&mut self, now_ns: u64, tsc: u64, tsc_hz: u64) -> Option<u64> {
        let vector = (self.lvt[0] & 0xff) as u8;
        let masked = self.lvt[0] & MASKED != 0;
        match self.timer_mode() {
            DEADLINE => {
                if self.tsc_deadline != 0 && tsc >= self.tsc_deadline {
                    self.tsc_deadline = 0;
                    if !masked {
                        self.raise(vector);
                    }
                }
            }
            mode => {
                if self.expiry_ns != 0 && now_ns >= self.expiry_ns {
                    if !masked {
                        self.raise(vector);
                    }
                    let period = self.initial_count as u64 * self.divisor() * NS_PER_COUNT;
                    if mode == PERIODIC && period > 0 {
                        // The next period after now (missed ones are one).
                        let behind = (now_ns - self.expiry_ns) / period + 1;
                        self.expiry_ns += behind * period;
                        self.started_ns = self.expiry_ns - period;
                    } else {
                        self.expiry_ns = 0;
                    }
                }
            }
        }
        self.expiry(now_ns, tsc, tsc_hz)
    }

    fn current_count(&self, now_ns: u64) -> u32 {
        if self.expiry_ns == 0 || self.timer_mode() == DEADLINE {
            return 0;
        }
        let left = self.expiry_ns.saturating_sub(now_ns);
        (left / (self.divisor() * NS_PER_COUNT)) as u32
    }

    /// RDMSR of x2APIC register MSR `msr` (or TSC_DEADLINE); `None`: #GP.
    pub fn read(&self, msr: u32, now_ns: u64) -> Option<u64> {
        if msr == TSC_DEADLINE {
            return Some(if self.timer_mode() == DEADLINE {
                self.tsc_deadline
            } else {
                0
            });
        }
        let reg = msr.checked_sub(MSR_BASE).filter(|_| msr <= MSR_LAST)?;
        let v = match reg {
            ID => self.id,
            VERSION => VERSION_VALUE,
            TPR => self.tpr,
            PPR => self.ppr(),
            // Cluster 0.., one bit per vCPU within its cluster of 16.
            LDR => (self.id >> 4) << 16 | 1 << (self.id & 0xf),
            SVR => self.svr,
            r if (ISR0..ISR0 + 8).contains(&r) => self.isr[(r - ISR0) as usize],
            r if (TMR0..TMR0 + 8).contains(&r) => 0,
            r if (IRR0..IRR0 + 8).contains(&r) => self.irr[(r - IRR0) as usize],
            ESR => self.esr,
            ICR => 0,
            r if lvt_index(r).is_some() => self.lvt[lvt_index(r)?],
            INITIAL_COUNT => self.initial_count,
            CURRENT_COUNT => self.current_count(now_ns),
            DIVIDE => self.divide,
            _ => return None,
        };
        Some(v as u64)
    }

    /// WRMSR of `value` to x2APIC MSR `msr` (or TSC_DEADLINE) at `now_ns`
    /// (TSC `tsc`); `Err(())`: #GP, nothing changed.
    pub fn write(
        &mut self,
        msr: u32,
        value: u64,
        now_ns: u64,
        tsc: u64,
        tsc_hz: u64,
    ) -> Result<Effect, ()> {
        let timer = |l: &Lapic| Effect::Timer(l.expiry(now_ns, tsc, tsc_hz));
        if msr == TSC_DEADLINE {
            if self.timer_mode() == DEADLINE {
                self.tsc_deadline = value;
                return Ok(timer(self));
            }
            return Ok(Effect::None);
        }
        let reg = msr
            .checked_sub(MSR_BASE)
            .filter(|_| msr <= MSR_LAST)
            .ok_or(())?;
        // x2APIC registers are 32 bits but the ICR; reserved bits fault.
        if reg != ICR && value >> 32 != 0 {
            return Err(());
        }
        let v = value as u32;
        match reg {
            TPR => self.tpr = v & 0xff,
            EOI => {
                if v != 0 {
                    return Err(());
                }
                self.eoi();
            }
            SVR => {
                self.svr = v & 0x1ff;
                if v & SVR_ENABLED == 0 {
                    // Disabling masks every LVT entry.
                    self.lvt.iter_mut().for_each(|l| *l |= MASKED);
                }
            }
            ESR => self.esr = 0,
            ICR => return Ok(self.icr(value)),
            LVT_TIMER => {
                let before = self.timer_mode();
                self.lvt[0] = v & (0xff | MASKED | 3 << 17);
                if self.svr & SVR_ENABLED == 0 {
                    self.lvt[0] |= MASKED;
                }
                if before != self.timer_mode() {
                    self.tsc_deadline = 0;
                    self.expiry_ns = 0;
                }
                return Ok(timer(self));
            }
            r if lvt_index(r).is_some() => {
                let i = lvt_index(r).ok_or(())?;
                self.lvt[i] = v & (0xff | 7 << 8 | MASKED | 1 << 15 | 1 << 13);
                if self.svr & SVR_ENABLED == 0 {
                    self.lvt[i] |= MASKED;
                }
            }
            INITIAL_COUNT => {
                if self.timer_mode() == DEADLINE {
                    return Ok(Effect::None);
                }
                self.initial_count = v;
                self.started_ns = now_ns;
                self.expiry_ns = if v == 0 {
                    0
                } else {
                    now_ns + v as u64 * self.divisor() * NS_PER_COUNT
                };
                return Ok(timer(self));
            }
            DIVIDE => self.divide = v & 0xb,
            SELF_IPI => self.raise(v as u8),
            // Read-only registers and unknown ones fault when written.
            _ => return Err(()),
        }
        Ok(Effect::None)
    }

    /// A write of the ICR: the interrupt it sends. Self-IPIs are raised
    /// here; others go to the kernel.
    fn icr(&mut self, value: u64) -> Effect {
        let vector = value as u8;
        let kind = match (value >> 8) & 7 {
            0 => IpiKind::Fixed,
            4 => IpiKind::Nmi,
            5 => IpiKind::Init,
            6 => IpiKind::Startup,
            _ => return Effect::None,
        };
        // Shorthand (bits 18–19): none, self, all, all but self.
        let dest = match (value >> 18) & 3 {
            0 => (value >> 32) as u32,
            1 => self.id,
            _ => u32::MAX,
        };
        if dest == self.id && kind == IpiKind::Fixed {
            self.raise(vector);
            return Effect::None;
        }
        Effect::Ipi { dest, vector, kind }
    }
}

/// A local APIC's interrupt state as debug key `x` prints it.
pub struct Summary {
    enabled: bool,
    tpr: u32,
    irr: Option<u8>,
    isr: Option<u8>,
    pending: Option<u8>,
    lvt_timer: u32,
    tsc_deadline: u64,
    expiry_ns: u64,
}

impl core::fmt::Display for Summary {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "apic enabled {} tpr {:#x} irr {:?} isr {:?} pending {:?} lvt-timer {:#x} tsc-deadline {} expiry {} ns",
            self.enabled,
            self.tpr,
            self.irr,
            self.isr,
            self.pending,
            self.lvt_timer,
            self.tsc_deadline,
            self.expiry_ns
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 1_000_000_000;

    fn enabled() -> Lapic {
        let mut l = Lapic::new(0);
        l.write(MSR_BASE + SVR, 0x1ff, 0, 0, HZ).unwrap();
        l
    }

    #[test]
    fn the_highest_request_above_the_priority_is_delivered_and_eoi_retires_it() {
        let mut l = enabled();
        assert_eq!(l.pending(), None);
        l.raise(0x31);
        l.raise(0x45);
        assert_eq!(l.pending(), Some(0x45));
        l.accept(0x45);
        // 0x31 is below the in-service 0x45's priority class.
        assert_eq!(l.pending(), None);
        l.write(MSR_BASE + EOI, 0, 0, 0, HZ).unwrap();
        assert_eq!(l.pending(), Some(0x31));
        l.write(MSR_BASE + TPR, 0x40, 0, 0, HZ).unwrap();
        assert_eq!(l.pending(), None, "masked by the task priority");
        assert_eq!(l.read(MSR_BASE + IRR0 + 1, 0), Some(1 << 0x11));
    }

    #[test]
    fn an_interrupt_may_end_without_an_exit_only_alone_and_with_nothing_requested() {
        let mut l = enabled();
        assert!(!l.may_end_without_exit(), "nothing in service");
        l.raise(0x45);
        l.accept(0x45);
        assert!(l.may_end_without_exit());
        // Another request waits for the EOI: it must be seen.
        l.raise(0x31);
        assert!(!l.may_end_without_exit());
        // Nested: two in service.
        l.raise(0x61);
        l.accept(0x61);
        assert!(!l.may_end_without_exit());
        l.end_interrupt();
        assert_eq!(l.summary().isr, Some(0x45), "the inner one ended");
        l.end_interrupt();
        assert_eq!(l.summary().isr, None);
        assert_eq!(l.pending(), Some(0x31));
    }

    #[test]
    fn a_disabled_apic_delivers_nothing_and_illegal_vectors_are_ignored() {
        let mut l = Lapic::new(0);
        l.raise(0x50);
        assert_eq!(l.pending(), None);
        let mut l = enabled();
        l.raise(3);
        assert_eq!(l.pending(), None);
    }

    #[test]
    fn the_tsc_deadline_timer_fires_once_at_its_deadline() {
        let mut l = enabled();
        l.write(
            MSR_BASE + LVT_TIMER,
            (0xec | DEADLINE << 17) as u64,
            0,
            0,
            HZ,
        )
        .unwrap();
        let e = l.write(TSC_DEADLINE, 5_000, 1_000, 1_000, HZ).unwrap();
        assert_eq!(e, Effect::Timer(Some(5_000)));
        assert_eq!(l.poll_timer(4_000, 4_000, HZ), Some(5_000));
        assert_eq!(l.pending(), None);
        assert_eq!(l.poll_timer(5_000, 5_000, HZ), None);
        assert_eq!(l.pending(), Some(0xec));
        assert_eq!(l.read(TSC_DEADLINE, 5_000), Some(0));
    }

    #[test]
    fn one_shot_and_periodic_timers_count_in_nanoseconds_times_the_divisor() {
        let mut l = enabled();
        l.write(MSR_BASE + DIVIDE, 0b1011, 0, 0, HZ).unwrap(); // divide by 1
        l.write(
            MSR_BASE + LVT_TIMER,
            (0x30 | PERIODIC << 17) as u64,
            0,
            0,
            HZ,
        )
        .unwrap();
        assert_eq!(
            l.write(MSR_BASE + INITIAL_COUNT, 1000, 100, 0, HZ).unwrap(),
            Effect::Timer(Some(1100))
        );
        assert_eq!(l.read(MSR_BASE + CURRENT_COUNT, 600), Some(500));
        assert_eq!(l.poll_timer(2350, 0, HZ), Some(3100));
        assert_eq!(l.pending(), Some(0x30));
        l.write(MSR_BASE + LVT_TIMER, (0x30 | MASKED) as u64, 0, 0, HZ)
            .unwrap();
        l.write(MSR_BASE + INITIAL_COUNT, 10, 0, 0, HZ).unwrap();
        l.write(MSR_BASE + DIVIDE, 0b0000, 0, 0, HZ).unwrap(); // divide by 2
        assert_eq!(l.poll_timer(20, 0, HZ), None);
    }

    #[test]
    fn ipis_name_their_destination_and_a_self_ipi_stays_here() {
        let mut l = enabled();
        assert_eq!(
            l.write(MSR_BASE + ICR, 3 << 32 | 0x4041, 0, 0, HZ).unwrap(),
            Effect::Ipi {
                dest: 3,
                vector: 0x41,
                kind: IpiKind::Fixed
            }
        );
        assert_eq!(
            l.write(MSR_BASE + ICR, 1 << 32 | 6 << 8 | 0x9a, 0, 0, HZ)
                .unwrap(),
            Effect::Ipi {
                dest: 1,
                vector: 0x9a,
                kind: IpiKind::Startup
            }
        );
        assert_eq!(
            l.write(MSR_BASE + ICR, 0x55, 0, 0, HZ).unwrap(),
            Effect::None
        );
        assert_eq!(
            l.write(MSR_BASE + SELF_IPI, 0x66, 0, 0, HZ).unwrap(),
            Effect::None
        );
        assert_eq!(l.pending(), Some(0x66));
    }

    #[test]
    fn read_only_registers_and_reserved_bits_fault() {
        let mut l = enabled();
        assert_eq!(l.write(MSR_BASE + ID, 5, 0, 0, HZ), Err(()));
        assert_eq!(l.write(MSR_BASE + TPR, 1 << 40, 0, 0, HZ), Err(()));
        assert_eq!(l.write(MSR_BASE + EOI, 1, 0, 0, HZ), Err(()));
        assert_eq!(l.read(MSR_BASE + 0x3d, 0), None);
        assert_eq!(l.read(MSR_BASE + ID, 0), Some(0));
        assert_eq!(l.read(MSR_BASE + VERSION, 0), Some(0x50014));
    }
    #[test]
    fn an_msi_message_names_a_cpu_and_a_vector() {
        assert_eq!(msi(0xfee0_1000, 0x41), Some((1, 0x41)));
        assert_eq!(
            msi(0xfee0_0000, 0x100 | 0x30),
            Some((0, 0x30)),
            "lowest priority"
        );
        assert_eq!(msi(0xfee0_0004, 0x41), None, "logical destination");
        assert_eq!(msi(0xfee0_0000, 0x400 | 0x41), None, "NMI delivery");
        assert_eq!(msi(0xfee0_0000, 0x0f), None, "an exception's vector");
        assert_eq!(msi(0x1_fee0_0000, 0x41), None, "above 4 GiB");
        assert_eq!(msi(0xfed0_0000, 0x41), None, "not the interrupt range");
    }
}
