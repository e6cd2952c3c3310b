//! Which vCPU runs where: each CPU's scheduling state, naming one vCPU of
//! a domain (`VcpuRef`), making a vCPU current, asking CPUs to reschedule
//! (resched IPIs) and to forget translations (TLB shootdown), and the
//! per-CPU loads that placement and balancing use.

use super::{this_cpu, Kernel, Vcpu, MAX_CPUS, MAX_VCPUS};

/// One CPU's scheduling state. Its run queue is the runnable vCPUs whose
/// `Vcpu::cpu` is this CPU.
#[derive(Clone, Copy, Debug)]
pub struct CpuState {
    /// The domain whose vCPU runs here.
    pub current: Option<usize>,
    /// Which of its vCPUs (meaningful while `current` is set).
    pub vcpu: usize,
    /// Set when that vCPU should give up the CPU at the next return to ring 3.
    pub need_resched: bool,
    /// The domain whose I/O ports this CPU's TSS bitmap allows
    /// ([`IO_STALE`]: unknown, reprogram before the next domain runs).
    pub io_owner: Option<usize>,
}

/// `CpuState::io_owner` of a CPU whose bitmap may allow a dead domain's ports.
pub const IO_STALE: usize = usize::MAX;

/// One vCPU of one domain: what the scheduler picks and a CPU loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuRef {
    pub dom: usize,
    pub vcpu: usize,
}

impl VcpuRef {
    /// One number for it (for the scheduler's pure functions, which pick
    /// among numbered candidates; lower domains first on a tie).
    pub fn code(self) -> usize {
        self.dom * MAX_VCPUS + self.vcpu
    }

    pub fn from_code(code: usize) -> VcpuRef {
        VcpuRef {
            dom: code / MAX_VCPUS,
            vcpu: code % MAX_VCPUS,
        }
    }
}

impl Kernel {
    /// This CPU's scheduling state.
    pub fn cpu(&self) -> &CpuState {
        &self.cpus[this_cpu()]
    }

    pub fn cpu_mut(&mut self) -> &mut CpuState {
        &mut self.cpus[this_cpu()]
    }

    /// Asks the CPUs whose run queues hold domain `index`'s vCPUs, and
    /// those running them, to reschedule (an IPI to any but this one).
    pub fn resched(&mut self, index: usize) {
        let Some(d) = self.domain(index) else { return };
        let mut cpus = 0u64;
        // Started vCPUs only: a vCPU not started is in no run queue.
        for v in d.existing_vcpus().filter(|v| v.up) {
            cpus |= 1 << v.cpu.min(MAX_CPUS - 1);
            cpus |= v.loaded_on.map_or(0, |c| 1 << c);
        }
        self.kick_cpus(cpus);
    }

    /// Asks the CPU whose run queue holds one vCPU, and the CPU running it
    /// if another, to reschedule.
    pub fn resched_vcpu(&mut self, at: VcpuRef) {
        let Some(v) = self.vcpu(at) else { return };
        let cpus = v.resched_mask();
        self.kick_cpus(cpus);
    }

    /// Asks the CPUs in `mask` (bit n: CPU n) to reschedule: this one at
    /// its next return to ring 3, the others by IPI.
    #[inline(always)]
    pub fn kick_cpus(&mut self, mut mask: u64) {
        let me = this_cpu();
        if mask & (1 << me) != 0 {
            self.cpus[me].need_resched = true;
            mask &= !(1 << me);
        }
        // Set bits only: this is on the event path.
        while mask != 0 {
            let cpu = mask.trailing_zeros() as usize & (MAX_CPUS - 1);
            mask &= mask - 1;
            self.cpus[cpu].need_resched = true;
            crate::arch::smp::kick(cpu);
        }
    }

    /// The CPUs that have one of domain `index`'s vCPUs loaded now (bit n: CPU n).
    pub fn loaded_mask(&self, index: usize) -> u64 {
        self.domain(index).map_or(0, |d| {
            d.existing_vcpus()
                .filter_map(|v| v.loaded_on)
                .fold(0, |m, c| m | 1 << c)
        })
    }

    /// After an unmap in domain `index`: every other CPU that has one of
    /// its vCPUs loaded flushes its TLB before this returns (an idle CPU
    /// holds the kernel's tables, and a CPU loading the domain later loads
    /// them afresh, so those are all that may cache the old mapping).
    pub fn shootdown(&self, index: usize) {
        let others = self.loaded_mask(index) & !(1 << this_cpu());
        if others != 0 {
            trace_event!(
                "dom{=u32} tlb shootdown cpus {=u64}",
                self.id_of(index),
                others
            );
            crate::arch::tlb::shootdown(others);
        }
    }

    /// The vCPU loaded on this CPU, if any.
    #[inline(always)]
    pub fn current(&self) -> Option<VcpuRef> {
        let c = self.cpu();
        c.current.map(|dom| VcpuRef { dom, vcpu: c.vcpu })
    }

    /// Makes `next` the vCPU loaded on this CPU (None: idle).
    #[inline(always)]
    pub fn set_current(&mut self, next: Option<VcpuRef>) {
        let _ = self.switch_current(next);
    }

