//! The HVM domain builder: domain 0 makes an HVM guest's memory what its
//! image needs and sets where it starts, as Xen's domain builder does from
//! dom0 (the kernel only gives out RAM and runs vCPUs).
//!
//! Owns: creating the guest (`DomainCreate` with `CREATE_HVM`), loading an
//! ELF image's segments at their physical addresses, the command line
//! where an ELF guest finds it (`ipc_abi::hvm::ELF_CMDLINE_GPA`, ESI), and
//! vCPU 0's start. (Its device-model domain is started by `start.rs`, from
//! the bundle's [`DEVICE_MODEL_IMAGE`].) Every address is checked against the guest's memory first: a
//! hostile image is refused and nothing is left behind.

extern crate alloc;
use alloc::string::String;
use domain_config::DomainConfig;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::{DomainId, VcpuContext};
use domain_runtime::ipc_abi::hvm::ELF_CMDLINE_GPA;
use elf::abi::PT_LOAD;
use elf::endian::LittleEndian;
use elf::ElfBytes;
use zerocopy::FromZeros;

const PAGE: u64 = 4096;

/// A loadable piece of the image: `file` bytes at guest-physical `at`,
/// then zeroes up to `size`.
struct Piece<'a> {
    at: u64,
    file: &'a [u8],
    size: u64,
}

/// The loadable segments of an ELF image and its entry, each inside
/// `[0, ram)` and below 4 GiB (the entry too), or why not.
fn plan(image: &[u8], ram: u64) -> Result<(heapless::Vec<Piece<'_>, 8>, u64), String> {
    let elf = ElfBytes::<LittleEndian>::minimal_parse(image)
        .map_err(|e| alloc::format!("not an ELF image: {e}"))?;
    let limit = ram.min(1 << 32);
    let mut pieces = heapless::Vec::new();
    let segments = elf.segments().ok_or("the image has no program headers")?;
    for s in segments.iter().filter(|s| s.p_type == PT_LOAD) {
        let end = s.p_paddr.checked_add(s.p_memsz);
        let file_end = s.p_offset.checked_add(s.p_filesz);
        let fits = end.is_some_and(|e| e <= limit) && s.p_filesz <= s.p_memsz;
        let file = file_end
            .and_then(|e| image.get(s.p_offset as usize..usize::try_from(e).ok()?))
            .filter(|_| fits)
            .ok_or_else(|| {
                alloc::format!(
                    "a segment at {:#x} ({} bytes) is outside the guest's memory or the file",
                    s.p_paddr,
                    s.p_memsz
                )
            })?;
        let piece = Piece {
            at: s.p_paddr,
            file,
            size: s.p_memsz,
        };
        pieces
            .push(piece)
            .map_err(|_| String::from("more than 8 loadable segments"))?;
    }
    let entry = elf.ehdr.e_entry;
    if entry >= limit {
        return Err(alloc::format!(
            "the entry {entry:#x} is outside the guest's memory"
        ));
    }
    pieces.sort_unstable_by_key(|p| p.at);
    Ok((pieces, entry))
}

/// Writes the pieces into the guest, a page at a time; a page two pieces
/// share gets both. Pages only zeroes need are left as they are (zero).
fn load<'p>(id: DomainId, pieces: impl IntoIterator<Item = (u64, &'p [u8])>) -> Result<(), String> {
    let mut page = alloc::boxed::Box::new([0u8; PAGE as usize]);
    let mut current: Option<u64> = None;
    let flush = |at: u64, page: &[u8; PAGE as usize]| {
        hc::domain_page_write(id, at, page)
            .map(drop)
            .map_err(|e| alloc::format!("cannot write guest page {at:#x}: {e}"))
    };
    for (start, file) in pieces {
        let mut done = 0u64;
        while done < file.len() as u64 {
            let at = start + done;
            let base = at & !(PAGE - 1);
            if current != Some(base) {
                if let Some(old) = current {
                    flush(old, &page)?;
                }
                page.fill(0);
                current = Some(base);
            }
            let offset = (at - base) as usize;
            let n = (PAGE as usize - offset).min(file.len() - done as usize);
            page[offset..offset + n].copy_from_slice(&file[done as usize..done as usize + n]);
            done += n as u64;
        }
    }
    if let Some(old) = current {
        flush(old, &page)?;
    }
    Ok(())
}

