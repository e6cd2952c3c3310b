//! drvdom-blk maps the data pages guests name (their runtime's slots and
//! their disk buffers) in its grant window, which its rings share: pages
//! mapped for the guests there are never what keeps a new guest's disk
//! from connecting.

use super::harness::{check, tests, Ctx, Machine, Test};

/// Guests created one after another, each keeping its disk connected:
/// each maps 32 data pages (16 of its slots, a 64 KiB buffer), so that
/// with its ring the first seven fill most of drvdom-blk's 255-page
/// window, the eighth fills the rest, and the ninth and tenth find no
/// room for their rings unless the mappings make way.
const GUESTS: u32 = 10;

/// Each guest writes and reads back 32 records, half through its disk's
/// slots and half through its own buffer (so drvdom-blk maps both), and
/// stays; every one of them connects and reads its records back right,
/// drvdom-blk never refuses a ring, and it did have to let its mappings
/// go for one.
fn a_guest_disk_connects_while_other_guests_pages_fill_drvdom_blks_window(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("disk.img");
    std::fs::write(&image, vec![0u8; 4 << 20]).map_err(|e| e.to_string())?;
    let tool = crate::build::domain(&c.domains, "disk-tool");
    let tar = crate::iso::bundle(&c.path("bundle.tar"), &[], &[("disk-tool", tool.as_path())])?;
    // One virtual disk for all (a module's command line holds 160
    // bytes: not ten disks); each guest writes the same records to it.
    let driver = "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all";
    let (m, sock) = c
        .machine()
        .guests(&[("drvdom-blk", driver)])
        .bundle(tar)
        .qemu(|config| config.disk(&image))
        .boot_managed(slot)?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    for i in 1..=GUESTS {
        let config = format!(
            "name = \"holder{i}\"\nkernel = \"disk-tool\"\nmemory = 4\n\
             cmdline = \"records=32 hold=600\"\ndisk = [\"whole,xvda,w\"]\n"
        );
        let id = client
            .create(&config, None, false)
            .map_err(|e| format!("create holder{i}: {e}"))?
            & 0xffff;
        let done = m.wait_for(
            &format!("[{id}] disk-tool: 32 records"),
            super::harness::BOOT,
        );
        check(
            done.as_ref().is_ok_and(|l| l.contains("read back right")),
            || {
                format!(
                    "guest {i} of {GUESTS} (domain {id}): {done:?}; drvdom-blk said: {:?}",
                    m.lines()
                        .into_iter()
                        .filter(|l| l.contains("drvdom-blk:"))
                        .collect::<Vec<_>>()
                )
            },
        )?;
    }
    let refused: Vec<String> = m
        .lines()
        .into_iter()
        .filter(|l| l.contains("no free window slot"))
        .collect();
    check(refused.is_empty(), || format!("refused rings: {refused:?}"))?;
    // The window did fill (else this test showed nothing): a ring made
    // the mappings go.
    let released = m
        .lines()
        .into_iter()
        .any(|l| l.contains("drvdom-blk: the window was full: every mapped data page let go"));
    check(released, || {
        "drvdom-blk never needed to let its mappings go: the window did not fill".into()
    })
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![a_guest_disk_connects_while_other_guests_pages_fill_drvdom_blks_window]
}
