//! Saving a domain to a file on the host, and restoring it (`ipc_abi::save`
//! defines the file; `suspend` in the domain runtime is the other half).
//!
//! Owns: asking a domain to suspend and watching it do so; producing its
//! save file as the host reads it, from this toolstack's record of the
//! domain (start line, image, devices) and the kernel's copy of its memory
//! and registers; and building a domain again from records as they come,
//! each checked first, so that a bad file leaves nothing behind.

extern crate alloc;
use crate::table::{Domains, Image, Started};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use domain_config::DomainConfig;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::{VcpuContext, VcpuState};
use domain_runtime::ipc_abi::hypercall::{PAGE_READ_GO_ON, PAGE_READ_WRITABLE};
use domain_runtime::ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind};
use domain_runtime::ipc_abi::save::{self, Checker, Record, IMAGE_PIECE, PAGE_BYTES};
use domain_runtime::{println, DomainId};
use zerocopy::FromZeros;

/// How long a domain has to suspend once asked.
pub const SUSPEND_TIMEOUT_NS: u64 = 5_000_000_000;
/// Pages in one answer to the host (with framing, under a frame's 16 KiB).
pub const PAGES_PER_READ: usize = 3;

/// Whether a domain may be saved or restored: not one holding hardware,
/// serving other domains or tied to another by an event channel.
pub fn check_config(c: &DomainConfig) -> Result<(), String> {
    if c.kind == domain_config::Kind::Hvm {
        return Err(
            "type = \"hvm\": an HVM guest cannot be saved or restored yet (its device model's state is not saved with it)"
                .into(),
        );
    }
    let held = [
        (!c.ioports.is_empty(), "ioports"),
        (!c.irqs.is_empty(), "irqs"),
        (!c.iomem.is_empty(), "iomem"),
        (!c.pci.is_empty(), "pci"),
        (c.dma_kib > 0, "dma"),
        (c.role.is_some(), "role"),
        (!c.vdisks.is_empty(), "vdisk"),
        (c.evtchn.is_some(), "evtchn"),
    ];
    match held.iter().find(|(has, _)| *has) {
        Some((_, key)) => Err(format!(
            "{key}: a domain holding hardware or serving other domains cannot be saved or restored"
        )),
        None => Ok(()),
    }
}

/// A save in progress.
pub struct Save {
    pub id: DomainId,
    /// The `SaveBegin` waiting for the domain to suspend, and until when.
    pub waiting: Option<(u32, u64)>,
    /// The file up to its pages: file header, header, image, registers, devices.
    prefix: Vec<u8>,
    /// Pages and devices the file holds; the pages' addresses, rising.
    pub pages: u64,
    wanted: Vec<u64>,
    devices: u32,
    /// A core dump rather than a save (every page goes in), and whether
    /// the domain ran before it was paused for it.
    pub core: Option<bool>,
}

/// Asks domain `domain` to suspend for saving.
pub fn begin(started: &mut Domains, domain: u32, seq: u32) -> Result<Save, String> {
    let s = started
        .iter_mut()
        .find(|s| !s.reported && (s.id.0 == domain || s.id.index() as u32 == domain))
        .ok_or("no such domain (domain 0 cannot be saved)")?;
    check_config(&s.config)?;
    if s.detached_vifs != 0 {
        // Its interfaces' numbers would change in the restored domain,
        // under frontends that keep them.
        return Err("an interface was detached from it; it cannot be saved".into());
    }
    if matches!(s.image, Image::Gone) {
        return Err("its image is no longer kept".into());
    }
    let info = hc::domain_info(s.id).map_err(|e| e.to_string())?;
    if info.state != domain_runtime::ipc_abi::domain::DomainState::Running as u32 {
        return Err("it is not running (it must run to suspend itself)".into());
    }
    let link = s
        .control
        .as_mut()
        .ok_or("it has no control ring, so it cannot be asked to suspend")?;
    let mut ask = ControlMessage::new_zeroed();
    ask.op = ControlOp::SuspendRequest as u32;
    link.tell(ask);
    println!("toolstack: asked {} (domain {}) to suspend", s.name, s.id);
    Ok(Save {
        id: s.id,
        waiting: Some((seq, domain_runtime::time::now_ns() + SUSPEND_TIMEOUT_NS)),
        prefix: Vec::new(),
        pages: 0,
        wanted: Vec::new(),
        devices: 0,
        core: None,
    })
}

