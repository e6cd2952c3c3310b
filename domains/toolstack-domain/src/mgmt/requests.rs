//! Answering each management request: domains, consoles, rings, traces,
//! the host (the frames they travel in are `mgmt.rs`).

use super::owned::OwnedRequest;
use super::session::{ConsoleRead, Session};
use super::Started_;
use crate::hotplug::Op;
use crate::table::{RingRecord, Started};
use crate::viewer::Viewer;
extern crate alloc;
use alloc::string::String;
use alloc::vec::Vec;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::mgmt::messages::{self, Answer, Request, VERSION};
use domain_runtime::ipc_abi::proto::console::ConsoleResponse;
use domain_runtime::ipc_abi::proto::control::Status;
use domain_runtime::ipc_abi::ring_view::{RingView, SlotStage, Verdict};
use domain_runtime::DomainId;

/// Largest trace chunk in one answer.
const TRACE_MAX: usize = 2048;

/// Requests that wait longer than this with no answer coming mark a ring stuck.
const STUCK_NS: u64 = 1_000_000_000;

/// Longest a `ConsoleRead` waits for output before it is answered empty
/// (the client sends typed input between reads, so this bounds input delay).
const CONSOLE_POLL_NS: u64 = 100_000_000;

use domain_runtime::ipc_abi::domain::{DmaIsolation, HvmSupport};
use domain_runtime::ipc_abi::mgmt::MAX_IMAGE;

impl Session {
    pub(super) fn answer_owned(
        &mut self,
        seq: u32,
        request: OwnedRequest,
        started: &mut Started_,
        viewer: &mut Option<Viewer>,
    ) {
        let request = match request {
            OwnedRequest::Plain(Request::ConsoleRead { domain, offset }) => {
                let id = resolve(started, domain);
                let coming = console_coming(started, id);
                return self.console_read(seq, id, offset, viewer, coming);
            }
            OwnedRequest::Plain(r) => r,
            OwnedRequest::CreateBegin {
                config,
                image_len,
                paused,
            } => {
                if image_len > MAX_IMAGE {
                    return self.send(
                        seq,
                        &Answer::Error {
                            message: "image too large",
                        },
                    );
                }
                self.pending = Some((config, Vec::new(), image_len, paused));
                return self.send(seq, &Answer::Ok);
            }
            OwnedRequest::Upload { offset, data } => {
                let ok = match self.pending.as_mut() {
                    Some((_, image, len, _))
                        if offset == image.len() && image.len() + data.len() <= *len =>
                    {
                        image.extend_from_slice(&data);
                        true
                    }
                    _ => false,
                };
                if !ok {
                    self.pending = None;
                    return self.send(
                        seq,
                        &Answer::Error {
                            message: "upload out of order or too long; creation abandoned",
                        },
                    );
                }
                return self.send(seq, &Answer::Ok);
            }
            OwnedRequest::CreateCommit => return self.commit(seq, started),
            OwnedRequest::RestoreData { data } => return self.restore_data(seq, &data),
            OwnedRequest::Dmesg { from } => return self.dmesg(seq, from),
            OwnedRequest::RingDump {
                frontend,
                device,
                index,
            } => return self.ring_dump(seq, started, frontend, &device, index),
            OwnedRequest::Rename { domain, name } => {
                let answer = crate::ops::rename(started, domain, &name);
                return self.reply(seq, answer);
            }
            OwnedRequest::Hotplug { domain, op, text } => {
                let answer = crate::hotplug::apply(started, domain, op, &text);
                return self.reply(seq, answer);
            }
            OwnedRequest::DebugKeys { keys } => {
                return match crate::ops::debug_keys(&keys) {
                    Ok(()) => self.send(seq, &Answer::Ok),
                    Err(message) => self.send(seq, &Answer::Error { message: &message }),
                };
            }
            OwnedRequest::ConsoleWrite { domain, data } => {
                let id = resolve(started, domain);
                return match viewer.as_mut().map(|v| v.type_into(id, &data)) {
                    Some(true) => self.send(seq, &Answer::Ok),
                    Some(false) => self.send(
                        seq,
                        &Answer::Error {
                            message: "console-dom is busy; input dropped",
                        },
                    ),
                    None => self.send(seq, &NO_CONSOLE_DOM),
                };
            }
        };
        self.answer(seq, request, started)
    }