/// Creates HVM guest `c` from the ELF `image`, paused and ready to run:
/// its segments loaded, its command line at `ELF_CMDLINE_GPA`, vCPU 0 at
/// the entry with ESI pointing at the command line.
pub fn create(image: &[u8], c: &DomainConfig) -> Result<DomainId, String> {
    if crate::linux::is_bzimage(image) {
        return create_linux(image, c);
    }
    let ram = c.memory_kib * 1024;
    let (pieces, entry) = plan(image, ram)?;
    let cmdline = c.cmdline.as_bytes();
    if cmdline.len() >= PAGE as usize {
        return Err("the command line is longer than a page".into());
    }
    if ram < ELF_CMDLINE_GPA + PAGE {
        return Err("too little memory for the command line page".into());
    }
    if pieces
        .iter()
        .any(|p| p.at < ELF_CMDLINE_GPA + PAGE && ELF_CMDLINE_GPA < p.at + p.size)
    {
        return Err("the image overlaps the command line page".into());
    }
    let name = c.name.as_str();
    let id = hc::domain_create_hvm(name, c.memory_kib, c.weight, c.cap, c.vcpus as u32)
        .map_err(|e| alloc::format!("cannot create {name}: {e}"))?;
    let built = (|| {
        load(id, pieces.iter().map(|p| (p.at, p.file)))?;
        let mut page = alloc::boxed::Box::new([0u8; PAGE as usize]);
        page[..cmdline.len()].copy_from_slice(cmdline);
        hc::domain_page_write(id, ELF_CMDLINE_GPA, &page)
            .map_err(|e| alloc::format!("cannot write the command line: {e}"))?;
        let mut start = VcpuContext::new_zeroed();
        start.rip = entry;
        start.rsi = ELF_CMDLINE_GPA;
        hc::domain_set_context(id, 0, &start)
            .map_err(|e| alloc::format!("cannot set where it starts: {e}"))?;
        Ok(())
    })();
    match built {
        Ok(()) => Ok(id),
        Err(e) => {
            let _ = hc::domain_destroy(id);
            Err(e)
        }
    }
}

/// Creates Linux guest `c` from the bzImage `kernel` (and the bundle's
/// image named by `ramdisk`, if any), paused and ready to run at its 32-bit
/// entry with ESI at its zero page (`linux.rs`).
fn create_linux(kernel: &[u8], c: &DomainConfig) -> Result<DomainId, String> {
    let initrd = match c.ramdisk.as_str() {
        "" => None,
        name => Some(
            crate::bundle::find()
                .and_then(|b| crate::bundle::image(b, name))
                .ok_or_else(|| {
                    alloc::format!("ramdisk: no image named {name} in the boot bundle")
                })?,
        ),
    };
    let ram = c.memory_kib * 1024;
    let boot = crate::linux::boot(kernel, initrd, &c.cmdline, ram, c.vcpus as u32)?;
    let name = c.name.as_str();
    let id = hc::domain_create_hvm(name, c.memory_kib, c.weight, c.cap, c.vcpus as u32)
        .map_err(|e| alloc::format!("cannot create {name}: {e}"))?;
    let built = (|| {
        load(id, boot.pieces.iter().map(|p| (p.at, &p.bytes[..])))?;
        let mut start = VcpuContext::new_zeroed();
        start.rip = boot.entry;
        start.rsi = boot.esi;
        hc::domain_set_context(id, 0, &start)
            .map_err(|e| alloc::format!("cannot set where it starts: {e}"))
    })();
    match built {
        Ok(_) => Ok(id),
        Err(e) => {
            let _ = hc::domain_destroy(id);
            Err(e)
        }
    }
}

/// The boot bundle's image of the device-model domain.
pub const DEVICE_MODEL_IMAGE: &str = "device-model";
/// A device model's memory: its devices' queues, the pages its disks'
/// and interfaces' rings move data through, and its heap.
pub const DEVICE_MODEL_KIB: u64 = 4096;
