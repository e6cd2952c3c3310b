//! The HVM test guest: not a Xenolith domain but a tiny operating system of
//! its own, as the kernel sees Linux. It starts in the 32-bit boot state
//! (`ipc_abi::hvm`), sets up long mode itself, then performs each kind of
//! exit the kernel handles and prints what it got on the debug port, one
//! line per check, for the system test to compare with exact values:
//! CPUID (the hypervisor's leaves, what is hidden), RDMSR/WRMSR (allowed and
//! refused: #GP), port input nobody serves, SVM instructions (#UD). Its
//! command line (ESI) says how it ends: `end=halt` (halts with interrupts
//! off: the vCPU must then use no CPU), `end=spin` (busy for ever),
//! `end=hostile` (writes every MSR and every port, then halts),
//! `end=bench` (times 1,000 CPUID and 1,000 device-model port exits),
//! `end=touch touch_mib=N` (writes and reads back every page from 8 MiB
//! to N MiB),
//! `end=mmio` (reads guest-physical
//! 768 MiB, outside its memory), `end=triple` (a triple fault).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the HVM test guest runs in a Xenolith HVM domain (cargo xtask test --only hvm)");
}
