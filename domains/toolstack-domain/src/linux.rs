//! Booting Linux in an HVM guest: the x86 boot protocol
//! (`Documentation/arch/x86/boot.rst`) for a bzImage, entered at its 32-bit
//! entry, and the PC its kernel finds (the e820 memory map and the ACPI
//! tables of `acpi.rs`).
//!
//! Owns: checking the image's setup header, where everything goes in the
//! guest's memory, and the zero page (`boot_params`). Pure: it returns the
//! pieces to write (host-tested); `hvm.rs` writes them.

extern crate alloc;
use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

/// Where things go in the guest (guest-physical addresses).
pub const ZERO_PAGE: u64 = 0x7000;
pub const CMDLINE: u64 = 0x2_0000;
/// The ACPI tables, in the BIOS area the memory map reserves.
pub const ACPI: u64 = 0xe_0000;
/// The protected-mode kernel (its `code32_start`).
pub const KERNEL: u64 = 0x10_0000;
/// Conventional memory ends (the EBDA and BIOS area above are reserved).
const LOW_RAM_END: u64 = 0x9_fc00;

/// Setup header fields (offsets in the image and in the zero page).
const SETUP_SECTS: usize = 0x1f1;
const BOOT_FLAG: usize = 0x1fe;
const HEADER: usize = 0x202;
const VERSION: usize = 0x206;
const TYPE_OF_LOADER: usize = 0x210;
const LOADFLAGS: usize = 0x211;
const RAMDISK_IMAGE: usize = 0x218;
const RAMDISK_SIZE: usize = 0x21c;
const HEAP_END_PTR: usize = 0x224;
const CMD_LINE_PTR: usize = 0x228;
const INITRD_ADDR_MAX: usize = 0x22c;
const CMDLINE_SIZE: usize = 0x238;
const INIT_SIZE: usize = 0x260;
/// Zero page fields outside the setup header.
const ACPI_RSDP_ADDR: usize = 0x070;
const E820_ENTRIES: usize = 0x1e8;
const E820_TABLE: usize = 0x2d0;

/// LOADFLAGS: loaded at 1 MiB; the setup heap may be used.
const LOADED_HIGH: u8 = 0x01;
const CAN_USE_HEAP: u8 = 0x80;

/// e820 types.
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// A piece of the guest's memory to write: bytes at a guest-physical address.
pub struct Piece<'a> {
    pub at: u64,
    pub bytes: Cow<'a, [u8]>,
}

/// What a Linux guest's memory starts as, and where vCPU 0 starts.
pub struct Boot<'a> {
    pub pieces: Vec<Piece<'a>>,
    /// The 32-bit entry, with ESI at the zero page.
    pub entry: u64,
    pub esi: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Whether `image` is a bzImage (its setup header says "HdrS").
pub fn is_bzimage(image: &[u8]) -> bool {
    image.len() > 0x300 && &image[HEADER..HEADER + 4] == b"HdrS"
}

