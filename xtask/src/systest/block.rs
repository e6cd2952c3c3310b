//! System tests of the block driver domain: drvdom-blk brings up the virtio
//! disk through the kernel's mediated PCI access and reads what the host
//! wrote; nobody else reaches the device.

use super::{check, expect_line, Ctx, Machine};
use crate::iso::BLOCK_DRIVER_LINE;

/// A 16 MiB image whose first sector starts with a marker, the rest pseudo-random.
fn disk_image(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0u8; 16 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    bytes[..16].copy_from_slice(b"XENOLITH-DISK-01");
    std::fs::write(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

pub fn drvdom_blk_reads_the_disk(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let image = c.path("disk.img");
    let bytes = disk_image(&image)?;
    let guests = [
        ("drvdom-blk", BLOCK_DRIVER_LINE),
        // The same function twice, and a bridge: both refused.
        ("drvdom-blk", "blk-twice pci=00:04.0 dma=64"),
        ("drvdom-blk", "blk-bridge pci=00:00.0"),
        ("pci-prober", "pci-prober"),
    ];
    let config = c.system("", &guests)?.disk(&image);
    let m = super::boot(&config, slot)?;
    expect_line(m, "toolstack: domain 1 gets PCI function 00:04.0")?;
    expect_line(
        m,
        "[1] drvdom-blk: virtio-blk at 00:04.0: 32768 sectors of 512 bytes (16 MiB)",
    )?;
    let first = expect_line(m, "[1] drvdom-blk: sector 0 begins ")?;
    let want = format!("{:02x?}", &bytes[..16]);
    check(first.ends_with(&want), || {
        format!("sector 0 read as {first:?}, the host wrote {want}")
    })?;
    expect_line(
        m,
        "cannot give blk-twice its hardware: device already given to another domain",
    )?;
    expect_line(m, "cannot give blk-bridge its hardware: permission denied")?;
    for what in [
        "config read of 00:04.0",
        "command write to 00:04.0",
        "BAR 4 of 00:04.0",
        "config read of the host bridge",
        "DMA address",
    ] {
        expect_line(m, &format!("pci-prober: {what} refused: permission denied"))?;
    }
    expect_line(m, "pci-prober: done")?;
    check(!m.lines().iter().any(|l| l.contains("succeeded")), || {
        "the prober reached something it was not given".into()
    })
}