/// Begins a core dump of domain `domain` (`domain dump-core`): it is paused
/// if it runs, and its file is made at once with every page of its memory
/// and the registers of its started vCPUs; `SaveRead` streams it and
/// `CoreEnd` lets it run on. Any domain this toolstack started, in any
/// state (a crashed one kept by `on_crash = "preserve"` too).
pub fn core(started: &[Started], domain: u32) -> Result<Save, String> {
    use domain_runtime::ipc_abi::domain::DomainState;
    let s = started
        .iter()
        .find(|s| !s.reported && (s.id.0 == domain || s.id.index() as u32 == domain))
        .ok_or("no such domain (domain 0 cannot be dumped)")?;
    let info = hc::domain_info(s.id).map_err(|e| e.to_string())?;
    let running = info.state == DomainState::Running as u32;
    if running {
        hc::domain_pause(s.id).map_err(|e| format!("cannot pause it: {e}"))?;
    }
    // Its registers are read once its vCPUs are off their CPUs (they
    // leave at the kernel's resched IPI, a moment after the pause).
    for _ in 0..10_000 {
        if hc::domain_info(s.id).is_ok_and(|i| i.running == 0) {
            break;
        }
        hc::yield_cpu();
    }
    let mut save = Save {
        id: s.id,
        waiting: None,
        prefix: Vec::new(),
        pages: 0,
        wanted: Vec::new(),
        devices: 0,
        core: Some(running),
    };
    if let Err(e) = save.make_prefix(started) {
        if running {
            let _ = hc::domain_unpause(s.id);
        }
        return Err(e);
    }
    Ok(save)
}

/// How many vCPUs the domain started: the file carries the registers of
/// vCPUs 0 to n - 1 (a domain starts them in order; one that left a gap is
/// refused).
fn started_vcpus(id: DomainId) -> Result<u32, String> {
    let info = hc::domain_info(id).map_err(|e| e.to_string())?;
    let up: Vec<bool> = (0..info.vcpus.max(1))
        .map(|v| hc::vcpu_info(id, v).is_ok_and(|v| v.state != VcpuState::Down as u32))
        .collect();
    let n = up.iter().take_while(|&&u| u).count();
    if up[n..].iter().any(|&u| u) {
        return Err("its started vCPUs are not 0 to n - 1; such a domain cannot be saved".into());
    }
    Ok(n as u32)
}

