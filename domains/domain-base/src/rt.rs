//! The start of a domain: `_start`, the heap, the start info, the panic
//! handler. What runs after the heap is ready is `__xenolith_domain_main`,
//! which `domain_runtime::entry!` defines.

extern crate alloc;
use ipc_abi::layout::START_INFO;
use ipc_abi::shared::{ModuleInfo, StartInfo};

/// The start info page.
pub fn start_info() -> &'static StartInfo {
    // SAFETY: the kernel maps the start info read-only at START_INFO before
    // the domain runs and never unmaps it; StartInfo is plain data.
    unsafe { &*(START_INFO as *const StartInfo) }
}

/// The domain's command line.
pub fn command_line() -> &'static str {
    let si = start_info();
    let n = (si.cmdline_len as usize).min(si.cmdline.len());
    core::str::from_utf8(&si.cmdline[..n]).unwrap_or("")
}

/// The value of `key=` on this domain's command line, if it is there.
pub fn option(key: &str) -> Option<&'static str> {
    command_line()
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Bytes of the heap allocated now (0 on the host).
pub fn heap_in_use() -> usize {
    #[cfg(target_os = "none")]
    {
        bare::HEAP.lock().get_counters().allocated_bytes
    }
    #[cfg(not(target_os = "none"))]
    {
        0
    }
}

/// Pages of the heap the allocator no longer hands out, so that their
/// frames can be given back to the machine (the balloon). Only
/// [`take_heap_pages`] makes one and only [`give_heap_pages`] returns it.
#[derive(Debug)]
pub struct HeapPages {
    addr: u64,
    pages: usize,
}

impl HeapPages {
    /// The first page's address (page aligned, in the heap).
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// How many pages, from `addr` on.
    pub fn pages(&self) -> usize {
        self.pages
    }
}

fn pages_layout(pages: usize) -> Option<core::alloc::Layout> {
    core::alloc::Layout::from_size_align(pages.checked_mul(4096)?, 4096).ok()
}

/// Takes `pages` contiguous pages of the heap out of the allocator's use
/// (several at once: each allocation costs the allocator a little room
/// beside it); `None` when the heap has no such run free (or on the host).
pub fn take_heap_pages(pages: usize) -> Option<HeapPages> {
    let layout = pages_layout(pages).filter(|l| l.size() > 0)?;
    #[cfg(target_os = "none")]
    {
        // SAFETY: the layout has a non-zero size; the block is only ever
        // given back through `give_heap_pages`, with this same layout.
        let p = unsafe { alloc::alloc::alloc(layout) };
        (!p.is_null()).then_some(HeapPages {
            addr: p as u64,
            pages,
        })
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = layout;
        None
    }
}

/// Gives pages back to the allocator; their frames must be mapped again
/// first (`memory_populate`) if they were given to the machine.
pub fn give_heap_pages(block: HeapPages) {
    #[cfg(target_os = "none")]
    if let Some(layout) = pages_layout(block.pages) {
        // SAFETY: `block` came from `take_heap_pages` (only it makes one)
        // with this layout, and is consumed here, so it is freed once.
        unsafe { alloc::alloc::dealloc(block.addr as *mut u8, layout) };
    }
    #[cfg(not(target_os = "none"))]
    let _ = block;
}

/// Boot modules handed to this domain (domain 0 only): bytes and command line.
pub fn modules() -> impl Iterator<Item = (&'static [u8], &'static str)> {
    let si = start_info();
    let n = (si.module_count as usize).min(si.modules.len());
    si.modules[..n].iter().map(module)
}

fn module(m: &'static ModuleInfo) -> (&'static [u8], &'static str) {
    // SAFETY: the kernel maps each module read-only at `va` for `len` bytes
    // for the domain's whole life (start info says so, and only the kernel
    // writes start info).
    let bytes = unsafe { core::slice::from_raw_parts(m.va as *const u8, m.len as usize) };
    let n = (m.cmdline_len as usize).min(m.cmdline.len());
    (bytes, core::str::from_utf8(&m.cmdline[..n]).unwrap_or(""))
}

#[cfg(target_os = "none")]
mod bare {
    use super::*;
    use ipc_abi::domain::ShutdownReason;
    use ipc_abi::shared::START_INFO_MAGIC;
    use talc::{ErrOnOom, Span, Talc, Talck};

    #[global_allocator]
    pub(super) static HEAP: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

    core::arch::global_asm!(
        ".section .text._start",
        ".global _start",
        "_start:",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym runtime_start,
    );

    extern "Rust" {
        fn __xenolith_domain_main(start: &'static StartInfo);
    }

    extern "C" fn runtime_start() -> ! {
        let si = start_info();
        if si.magic != START_INFO_MAGIC {
            crate::hypercall::shutdown(ShutdownReason::Crash, b"bad start info magic");
        }
        let heap = Span::from_base_size(si.heap_base as *mut u8, si.heap_size as usize);
        // SAFETY: the kernel maps [heap_base, heap_base + heap_size) read-write
        // and zeroed for this domain alone, and nothing else uses it.
        unsafe {
            let _ = HEAP.lock().claim(heap);
        }
        // SAFETY: `domain_runtime::entry!` defines this function in the
        // domain's binary (it connects the domain's rings, runs its `run`,
        // and lets its console drain).
        unsafe { __xenolith_domain_main(si) };
        crate::hypercall::shutdown(ShutdownReason::PowerOff, b"")
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        use core::fmt::Write;
        let mut msg = Message {
            buf: [0; 160],
            len: 0,
        };
        let _ = write!(msg, "{}", info.message());
        if let Some(l) = info.location() {
            let _ = write!(msg, " at {}:{}", short_path(l.file()), l.line());
        }
        // Straight to the debug console: the console ring's lock may be what we panicked under.
        let mut line = [0u8; 168];
        line[..7].copy_from_slice(b"panic: ");
        line[7..7 + msg.len].copy_from_slice(&msg.buf[..msg.len]);
        let _ = crate::hypercall::console_write(&line[..7 + msg.len]);
        crate::hypercall::shutdown(ShutdownReason::Crash, &msg.buf[..msg.len])
    }

    /// A dependency's source path from its crate's directory on
    /// (`virtio-drivers-0.11.0/src/queue.rs`, not the whole registry path
    /// that would fill the crash record before the file's name).
    fn short_path(file: &str) -> &str {
        match file.find("/registry/src/") {
            Some(at) => {
                let index_dir = &file[at + "/registry/src/".len()..];
                index_dir.split_once('/').map_or(file, |(_, rest)| rest)
            }
            None => file,
        }
    }

    struct Message {
        buf: [u8; 160],
        len: usize,
    }

    impl core::fmt::Write for Message {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
}
