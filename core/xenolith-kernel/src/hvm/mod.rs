//! HVM guests: unmodified operating systems in domains, under AMD SVM with
//! nested paging.
//!
//! Owns: the policies (pure, host-tested): what an exit was (`exit`), what
//! CPUID answers (`cpuid`), what each MSR does (`msr`); and, on bare metal,
//! an HVM vCPU's state and how it runs (`vcpu`, `run`). The hardware half
//! is `arch/svm.rs`.

pub mod cpuid;
pub mod exit;
pub mod msr;
#[cfg(target_os = "none")]
pub mod run;
#[cfg(target_os = "none")]
pub mod vcpu;