/// A record appended to `out`, framed.
fn push(out: &mut Vec<u8>, record: &Record<'_>) {
    let mut buf = [0u8; save::RECORD_HEADER_LEN + save::RECORD_MAX];
    if let Some(n) = save::encode(record, &mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
}

impl Save {
    /// Whether the domain has suspended: then the file's start is made and
    /// its pages counted. `Err` once it is too late.
    pub fn ready(&mut self, started: &[Started], now: u64) -> Option<Result<(), String>> {
        let (_, deadline) = self.waiting?;
        // Suspended, and its other vCPUs off their CPUs too (they leave at
        // the kernel's resched IPI, a moment after the suspending one).
        let suspended = hc::domain_info(self.id).is_ok_and(|i| i.suspended == 1 && i.running == 0);
        if !suspended {
            return (now >= deadline).then(|| {
                Err(format!(
                    "domain {} did not suspend within {} s (a domain suspends while it waits through the runtime)",
                    self.id,
                    SUSPEND_TIMEOUT_NS / 1_000_000_000
                ))
            });
        }
        Some(self.make_prefix(started))
    }

    fn make_prefix(&mut self, started: &[Started]) -> Result<(), String> {
        let s = started
            .iter()
            .find(|s| s.id == self.id)
            .ok_or("the domain is gone")?;
        let image = s.image.bytes();
        let vcpus = started_vcpus(self.id)?;
        let contexts = (0..vcpus)
            .map(|v| hc::domain_get_context(self.id, v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut out = save::file_header().to_vec();
        let mut config = (*s.config).clone();
        config.start_paused = false;
        let line = domain_config::module_line::render(&config);
        push(
            &mut out,
            &Record::Header {
                name: &s.name,
                memory_kib: config.memory_kib,
                vcpus,
                line: &line,
                image_len: image.len() as u64,
                domain: self.id.0,
                boot: domain_runtime::time::boot_stamp(),
            },
        );
        for piece in image.chunks(IMAGE_PIECE) {
            push(&mut out, &Record::Image { data: piece });
        }
        for (vcpu, ctx) in (0..).zip(&contexts) {
            push(
                &mut out,
                &Record::Context {
                    vcpu,
                    regs: ctx.to_words(),
                },
            );
        }
        let name_of = |id: Option<DomainId>| {
            id.and_then(|b| started.iter().find(|x| x.id == b))
                .map(|x| x.name.as_str())
        };
        let mut devices = 0;
        let mut device = |out: &mut Vec<u8>, kind: DeviceKind, index: u32, backend: &str| {
            devices += 1;
            push(
                out,
                &Record::Device {
                    kind: kind as u32,
                    index,
                    backend,
                },
            );
        };
        if let Some(b) = name_of(s.console_backend) {
            device(&mut out, DeviceKind::Console, 0, b);
        }
        for (backend, bits, kind) in [
            (s.block_backend, s.block_devices, DeviceKind::Block),
            (s.net_backend, s.net_devices, DeviceKind::Net),
        ] {
            if let Some(b) = name_of(backend) {
                for i in (0..32).filter(|i| bits & (1 << i) != 0) {
                    device(&mut out, kind, i, b);
                }
            }
        }
        // The pages the file will hold (the domain is still: they stay):
        // a core has every page, a save what a fresh domain would not.
        self.wanted = pages_to_keep(self.id, self.core.is_none())?;
        let pages = self.wanted.len() as u64;
        self.prefix = out;
        self.pages = pages;
        self.devices = devices;
        self.waiting = None;
        match self.core {
            Some(_) => println!(
                "toolstack: domain {} paused; dumping {} pages",
                self.id, pages
            ),
            None => println!(
                "toolstack: domain {} suspended; saving {} pages and {} devices",
                self.id, pages, devices
            ),
        }
        Ok(())
    }

    /// The file's bytes from `cursor` on (at most a few pages' worth) into
    /// `out`; returns where the next read starts and whether the file is whole.
    pub fn read(&self, cursor: u64, out: &mut Vec<u8>) -> Result<(u64, bool), String> {
        let prefix = self.prefix.len() as u64;
        if cursor < prefix {
            let end = (cursor + 3 * PAGE_BYTES as u64).min(prefix);
            out.extend_from_slice(&self.prefix[cursor as usize..end as usize]);
            return Ok((end, false));
        }
        let first = (cursor - prefix) as usize;
        let mut page = [0u8; PAGE_BYTES];
        for &va in self.wanted.iter().skip(first).take(PAGES_PER_READ) {
            let at = hc::domain_page_read(self.id, va, &mut page, false)
                .map_err(|e| format!("cannot read the domain's memory: {e}"))?;
            if at & !PAGE_READ_WRITABLE != va {
                return Err("the domain's memory changed during the save".into());
            }
            push(out, &Record::Page { va, data: &page });
        }
        let next = first + PAGES_PER_READ;
        if next < self.wanted.len() {
            return Ok((prefix + next as u64, false));
        }
        push(
            out,
            &Record::End {
                pages: self.pages,
                devices: self.devices,
            },
        );
        Ok((u64::MAX, true))
    }
}

/// The addresses of domain `id`'s pages, rising: all of them, or with
/// `skip_fresh` those a fresh domain would not hold the same (the kernel
/// passes over the others: `save::fresh_page`).
pub fn pages_to_keep(id: DomainId, skip_fresh: bool) -> Result<Vec<u64>, String> {
    let mut pages = Vec::new();
    let mut page = [0u8; PAGE_BYTES];
    let mut from = 0;
    loop {
        match hc::domain_page_read(id, from, &mut page, skip_fresh) {
            Ok(at) if at & PAGE_READ_GO_ON != 0 => from = at & !PAGE_READ_GO_ON,
            Ok(at) => {
                let va = at & !PAGE_READ_WRITABLE;
                pages.push(va);
                from = va + PAGE_BYTES as u64;
            }
            Err(domain_runtime::ipc_abi::hypercall::Error::Empty) => return Ok(pages),
            Err(e) => return Err(format!("cannot read the domain's memory: {e}")),
        }
    }
}

/// A restore in progress: what the records said so far, and the domain
/// being built once its image is whole.
#[derive(Default)]
pub struct Restore {
    checker: Checker,
    config: Option<DomainConfig>,
    image: Vec<u8>,
    image_len: usize,
    id: Option<DomainId>,
    /// Devices to reconnect: kind, index, backend name.
    devices: Vec<(u32, u32, String)>,
    /// The saved domain, if it ran in this boot (its console history carries over).
    saved_in_this_boot: Option<DomainId>,
}

impl Restore {
    /// Takes the next records (whole, framed). On error the caller abandons the restore.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            let (record, rest) = save::next_record(data).map_err(|e| e.to_string())?;
            self.checker.accept(&record).map_err(|e| e.to_string())?;
            self.take(record)?;
            data = rest;
        }
        Ok(())
    }

    fn take(&mut self, record: Record<'_>) -> Result<(), String> {
        match record {
            Record::Header {
                name,
                memory_kib,
                line,
                image_len,
                domain,
                boot,
                ..
            } => {
                self.saved_in_this_boot =
                    (boot == domain_runtime::time::boot_stamp()).then_some(DomainId(domain));
                let config = domain_config::module_line::parse("the save file", line)
                    .map_err(|errors| errors.first().map(ToString::to_string).unwrap_or_default())?
                    .config;
                check_config(&config)?;
                if config.name != name {
                    return Err("the save file's name and configuration disagree".into());
                }
                if memory_kib != config.memory_kib {
                    return Err("the save file's memory size and configuration disagree".into());
                }
                self.config = Some(config);
                self.image_len = image_len as usize;
            }
            Record::Image { data } => {
                self.image.extend_from_slice(data);
                if self.image.len() == self.image_len {
                    let config = self.config.as_ref().ok_or("an image before the header")?;
                    let id = crate::start::create_loaded(&self.image, config).ok_or(
                        "the domain could not be created (see the console: a domain of that name may run)",
                    )?;
                    self.id = Some(id);
                }
            }
            Record::Context { vcpu, regs } => {
                let mut c = VcpuContext::from_words(&regs);
                // vCPU 0 suspended (the kernel takes `Suspend` only there):
                // its `Suspend` returns 1 in the copy, "you were restored".
                // The others go on from wherever they were stopped.
                if vcpu == 0 {
                    c.rax = 0;
                    c.rdx = 1;
                }
                let id = self.id.ok_or("registers before the image")?;
                hc::domain_set_context(id, vcpu, &c)
                    .map_err(|e| format!("the saved registers were refused: {e}"))?;
            }
            Record::Device {
                kind,
                index,
                backend,
            } => self.devices.push((kind, index, backend.into())),
            Record::Page { va, data } => {
                let id = self.id.ok_or("a page before the image")?;
                let page: &[u8; PAGE_BYTES] = data.try_into().map_err(|_| "a short page")?;
                hc::domain_page_write(id, va, page)
                    .map_err(|e| format!("page {va:#x} was refused: {e}"))?;
            }
            Record::End { .. } => {}
        }
        Ok(())
    }

    /// Every record came: the domain gets its command line and control
    /// ring and runs (unless `paused`); each device's frontend is told
    /// where its backend is now, as after a backend restart. On failure
    /// nothing of the restore is left.
    pub fn commit(mut self, started: &mut Domains, paused: bool) -> Result<DomainId, String> {
        let Some(id) = self.id.filter(|_| self.checker.done()) else {
            self.abandon();
            return Err("the save file ended early".into());
        };
        if !crate::table::make_room(started) {
            self.abandon();
            return Err("the toolstack already tracks as many domains as it can".into());
        }
        let Some(mut config) = self.config.take() else {
            self.abandon();
            return Err("the save file has no header".into());
        };
        config.start_paused = paused;
        let image = Image::Uploaded(core::mem::take(&mut self.image).into());
        let me = crate::ops::me();
        let Some(mut s) = crate::start::launch(me, id, image, config.into(), started, 0) else {
            self.abandon();
            return Err("the domain could not be started".into());
        };
        if let Some(old) = self.saved_in_this_boot {
            crate::broker::inherit_console(started, old, id);
        }
        for (kind, index, backend) in &self.devices {
            let now = started
                .iter()
                .find(|b| !b.reported && b.name.as_str() == backend.as_str())
                .map(|b| b.id);
            let mut news = ControlMessage::new_zeroed();
            news.op = match now {
                Some(_) => ControlOp::PeerRestarted as u32,
                None => ControlOp::PeerGone as u32,
            };
            news.kind = *kind;
            news.index = *index;
            news.peer = now.unwrap_or(DomainId(0));
            if let Some(link) = s.control.as_mut() {
                link.tell(news);
            }
        }
        println!(
            "toolstack: restored {} as domain {} ({} pages, {} devices)",
            s.name,
            id,
            self.checker.pages(),
            self.devices.len()
        );
        started.push(s);
        self.id = None;
        Ok(id)
    }

    /// Gives up: the domain being built (if any) is destroyed.
    pub fn abandon(mut self) {
        if let Some(id) = self.id.take() {
            let _ = hc::domain_destroy(id);
        }
    }
}