    fn commit(&mut self, seq: u32, started: &mut Started_) {
        let Some((config, image, len, paused)) = self.pending.take() else {
            return self.send(
                seq,
                &Answer::Error {
                    message: "no creation in progress",
                },
            );
        };
        if image.len() != len {
            return self.send(
                seq,
                &Answer::Error {
                    message: "the image upload is incomplete",
                },
            );
        }
        let image = (len > 0).then_some(image);
        match crate::ops::create(started, "upload", &config, image, paused) {
            Ok(id) => self.send(seq, &Answer::Created { id: id.0 }),
            Err(message) => self.send(seq, &Answer::Error { message: &message }),
        }
    }

    /// Asks console-dom for the output; answered by `on_peek` or `on_timer`.
    fn console_read(
        &mut self,
        seq: u32,
        domain: u32,
        offset: u64,
        viewer: &mut Option<Viewer>,
        console_coming: bool,
    ) {
        let now = domain_runtime::time::now_ns();
        // A client that asks again without waiting gets the old read answered empty.
        self.on_timer(u64::MAX);
        let Some(v) = viewer.as_mut() else {
            return self.send(seq, &NO_CONSOLE_DOM);
        };
        match v.peek(domain, offset, true) {
            Some(peek) => {
                self.console_read = Some(ConsoleRead {
                    seq,
                    peek,
                    offset,
                    deadline: now + CONSOLE_POLL_NS,
                    console_coming,
                })
            }
            None => self.send(
                seq,
                &Answer::ConsoleData(messages::ConsoleRecord {
                    offset,
                    data: &[],
                    closed: false,
                    more: false,
                }),
            ),
        }
    }

    /// console-dom answered a `Peek`: the waiting `ConsoleRead` gets it.
    pub fn on_peek(&mut self, rsp: &ConsoleResponse) {
        let Some(mut read) = self.console_read.take_if(|r| r.peek == rsp.id) else {
            return;
        };
        if rsp.status == Status::NoDevice as u32 && read.console_coming {
            // Not connected yet: answered empty at its deadline, like a quiet console.
            read.peek = 0;
            self.console_read = Some(read);
            return;
        }
        let n = (rsp.len as usize).min(rsp.data.len());
        let answer = match rsp.status {
            s if s == Status::Ok as u32 || s == Status::Disconnected as u32 => {
                Answer::ConsoleData(messages::ConsoleRecord {
                    offset: rsp.offset,
                    data: &rsp.data[..n],
                    closed: s == Status::Disconnected as u32,
                    more: rsp.flags & domain_runtime::ipc_abi::proto::console::RESPONSE_MORE != 0,
                })
            }
            s if s == Status::NoDevice as u32 => Answer::Error {
                message: "that domain has no console",
            },
            _ => Answer::Error {
                message: "console-dom refused to show that console",
            },
        };
        self.send(read.seq, &answer);
    }

    /// When a waiting `ConsoleRead` or `SaveBegin` is due (ns since boot).
    pub fn deadline(&self) -> Option<u64> {
        let read = self.console_read.as_ref().map(|r| r.deadline);
        read.into_iter().chain(self.save_deadline()).min()
    }

    /// Answers a `ConsoleRead` that waited long enough: nothing new.
    pub fn on_timer(&mut self, now: u64) {
        if let Some(read) = self.console_read.take_if(|r| r.deadline <= now) {
            self.send(
                read.seq,
                &Answer::ConsoleData(messages::ConsoleRecord {
                    offset: read.offset,
                    data: &[],
                    closed: false,
                    more: false,
                }),
            );
        }
    }

    fn dmesg(&mut self, seq: u32, from: u64) {
        let mut next = from;
        let mut buf = [0u8; domain_runtime::ipc_abi::hypercall::LOG_LINE_BUF];
        for _ in 0..200 {
            match hc::console_read(next, &mut buf) {
                Ok((n, text)) => {
                    let mut owned: heapless::String<
                        { domain_runtime::ipc_abi::hypercall::LOG_LINE_BUF },
                    > = heapless::String::new();
                    let _ = owned.push_str(text);
                    self.send(
                        seq,
                        &Answer::Line {
                            seq: n,
                            text: &owned,
                        },
                    );
                    next = n + 1;
                }
                Err(_) => break,
            }
        }
        self.send(seq, &Answer::End);
    }