    /// [`Kernel::set_current`], returning the index of the domain whose
    /// vCPU it unloaded if that domain is being torn down (this CPU then
    /// frees it: `trap::teardown`). The vCPU left is charged its CPU time
    /// and the domain and vCPU looked up once.
    #[inline(always)]
    pub fn switch_current(&mut self, next: Option<VcpuRef>) -> Option<usize> {
        let me = this_cpu();
        let now = crate::arch::cpu::rdtsc();
        let mut moved_to = None;
        let mut torn_down = None;
        let old = self.cpus[me].current.map(|dom| (dom, self.cpus[me].vcpu));
        if let Some(d) = old.and_then(|(dom, _)| self.domain_mut(dom)) {
            let teardown = d.teardown;
            if let Some(v) = old.and_then(|(_, vcpu)| d.vcpus[..d.nr_vcpus].get_mut(vcpu)) {
                v.sched.charge_until(now);
                v.loaded_on = None;
                // It was moved to another CPU's run queue (pinned away,
                // pulled by balancing) while it ran here: that CPU could
                // not take it while it was loaded here, so tell it now
                // rather than at its next tick.
                moved_to = (v.cpu != me).then_some(v.cpu);
            }
            torn_down = old.filter(|_| teardown).map(|(dom, _)| dom);
        }
        if let Some(cpu) = moved_to {
            self.kick_cpus(1 << cpu.min(MAX_CPUS - 1));
        }
        self.cpus[me].current = next.map(|n| n.dom);
        self.cpus[me].vcpu = next.map_or(0, |n| n.vcpu);
        if let Some(v) = next.and_then(|n| self.vcpu_mut(n)) {
            v.loaded_on = Some(me);
            v.sched.start_running(now);
            // Its `syscall`s save their registers in its record (unused
            // for an HVM vCPU, which does not reach the kernel's entry).
            crate::arch::syscall::set_syscall_frame(&mut v.frame);
        }
        torn_down
    }

    /// Charges vCPU `at`, running on this CPU, for its CPU time up to TSC
    /// `now` (at a switch and at a tick: `sched::Entity::charge_until`).
    #[inline(always)]
    pub fn charge_running(&mut self, at: VcpuRef, now: u64) {
        if let Some(v) = self.vcpu_mut(at) {
            v.sched.charge_until(now);
        }
    }

    /// One vCPU, if its domain lives and has it.
    #[inline(always)]
    pub fn vcpu(&self, at: VcpuRef) -> Option<&Vcpu> {
        let d = self.domain(at.dom)?;
        d.vcpus[..d.nr_vcpus].get(at.vcpu)
    }

    #[inline(always)]
    pub fn vcpu_mut(&mut self, at: VcpuRef) -> Option<&mut Vcpu> {
        let d = self.domain_mut(at.dom)?;
        d.vcpus[..d.nr_vcpus].get_mut(at.vcpu)
    }

    /// What CPU `cpu` runs next from its run queue (the vCPUs that
    /// [`Vcpu::runs_on`] it, their domains schedulable), as the scheduler
    /// ranks them (`sched::Best`). One pass over the table in plain
    /// loops, the domain's half of the test once per domain: it runs at
    /// every switch.
    ///
    /// [`Vcpu::runs_on`]: super::Vcpu::runs_on
    #[inline(always)]
    pub fn pick_here(&self, cpu: usize) -> Option<VcpuRef> {
        let mut best = crate::sched::Best::default();
        for (dom, slot) in self.slots[..self.high_water].iter().enumerate() {
            let Some(d) = slot.domain.as_deref() else {
                continue;
            };
            if !d.schedulable() {
                continue;
            }
            for (vcpu, v) in d.vcpus[..d.nr_vcpus.min(MAX_VCPUS)].iter().enumerate() {
                if v.runs_on(cpu) {
                    best.offer(VcpuRef { dom, vcpu }.code(), &v.sched);
                }
            }
        }
        best.choice().map(VcpuRef::from_code)
    }

    /// Every CPU's state (for the I/O bitmap bookkeeping and debug keys).
    pub fn cpus_mut(&mut self) -> &mut [CpuState; MAX_CPUS] {
        &mut self.cpus
    }

    /// Started vCPUs in each CPU's run queue.
    pub fn loads(&self) -> [usize; MAX_CPUS] {
        let mut loads = [0; MAX_CPUS];
        for d in self.live().filter_map(|i| self.domain(i)) {
            for v in d.existing_vcpus().filter(|v| v.up) {
                loads[v.cpu.min(MAX_CPUS - 1)] += 1;
            }
        }
        loads
    }

    /// Every existing vCPU of every live domain.
    pub fn all_vcpus(&self) -> impl Iterator<Item = (VcpuRef, &Vcpu)> + '_ {
        self.live_domains().flat_map(|(dom, d)| {
            d.existing_vcpus()
                .enumerate()
                .map(move |(vcpu, v)| (VcpuRef { dom, vcpu }, v))
        })
    }
}
