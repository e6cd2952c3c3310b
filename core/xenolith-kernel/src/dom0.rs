//! Starting domain 0 from the first boot module.
//!
//! Owns: turning GRUB's modules into domain 0: the first module is its ELF
//! image (and its command line the domain's), it gets `dom0_mem` of memory and
//! the control right, and every other module is mapped into it read-only at
//! `MODULE_WINDOW`, listed with its command line in the start info page.
//! With `mgmt=com2` on its line it is also given COM2 (ports and IRQ 3) for
//! the management protocol.

use crate::arch::addrspace::{Access, Kind};
use crate::arch::memory;
use crate::domain::lifecycle::{self, Spec};
use crate::domain::shared_pages::with_start_info;
use crate::frames::PhysRange;
use ipc_abi::layout::{MODULE_WINDOW, PAGE_SIZE};
use ipc_abi::pc::{COM2_BASE, COM2_IRQ, UART_PORTS};
use ipc_abi::shared::{ModuleInfo, MAX_MODULES, MODULE_CMDLINE_MAX};

/// A boot module: where it is and its command line.
pub struct BootModule<'a> {
    pub range: PhysRange,
    pub cmdline: &'a str,
}

/// Creates and unpauses domain 0. Returns false (with a message) if there is none to start.
///
/// `ifname` (the hypervisor option) is added to domain 0's command line, for
/// the toolstack to hand to the network driver domain.
pub fn start(modules: &[BootModule<'_>], memory_kib: u64, ifname: &str) -> bool {
    let Some(first) = modules.first() else {
        kprintln!("dom0: no boot module; nothing to run");
        return false;
    };
    let image = memory::reserved_bytes(first.range.start, first.range.len());
    let mut k = crate::domain::lock();
    k.kernel_pml4 = memory::kernel_root();
    let result = memory::with_frames(|frames| {
        if k.time_frame.is_none() {
            let f = frames.allocate().ok_or("no memory for the time page")?;
            crate::arch::addrspace::zero_frame(f);
            let page = crate::arch::time::page();
            crate::domain::shared_pages::write_frame(
                f,
                0,
                zerocopy::IntoBytes::as_bytes(&[page.tsc_hz, page.tsc_at_boot]),
            );
            k.time_frame = Some(f);
        }
        let name = first.cmdline.split_whitespace().next().unwrap_or("dom0");
        let name = name.rsplit('/').next().unwrap_or(name);
        let spec = Spec {
            name,
            memory_kib,
            weight: 0,
            cap_percent: 0,
            control: true,
            vcpus: 1,
            hvm: false,
        };
        let id = lifecycle::create(&mut k, frames, &spec).map_err(|_| "cannot create domain 0")?;
        let index = id.index() as usize;
        let d = k.domain_mut(index).ok_or("domain 0 vanished")?;
        lifecycle::load_into(d, frames, image).map_err(|_| "domain 0's image was refused")?;
        let mut cursor = MODULE_WINDOW;
        let mut infos = [ModuleInfo {
            va: 0,
            len: 0,
            cmdline_len: 0,
            cmdline: [0; MODULE_CMDLINE_MAX],
        }; MAX_MODULES];
        for (n, m) in modules.iter().skip(1).take(MAX_MODULES).enumerate() {
            let first_page = m.range.start & !(PAGE_SIZE - 1);
            let mut p = first_page;
            while p < m.range.end {
                d.space
                    .map(
                        frames,
                        cursor + (p - first_page),
                        p,
                        Access {
                            write: false,
                            execute: false,
                        },
                        Kind::Borrowed,
                    )
                    .map_err(|_| "cannot map a module into domain 0")?;
                p += PAGE_SIZE;
            }
            let cl = m.cmdline.as_bytes();
            if cl.len() > MODULE_CMDLINE_MAX {
                kprintln!(
                    "dom0: module {}'s command line is {} bytes; only the first {} are kept",
                    n + 2,
                    cl.len(),
                    MODULE_CMDLINE_MAX
                );
            }
            let cl = &cl[..cl.len().min(MODULE_CMDLINE_MAX)];
            infos[n].va = cursor + (m.range.start - first_page);
            infos[n].len = m.range.len();
            infos[n].cmdline[..cl.len()].copy_from_slice(cl);
            infos[n].cmdline_len = cl.len() as u64;
            cursor += (p - first_page) + PAGE_SIZE;
        }
        let count = modules.len().saturating_sub(1).min(MAX_MODULES);
        with_start_info(d.start_info, |si| {
            si.modules = infos;
            si.module_count = count as u64;
        });
        // `mgmt=com2` on domain 0's line: it serves the management protocol on COM2.
        if first.cmdline.split_whitespace().any(|w| w == "mgmt=com2") {
            crate::domain::devices::add_io_ports(
                &mut k,
                index,
                u64::from(COM2_BASE),
                u64::from(UART_PORTS),
            )
            .map_err(|_| "cannot give domain 0 COM2")?;
            crate::domain::devices::add_irq(&mut k, index, u64::from(COM2_IRQ))
                .map_err(|_| "cannot give domain 0 COM2's IRQ")?;
        }
        let mut line: heapless::String<1024> = heapless::String::new();
        let too_long = "domain 0's command line is too long";
        line.push_str(first.cmdline).map_err(|_| too_long)?;
        line.push_str(" ifname=").map_err(|_| too_long)?;
        line.push_str(ifname).map_err(|_| too_long)?;
        lifecycle::set_cmdline(&mut k, index, line.as_bytes()).map_err(|_| too_long)?;
        lifecycle::unpause(&mut k, index).map_err(|_| "cannot unpause domain 0")?;
        Ok::<_, &str>(id)
    });
    match result {
        Ok(id) => {
            kprintln!(
                "dom0: domain {} started from module 1 with {}K, {} more modules",
                id,
                memory_kib,
                modules.len() - 1
            );
            true
        }
        Err(why) => {
            kprintln!("dom0: {why}");
            false
        }
    }
}