    fn answer(&mut self, seq: u32, request: Request<'_>, started: &mut Started_) {
        match request {
            Request::Hello { version } if version == VERSION => {
                // A new session: a creation the last client left unfinished is dropped.
                self.pending = None;
                self.send(seq, &Answer::Hello { version: VERSION })
            }
            Request::Hello { .. } => self.send(
                seq,
                &Answer::Error {
                    message: "unsupported protocol version",
                },
            ),
            Request::List => {
                for info in crate::ops::live(started) {
                    self.send(
                        seq,
                        &Answer::Domain(messages::DomainRecord {
                            id: info.id.0,
                            name: crate::ops::name(&info),
                            state: crate::ops::state_name(info.state),
                            kind: kind_of(started, info.id),
                            memory_kib: info.memory_kib,
                            vcpus: info.vcpus.max(1),
                            cpu_ticks: info.cpu_ticks,
                            restarts: restarts_of(started, info.id),
                            weight: info.weight,
                            cap: info.cap_percent,
                            max_kib: info.max_kib,
                        }),
                    );
                }
                self.send(seq, &Answer::End);
            }
            Request::HostInfo => {
                let stats = hc::kernel_stats().unwrap_or_default();
                self.send(
                    seq,
                    &Answer::HostInfo(messages::HostRecord {
                        free_kib: stats.free_frames * 4,
                        domains: stats.live_domains,
                        cpus: stats.cpus,
                        version: env!("CARGO_PKG_VERSION"),
                        toolstack_heap_kib: (domain_runtime::heap_in_use() as u64).div_ceil(1024),
                        hvm: HvmSupport::from_number(stats.hvm)
                            .unwrap_or(HvmSupport::NoSvm)
                            .describe(),
                        dma_isolation: DmaIsolation::from_number(stats.dma_isolation)
                            .unwrap_or(DmaIsolation::Failed)
                            .describe(),
                    }),
                );
            }
            Request::RingList => self.ring_list(seq, started),
            Request::Pin { domain, vcpu, cpus } => {
                match crate::ops::find(started, domain).ok_or("no such domain") {
                    Ok(id) => match hc::domain_pin(id, vcpu, cpus) {
                        Ok(_) => self.send(seq, &Answer::Ok),
                        Err(e) => {
                            let mut m: heapless::String<96> = heapless::String::new();
                            let _ = core::fmt::Write::write_fmt(
                                &mut m,
                                format_args!("cannot pin: {e} (a vCPU it has, CPUs that run?)"),
                            );
                            self.send(seq, &Answer::Error { message: &m })
                        }
                    },
                    Err(message) => self.send(seq, &Answer::Error { message }),
                }
            }
            Request::Rename { domain, name } => {
                let answer = crate::ops::rename(started, domain, name);
                self.reply(seq, answer)
            }
            Request::BlockAttach { domain, spec } => {
                let answer = crate::hotplug::apply(started, domain, Op::BlockAttach, spec);
                self.reply(seq, answer)
            }
            Request::BlockDetach { domain, vdev } => {
                let answer = crate::hotplug::apply(started, domain, Op::BlockDetach, vdev);
                self.reply(seq, answer)
            }
            Request::NetAttach { domain, vif } => {
                let answer = crate::hotplug::apply(started, domain, Op::NetAttach, vif);
                self.reply(seq, answer)
            }
            Request::NetDetach { domain, mac } => {
                let answer = crate::hotplug::apply(started, domain, Op::NetDetach, mac);
                self.reply(seq, answer)
            }
            Request::Devices { domain } => self.devices(seq, started, domain),
            Request::MemSet { domain, kib } => {
                let answer = crate::ops::mem_set(started, domain, kib);
                self.reply(seq, answer)
            }
            Request::VcpuSet { domain, count } => {
                let answer = crate::ops::vcpu_set(started, domain, count);
                self.reply(seq, answer)
            }
            Request::MemMax { domain, kib } => {
                let answer = crate::ops::mem_max(started, domain, kib);
                self.reply(seq, answer)
            }
            Request::SetSched {
                domain,
                weight,
                cap,
            } => {
                let answer = crate::ops::set_sched(started, domain, weight, cap);
                self.reply(seq, answer)
            }
            Request::VcpuList => {
                for info in crate::ops::live(started) {
                    for vcpu in 0..info.vcpus.max(1) {
                        let Ok(v) = hc::vcpu_info(info.id, vcpu) else {
                            continue;
                        };
                        self.send(
                            seq,
                            &Answer::Vcpu(messages::VcpuRecord {
                                domain: info.id.0,
                                name: crate::ops::name(&info),
                                vcpu,
                                cpu: v.cpu,
                                running: v.running != 0,
                                affinity: v.affinity,
                                state: crate::ops::vcpu_state_name(&info, v.state),
                                cpu_ticks: v.cpu_ticks,
                            }),
                        );
                    }
                }
                self.send(seq, &Answer::End);
            }
            Request::Trace { cpu, from } => self.trace(seq, cpu, from),
            Request::SaveBegin { domain } => self.save_begin(seq, started, domain),
            Request::SaveRead {
                domain,
                cursor,
                count,
            } => self.save_read(seq, domain, cursor, count),
            Request::SaveEnd { domain, keep } => self.save_end(seq, domain, keep),
            Request::SaveCancel { domain } => self.save_cancel(seq, domain),
            Request::CoreBegin { domain } => self.core_begin(seq, started, domain),
            Request::CoreEnd { domain } => self.core_end(seq, domain),
            Request::RestoreBegin => self.restore_begin(seq),
            Request::RestoreCommit { paused } => self.restore_commit(seq, started, paused),

            Request::Pause { domain } => self.control(seq, started, domain, hc::domain_pause),
            Request::Crash { domain } => self.control(seq, started, domain, hc::domain_crash),

            Request::Unpause { domain } => self.control(seq, started, domain, hc::domain_unpause),
            Request::Destroy { domain } => self.control(seq, started, domain, hc::domain_destroy),
            Request::Info { domain } => self.info(seq, started, domain),
            Request::Shutdown { domain, reboot } => self.shutdown(seq, started, domain, reboot),
            Request::HostShutdown => {
                crate::ops::host_shutdown(started);
                self.send(seq, &Answer::Ok)
            }
            // Handled in `answer_owned`.
            Request::CreateBegin { .. }
            | Request::Upload { .. }
            | Request::CreateCommit
            | Request::Dmesg { .. }
            | Request::DebugKeys { .. }
            | Request::RingDump { .. }
            | Request::ConsoleRead { .. }
            | Request::RestoreData { .. }
            | Request::ConsoleWrite { .. } => {}
        }
    }

