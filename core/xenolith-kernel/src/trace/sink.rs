//! Where trace events go: the per-CPU rings and the `defmt` logger.
//!
//! Owns: allocating the rings at boot, the global logger (one `defmt`
//! encoder per CPU, writing into that CPU's ring) and the copy-out for the
//! `TraceRead` hypercall. The only unsafe code turns the frames reserved
//! here into the ring's byte slice.

use super::ring::ByteRing;
use crate::arch::cpu::MAX_CPUS;
use core::sync::atomic::{AtomicBool, Ordering};
use ipc_abi::hypercall::Error;
use ipc_abi::trace::TraceChunk;
use spin::Mutex;

static ON: AtomicBool = AtomicBool::new(false);

/// Whether events are being recorded (some CPU has a trace ring).
#[inline(always)]
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

struct Rings {
    rings: [Option<ByteRing<'static>>; MAX_CPUS],
    cpus: usize,
    encoders: [defmt::Encoder; MAX_CPUS],
}

static RINGS: Mutex<Rings> = Mutex::new(Rings {
    rings: [const { None }; MAX_CPUS],
    cpus: 0,
    encoders: [const { defmt::Encoder::new() }; MAX_CPUS],
});

/// The build's mark: its address tells a decoder which kernel ELF wrote the events.
#[no_mangle]
#[used]
static XENOLITH_TRACE_STAMP: u8 = 0;

fn stamp() -> u64 {
    core::ptr::addr_of!(XENOLITH_TRACE_STAMP) as u64
}

/// Gives each of `cpus` CPUs a ring of `pages` pages and turns tracing on
/// (nothing with `pages == 0`).
pub fn init(pages: u32, cpus: usize) {
    if pages == 0 {
        return;
    }
    let cpus = cpus.min(MAX_CPUS);
    let len = pages as u64 * 4096;
    let mut r = RINGS.lock();
    for cpu in 0..cpus {
        let Some(buf) = reserve(pages as u64) else {
            kprintln!(
                "warning: trace: not enough memory for {pages} pages on cpu {cpu}; tracing off"
            );
            return;
        };
        r.rings[cpu] = Some(ByteRing::new(buf));
    }
    r.cpus = cpus;
    kprintln!(
        "trace: {pages} pages per cpu reserved ({} KiB)",
        len / 1024 * cpus as u64
    );
    ON.store(true, Ordering::Relaxed);
}

/// `pages` contiguous frames, for good, as a byte slice.
fn reserve(pages: u64) -> Option<&'static mut [u8]> {
    let phys = crate::arch::memory::with_frames(|f| f.allocate_contiguous(pages))?
        .first()
        .addr();
    let len = pages * 4096;
    let virt =
        crate::arch::memory::map_physical(phys, len, crate::arch::paging::Caching::WriteBack)
            .ok()?;
    // The frames were just taken from the allocator and are never freed;
    // the slice is the only reference ever made to them (kept in RINGS).
    // SAFETY: nothing else refers to the frames (above), and `map_physical`
    // maps all `len` bytes writable at `virt` for the kernel's lifetime.
    let ring = unsafe { core::slice::from_raw_parts_mut(virt as *mut u8, len as usize) };
    Some(ring)
}

/// Copies CPU `cpu`'s trace bytes from position `from` into `out`.
pub fn read(cpu: usize, from: u64, out: &mut [u8]) -> Result<TraceChunk, Error> {
    if !enabled() {
        return Err(Error::Disabled);
    }
    let r = RINGS.lock();
    let ring = r
        .rings
        .get(cpu)
        .and_then(Option::as_ref)
        .ok_or(Error::InvalidArgument)?;
    let (start, len) = ring.read(from, out);
    Ok(TraceChunk {
        cpus: r.cpus as u32,
        len: len as u32,
        start,
        head: ring.head(),
        capacity: ring.capacity(),
        stamp: stamp(),
    })
}

mod logger {
    use super::RINGS;
    use crate::arch::syscall::this_cpu;

    #[defmt::global_logger]
    struct TraceLogger;

    /// Runs `f` with this CPU's encoder and a writer into its ring.
    fn with_cpu(f: impl FnOnce(&mut defmt::Encoder, &mut dyn FnMut(&[u8]))) {
        let cpu = this_cpu();
        let mut r = RINGS.lock();
        let super::Rings {
            rings, encoders, ..
        } = &mut *r;
        if let (Some(ring), Some(enc)) = (rings[cpu].as_mut(), encoders.get_mut(cpu)) {
            f(enc, &mut |bytes| ring.push(bytes));
        }
    }

    // defmt asks that acquire/release bracket a frame and that frames not
    // interleave. The kernel runs with interrupts off, one event at a time
    // per CPU (none is recorded from the logger).
    // SAFETY: each CPU has its own encoder and ring, so frames never interleave.
    unsafe impl defmt::Logger for TraceLogger {
        fn acquire() {
            with_cpu(|enc, w| enc.start_frame(w));
        }

        unsafe fn flush() {}

        unsafe fn release() {
            with_cpu(|enc, w| enc.end_frame(w));
        }

        unsafe fn write(bytes: &[u8]) {
            with_cpu(|enc, w| enc.write(bytes, w));
        }
    }

    defmt::timestamp!("{=u64:us}", crate::arch::time::now_ns() / 1000);
}
