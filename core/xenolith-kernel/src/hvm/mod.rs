//! HVM guests: unmodified operating systems in domains, under AMD SVM with
//! nested paging.
//!
//! Owns: the policies (pure, host-tested): what an exit was (`exit`), what
//! CPUID answers (`cpuid`), what each MSR does (`msr`), the local APIC
//! (`lapic`), the device-memory moves a guest makes (`mmio_decode`); and, on bare metal, an HVM vCPU's state (`vcpu`), how it runs
//! (`run`), what each exit does (`handle`), how interrupts reach it
//! (`interrupts`) and end without an exit (`pv_eoi`). The hardware half
//! is `arch/svm.rs`.

pub mod cpuid;
#[cfg(target_os = "none")]
pub mod device_model;
pub mod exit;
#[cfg(target_os = "none")]
mod handle;
#[cfg(target_os = "none")]
mod interrupts;
#[cfg(target_os = "none")]
mod ipi;
pub mod lapic;
#[cfg(target_os = "none")]
mod mmio;
pub mod mmio_decode;
pub mod msr;
#[cfg(target_os = "none")]
mod pv_eoi;
pub mod pvclock;
#[cfg(target_os = "none")]
mod registers;
#[cfg(target_os = "none")]
pub mod run;
#[cfg(target_os = "none")]
pub mod vcpu;