    /// A domain's disks, then its interfaces (`domain block-list`,
    /// `network-list`): what its configuration gives it, which backend
    /// serves each now, and whether it connected.
    fn devices(&mut self, seq: u32, started: &[Started], domain: u32) {
        let Some(s) =
            crate::ops::find(started, domain).and_then(|id| started.iter().find(|s| s.id == id))
        else {
            return self.send(
                seq,
                &Answer::Error {
                    message: "no such domain (or one domain 0 did not start)",
                },
            );
        };
        let backend = |b: Option<DomainId>| b.map_or(0, |b| b.0);
        for d in &s.config.disks {
            let index = domain_config::config::vdev_index(&d.vdev).unwrap_or(u32::MAX);
            self.send(
                seq,
                &Answer::Device(messages::DeviceRecord {
                    kind: "block",
                    index,
                    name: &d.vdev,
                    target: &d.target,
                    mode: if d.writable { "w" } else { "r" },
                    backend: backend(s.block_backend),
                    connected: index < 32 && s.block_devices & (1 << index) != 0,
                    mtu: 0,
                }),
            );
        }
        for (i, v) in s.config.vifs.iter().enumerate() {
            if !s.has_vif(i) {
                continue;
            }
            let m = crate::table::vif_mac(&s.config, i, v);
            let mut mac: heapless::String<17> = heapless::String::new();
            let _ = core::fmt::Write::write_fmt(
                &mut mac,
                format_args!(
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    m[0], m[1], m[2], m[3], m[4], m[5]
                ),
            );
            self.send(
                seq,
                &Answer::Device(messages::DeviceRecord {
                    kind: "net",
                    index: i as u32,
                    name: &mac,
                    target: "",
                    mode: "",
                    backend: backend(s.net_backend),
                    connected: i < 32 && s.net_devices & (1 << i) != 0,
                    mtu: u32::from(v.mtu_or_default()),
                }),
            );
        }
        self.send(seq, &Answer::End);
    }

