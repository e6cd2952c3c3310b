//! `cargo xtask bench ...`: measurements that print tables, one file per
//! subject.
//!
//! Owns: the list of benches and which file runs each. Every bench starts
//! from `setup` (the host tools, the kernel and domains built, a directory
//! for its files); path lengths are counted under `-icount`, throughput is
//! given as ratios in one run (docs/performance.md keeps the figures).

mod blk;
mod boot;
mod guest_tcp;
mod hvm;
mod kernel;
mod linux;
mod linux_breakdown;
mod linux_failure;
mod mgmt_channels;
mod net;
mod restart;
mod ring;
mod save;
mod setup;
mod smp;
mod toolstack;

pub use kernel::kernel_bench_modules;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Which {
    /// Boot time and path length to "ready".
    Boot {
        /// Number of boots for the wall-clock medians.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Hypercall, event and domain-creation path lengths (instructions, exact).
    Kernel,
    /// The ipc-abi ring against rtrb and crossbeam's ArrayQueue, between two host threads.
    Ring,
    /// Instructions per console line from `println!` to the UART (through console-dom, -icount).
    Console,
    /// Domain creation to first console line (bundle image, uploaded 1 MiB), `domain list` with 100 domains.
    Toolstack,
    /// Block I/O from a guest through drvdom-blk against drvdom-blk on the raw device (ratios), and instructions per request.
    Blk,
    /// The network through drvdom-net against the NIC driven by drvdom-net itself (ratios), TCP, UDP, instructions per frame.
    Net,
    /// How long a guest's disk waits when drvdom-blk crashes and is restarted.
    Restart,
    /// `domain save` and `domain restore` of a 64 MiB domain (clean, and with 4 MiB written).
    Save,
    /// A CPU-bound workload (four spinning domains) on 1, 2 and 4 CPUs: throughput ratios.
    Smp,
    /// Linux's disk and network through the device model and the driver domains against QEMU's own devices (ratios).
    Linux,
    /// Linux in an HVM domain against the same kernel booted directly by QEMU, and exit path lengths.
    Hvm {
        /// Boots of each for the medians.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

pub fn run(which: Which, short: bool) -> Result<(), String> {
    setup::set_short(short);
    match which {
        Which::Boot { runs } => boot::run(setup::sized(runs, 1).max(1)),
        Which::Kernel => kernel::run(),
        Which::Ring => ring::run(),
        Which::Console => kernel::console(),
        Which::Toolstack => toolstack::run(),
        Which::Blk => blk::run(),
        Which::Net => net::run(),
        Which::Hvm { runs } => hvm::run(setup::sized(runs, 1).max(1)),
        Which::Linux => linux::run(),
        Which::Restart => restart::run(),
        Which::Save => save::run(),
        Which::Smp => smp::run(),
    }
}