/// The memory, zero page and entry for booting `kernel` (a bzImage) with
/// `initrd` and `cmdline` in `ram` bytes of guest memory with `vcpus` vCPUs.
pub fn boot<'a>(
    kernel: &'a [u8],
    initrd: Option<&'a [u8]>,
    cmdline: &str,
    ram: u64,
    vcpus: u32,
) -> Result<Boot<'a>, String> {
    if !is_bzimage(kernel) || u16_at(kernel, BOOT_FLAG) != 0xaa55 {
        return Err("not a Linux bzImage".into());
    }
    let version = u16_at(kernel, VERSION);
    if version < 0x020c {
        return Err(alloc::format!(
            "boot protocol {}.{:02} is too old (2.12 at least)",
            version >> 8,
            version & 0xff
        ));
    }
    let setup_sects = match kernel[SETUP_SECTS] {
        0 => 4,
        n => n as usize,
    };
    let pm_start = (setup_sects + 1) * 512;
    let header_end = HEADER + kernel[0x201] as usize;
    if pm_start >= kernel.len() || header_end > pm_start || header_end > 4096 {
        return Err("the setup header does not fit the image".into());
    }
    let protected = &kernel[pm_start..];
    let init_size = (u32_at(kernel, INIT_SIZE) as u64).max(protected.len() as u64);
    let kernel_end = KERNEL + init_size;
    let cmdline_max = (u32_at(kernel, CMDLINE_SIZE) as usize).min(4095);
    if cmdline.len() > cmdline_max {
        return Err(alloc::format!(
            "the command line is longer than {cmdline_max} bytes"
        ));
    }
    if kernel_end > ram {
        return Err(alloc::format!(
            "{} MiB is too little for this kernel ({} MiB to unpack)",
            ram >> 20,
            init_size.div_ceil(1 << 20)
        ));
    }
    let mut zp = alloc::vec![0u8; 4096];
    zp[SETUP_SECTS..header_end].copy_from_slice(&kernel[SETUP_SECTS..header_end]);
    zp[TYPE_OF_LOADER] = 0xff;
    zp[LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
    zp[HEAP_END_PTR..HEAP_END_PTR + 2].copy_from_slice(&0xfe00u16.to_le_bytes());
    put_u32(&mut zp, CMD_LINE_PTR, CMDLINE as u32);
    zp[ACPI_RSDP_ADDR..ACPI_RSDP_ADDR + 8].copy_from_slice(&ACPI.to_le_bytes());
    let mut pieces = Vec::new();
    if let Some(rd) = initrd {
        // As high as the kernel allows, page-aligned, above the kernel.
        let max = (u32_at(kernel, INITRD_ADDR_MAX) as u64 + 1).min(ram);
        let at = max.saturating_sub(rd.len() as u64) & !0xfff;
        if at < kernel_end || rd.len() as u64 > u32::MAX as u64 {
            return Err("too little memory for the initramfs above the kernel".into());
        }
        put_u32(&mut zp, RAMDISK_IMAGE, at as u32);
        put_u32(&mut zp, RAMDISK_SIZE, rd.len() as u32);
        pieces.push(Piece {
            at,
            bytes: Cow::Borrowed(rd),
        });
    }
    let map = [
        (0, LOW_RAM_END, E820_RAM),
        (LOW_RAM_END, KERNEL - LOW_RAM_END, E820_RESERVED),
        (KERNEL, ram - KERNEL, E820_RAM),
    ];
    zp[E820_ENTRIES] = map.len() as u8;
    for (i, (addr, size, kind)) in map.iter().enumerate() {
        let at = E820_TABLE + i * 20;
        zp[at..at + 8].copy_from_slice(&addr.to_le_bytes());
        zp[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
        put_u32(&mut zp, at + 16, *kind);
    }
    let mut line = Vec::from(cmdline.as_bytes());
    line.push(0);
    pieces.push(Piece {
        at: KERNEL,
        bytes: Cow::Borrowed(protected),
    });
    pieces.push(Piece {
        at: ZERO_PAGE,
        bytes: Cow::Owned(zp),
    });
    pieces.push(Piece {
        at: CMDLINE,
        bytes: Cow::Owned(line),
    });
    pieces.push(Piece {
        at: ACPI,
        bytes: Cow::Owned(crate::acpi::tables(ACPI, vcpus)),
    });
    pieces.sort_unstable_by_key(|p| p.at);
    Ok(Boot {
        pieces,
        entry: KERNEL,
        esi: ZERO_PAGE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up bzImage: a setup header (protocol 2.15, 4 setup sectors)
    /// and `pm` bytes of protected-mode kernel.
    fn image(pm: usize) -> Vec<u8> {
        let mut k = alloc::vec![0u8; 5 * 512 + pm];
        k[SETUP_SECTS] = 4;
        k[BOOT_FLAG..BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        k[0x201] = 0x6a;
        k[HEADER..HEADER + 4].copy_from_slice(b"HdrS");
        k[VERSION..VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        put_u32(&mut k, INITRD_ADDR_MAX, 0x7fff_ffff);
        put_u32(&mut k, CMDLINE_SIZE, 2047);
        put_u32(&mut k, INIT_SIZE, 0x100_0000);
        k[5 * 512] = 0xe9;
        k
    }

    #[test]
    fn the_zero_page_says_where_everything_is() {
        let k = image(4096);
        let rd = [7u8; 10_000];
        let b = boot(&k, Some(&rd), "console=ttyS0", 64 << 20, 2).unwrap();
        assert_eq!((b.entry, b.esi), (KERNEL, ZERO_PAGE));
        let zp = &b.pieces.iter().find(|p| p.at == ZERO_PAGE).unwrap().bytes;
        assert_eq!(&zp[HEADER..HEADER + 4], b"HdrS");
        assert_eq!(zp[TYPE_OF_LOADER], 0xff);
        assert_eq!(u32_at(zp, CMD_LINE_PTR) as u64, CMDLINE);
        let rd_at = u32_at(zp, RAMDISK_IMAGE) as u64;
        assert_eq!(rd_at, ((64 << 20) - 10_000) & !0xfff);
        assert_eq!(u32_at(zp, RAMDISK_SIZE), 10_000);
        assert_eq!(zp[E820_ENTRIES], 3);
        let last = E820_TABLE + 40;
        assert_eq!(
            u64::from_le_bytes(zp[last + 8..last + 16].try_into().unwrap()),
            (64 << 20) - KERNEL
        );
        let kernel = b.pieces.iter().find(|p| p.at == KERNEL).unwrap();
        assert_eq!(kernel.bytes[0], 0xe9);
        let line = &b.pieces.iter().find(|p| p.at == CMDLINE).unwrap().bytes;
        assert_eq!(&line[..], b"console=ttyS0\0");
    }

    #[test]
    fn hostile_or_unfitting_images_are_refused() {
        assert!(boot(&[0u8; 100], None, "", 64 << 20, 1).is_err());
        let mut old = image(10);
        old[VERSION..VERSION + 2].copy_from_slice(&0x0200u16.to_le_bytes());
        assert!(boot(&old, None, "", 64 << 20, 1).is_err());
        let mut short = image(10);
        short[SETUP_SECTS] = 200;
        assert!(boot(&short, None, "", 64 << 20, 1).is_err());
        assert!(
            boot(&image(10), None, "", 8 << 20, 1).is_err(),
            "too little memory"
        );
        let big = alloc::vec![0u8; 60 << 20];
        assert!(boot(&image(10), Some(&big), "", 64 << 20, 1).is_err());
        let long = "x".repeat(3000);
        assert!(boot(&image(10), None, &long, 64 << 20, 1).is_err());
    }
}