    /// `Ok`, or `Error` with the message.
    fn reply(&mut self, seq: u32, result: Result<(), String>) {
        match result {
            Ok(()) => self.send(seq, &Answer::Ok),
            Err(message) => self.send(seq, &Answer::Error { message: &message }),
        }
    }

    fn control(
        &mut self,
        seq: u32,
        started: &[Started],
        domain: u32,
        op: fn(DomainId) -> domain_runtime::ipc_abi::hypercall::Result<()>,
    ) {
        match crate::ops::control(started, domain, op) {
            Ok(()) => self.send(seq, &Answer::Ok),
            Err(message) => self.send(seq, &Answer::Error { message: &message }),
        }
    }

    /// A piece of the kernel's trace of one CPU (`toolstack host trace`).
    fn trace(&mut self, seq: u32, cpu: u32, from: u64) {
        // The header and as many trace bytes as fit in one answer.
        let mut buf = [0u8; TRACE_MAX - 128];
        match hc::trace_read(cpu, from, &mut buf) {
            Ok((c, data)) => self.send(
                seq,
                &Answer::Trace(messages::TraceRecord {
                    cpus: c.cpus,
                    start: c.start,
                    head: c.head,
                    capacity: c.capacity,
                    stamp: c.stamp,
                    data,
                }),
            ),
            Err(domain_runtime::ipc_abi::hypercall::Error::Disabled) => self.send(
                seq,
                &Answer::Error {
                    message: "tracing is off: boot with tbuf_size=N (trace pages per CPU)",
                },
            ),
            Err(e) => {
                let mut m: heapless::String<64> = heapless::String::new();
                let _ = core::fmt::Write::write_fmt(&mut m, format_args!("trace: {e}"));
                self.send(seq, &Answer::Error { message: &m })
            }
        }
    }

    /// One `Ring` answer for every ring a backend serves, read from its
    /// shared header through `GrantPeek` (which changes nothing), then `End`.
    fn ring_list(&mut self, seq: u32, started: &mut Started_) {
        let now = domain_runtime::time::now_ns();
        for s in started.iter_mut() {
            let id = s.id;
            for r in s.rings.iter_mut() {
                self.send_ring(seq, id, r, now);
            }
        }
        self.send(seq, &Answer::End);
    }

    /// One ring: its `Ring` answer, a `Slot` for each unread response and
    /// each request in flight, oldest first, then `End`.
    fn ring_dump(
        &mut self,
        seq: u32,
        started: &mut Started_,
        frontend: u32,
        device: &str,
        index: u32,
    ) {
        use domain_runtime::ipc_abi::ring::{HEADER_BYTES, SLOT_BYTES};
        let now = domain_runtime::time::now_ns();
        let found = started
            .iter_mut()
            .filter(|s| s.id.0 == frontend || s.id.index() as u32 == frontend)
            .find_map(|s| {
                let id = s.id;
                let r = s
                    .rings
                    .iter_mut()
                    .find(|r| r.device == device && r.index == index)?;
                Some((id, r))
            });
        let Some((id, r)) = found else {
            return self.send(
                seq,
                &Answer::Error {
                    message: "no such ring (see ring list)",
                },
            );
        };
        let gref = r.gref;
        if let Some(v) = self.send_ring(seq, id, r, now) {
            // Only sound indices say where messages are; each slot read once.
            for (i, stage) in v.slots_in_use() {
                let offset = HEADER_BYTES + (i & (v.slots - 1)) as usize * SLOT_BYTES;
                let mut slot = [0u8; SLOT_BYTES];
                if offset + SLOT_BYTES > 4096
                    || hc::grant_peek(id, gref, offset as u64, &mut slot).is_err()
                {
                    break;
                }
                let stage = match stage {
                    SlotStage::Waiting => "waiting",
                    SlotStage::Taken => "taken",
                    SlotStage::Unread => "unread",
                };
                self.send(
                    seq,
                    &Answer::Slot(messages::SlotRecord {
                        index: i,
                        stage,
                        bytes: &slot,
                    }),
                );
            }
        }
        self.send(seq, &Answer::End);
    }

    /// Reads a ring's header through `GrantPeek`, notes whether answers came
    /// since the last look (a ring whose requests waited over [`STUCK_NS`]
    /// with none coming is stuck), and sends its `Ring` answer.
    fn send_ring(
        &mut self,
        seq: u32,
        id: DomainId,
        r: &mut RingRecord,
        now: u64,
    ) -> Option<RingView> {
        let v = r.look(id, now)?;
        let stalled = now.saturating_sub(r.progress_at);
        let (notify_to_backend, notify_to_frontend) = hc::port_sends(id, r.port).unwrap_or((0, 0));
        let verdict = match v.verdict() {
            Verdict::Healthy if stalled > STUCK_NS => "stuck",
            Verdict::Healthy => "healthy",
            Verdict::NotARing => "not a ring",
            Verdict::BrokenIndices => "broken indices",
        };
        self.send(
            seq,
            &Answer::Ring(messages::RingRecord {
                frontend: id.0,
                backend: r.backend.0,
                device: r.device,
                index: r.index,
                state: v.state_name(),
                epoch: v.epoch,
                pages: v.pages,
                slots: v.slots,
                req_prod: v.req_prod,
                req_event: v.req_event,
                rsp_prod: v.rsp_prod,
                rsp_event: v.rsp_event,
                req_prod_pvt: v.req_prod_pvt,
                rsp_cons: v.rsp_cons,
                req_cons: v.req_cons,
                rsp_prod_pvt: v.rsp_prod_pvt,
                in_flight: v.in_flight(),
                notify_to_backend,
                notify_to_frontend,
                stalled_ms: stalled / 1_000_000,
                verdict,
            }),
        );
        Some(v)
    }

    fn shutdown(&mut self, seq: u32, started: &mut Started_, domain: u32, reboot: bool) {
        match crate::ops::shutdown(started, domain, reboot) {
            Ok(()) => self.send(seq, &Answer::Ok),
            Err(message) => self.send(seq, &Answer::Error { message }),
        }
    }

    fn info(&mut self, seq: u32, started: &[Started], domain: u32) {
        let Some(info) = crate::ops::find(started, domain).and_then(|id| hc::domain_info(id).ok())
        else {
            return self.send(
                seq,
                &Answer::Error {
                    message: "no such domain",
                },
            );
        };
        let c = &info.crash;
        let supervisor = started
            .iter()
            .find(|s| s.id == info.id)
            .map(|s| &s.supervisor);
        let last = supervisor.map_or("", |s| s.last_crash.as_str());
        let earlier_dma_faults = supervisor.map_or(0, |s| s.dma_faults);
        let answer = Answer::Info(messages::DetailsRecord {
            id: info.id.0,
            name: crate::ops::name(&info),
            state: crate::ops::state_name(info.state),
            memory_kib: info.memory_kib,
            cpu_ticks: info.cpu_ticks,
            crash_vector: c.vector,
            crash_error: c.error_code,
            crash_rip: c.rip,
            crash_address: c.address,
            crash_message: c.message(),
            restarts: restarts_of(started, info.id),
            last_crash: last,
            dma_faults: info.dma_faults + earlier_dma_faults,
            max_kib: info.max_kib,
        });
        self.send(seq, &answer);
    }
}

/// Times the toolstack restarted domain `id` after a crash.
fn restarts_of(started: &[Started], id: DomainId) -> u32 {
    started
        .iter()
        .find(|s| s.id == id)
        .map_or(0, |s| s.supervisor.restarts)
}

const NO_CONSOLE_DOM: Answer<'static> = Answer::Error {
    message: "no console-dom runs, so there are no consoles",
};

/// Whether domain `id` runs and was started after console-dom (so it gets,
/// or is about to get, a console ring).
fn console_coming(started: &[Started], id: u32) -> bool {
    let console = started
        .iter()
        .position(|s| s.config.role == Some(domain_config::Role::Console) && !s.reported);
    let me = started.iter().position(|s| s.id.0 == id && !s.reported);
    matches!((console, me), (Some(c), Some(m)) if m > c)
}

/// The full id of the domain a client named by id or slot index (a domain
/// no longer tracked keeps the number it was given: console-dom may still
/// hold its history).
fn resolve(started: &[Started], domain: u32) -> u32 {
    started
        .iter()
        .rev()
        .map(|s| s.id)
        .find(|id| id.0 == domain || id.index() as u32 == domain)
        .map_or(domain, |id| id.0)
}

/// What runs in domain `id`, as its configuration says ("pv" for domains
/// domain 0 did not start).
fn kind_of(started: &[crate::table::Started], id: DomainId) -> &'static str {
    started
        .iter()
        .find(|s| s.id == id)
        .map_or("pv", |s| s.config.kind.word())
}
