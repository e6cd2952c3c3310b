//! A virtio-blk device (virtio 1.x, 5.2) whose disk is one of the guest's
//! `disk` entries, served by drvdom-blk: this device model is an ordinary
//! block frontend of it (`domain_runtime::block::Disk`), so the broker's
//! checks, read-only disks, and following a restarted drvdom-blk with the
//! requests in flight sent again all hold as for a Rust guest. Linux
//! sees a pause, never an error, while drvdom-blk restarts; once the
//! driver is given up on, each request fails with an I/O error.
//!
//! Owns: turning each request of the guest's queue (header, data, status)
//! into reads, writes and flushes of the disk, with the data copied once,
//! between the guest's buffers and the pages drvdom-blk moves by DMA.
//! A request naming memory outside the guest fails (counted in
//! `refused`) and harms nothing else.

use crate::guest_memory::{GuestMemory, Memory};
use crate::virtio_pci::{Identity, Slot, VirtioPci, VERSION_1};
use crate::virtqueue::{Broken, Buffer, Chain, EVENT_IDX};
use domain_runtime::block::{Disk, DiskError};
use domain_runtime::ipc_abi::proto::block::{Features, SECTOR_SIZE};

/// Feature bits (virtio 1.x, 5.2.3).
const SEG_MAX: u64 = 1 << 2;
const RO: u64 = 1 << 5;
const BLK_SIZE: u64 = 1 << 6;
const FLUSH: u64 = 1 << 9;
/// Request types and status values.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// Data buffers one request may have (the queue holds 128 descriptors).
const SEGMENTS: u32 = 126;

pub struct VirtioBlk {
    disk: Disk,
    /// Its device index (xvda = 0), for messages and its serial number.
    device: u32,
    /// Requests failed because they named memory outside the guest.
    pub refused: u64,
}

impl VirtioBlk {
    /// Connects guest disk `device` to drvdom-blk and describes it as a
    /// PCI function in `slot`.
    pub fn connect(device: u32, slot: Slot) -> Result<(VirtioBlk, VirtioPci), DiskError> {
        let disk = Disk::connect(device).map_err(|_| DiskError::Ring)?;
        let info = disk.info();
        let mut features = VERSION_1 | EVENT_IDX | SEG_MAX | BLK_SIZE;
        if info.features.contains(Features::FLUSH) {
            features |= FLUSH;
        }
        if info.features.contains(Features::READ_ONLY) {
            features |= RO;
        }
        let mut f = VirtioPci::new(
            Identity {
                device_type: 2,
                // Mass storage, SCSI (as QEMU's virtio-blk-pci).
                class: 0x01_00_00,
                features,
                queues: 1,
            },
            slot,
        );
        // capacity (sectors), size_max, seg_max, geometry, blk_size.
        f.config[0..8].copy_from_slice(&info.sectors.to_le_bytes());
        f.config[12..16].copy_from_slice(&SEGMENTS.to_le_bytes());
        f.config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        Ok((
            VirtioBlk {
                disk,
                device,
                refused: 0,
            },
            f,
        ))
    }

    /// Serves every request waiting on the queue; the queues whose
    /// interrupt the guest is to get (bit 0: some were answered, and it did
    /// not ask not to be).
    pub fn serve(&mut self, f: &mut VirtioPci, mem: &mut GuestMemory) -> Result<u32, Broken> {
        let before = f.queues[0].used_index();
        while f.ready() {
            let Some(chain) = f.queues[0].pop(mem)? else {
                break;
            };
            let written = self.request(&chain, mem);
            f.queues[0].push(mem, chain.head, written)?;
        }
        Ok(u32::from(f.queues[0].wants_interrupt(mem, before)))
    }

    /// Carries out one request and writes its status; the bytes written
    /// into the guest's buffers.
    fn request(&mut self, chain: &Chain, mem: &mut GuestMemory) -> u32 {
        let bufs = &chain.buffers;
        let (Some(header), Some(status)) = (bufs.first(), bufs.last()) else {
            return 0;
        };
        if bufs.len() < 2 || header.device_writes || header.len < 16 || !status.device_writes {
            self.refused += 1;
            return 0;
        }
        let data = &bufs[1..bufs.len() - 1];
        let mut h = [0u8; 16];
        if mem.read(header.addr, &mut h).is_err() {
            self.refused += 1;
            return 0;
        }
        let kind = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let total: u64 = data.iter().map(|b| u64::from(b.len)).sum();
        let (result, written) = match kind {
            T_IN if data.iter().all(|b| b.device_writes) => {
                (self.read(sector, total, data, mem), total)
            }
            T_OUT if data.iter().all(|b| !b.device_writes) => {
                (self.write(sector, total, data, mem), 0)
            }
            T_FLUSH => (
                match self.disk.flush() {
                    Ok(()) | Err(DiskError::Unsupported) => S_OK,
                    Err(_) => S_IOERR,
                },
                0,
            ),
            T_GET_ID => {
                let mut id = [0u8; 20];
                let letter = u8::try_from(self.device)
                    .ok()
                    .and_then(|d| b'a'.checked_add(d))
                    .map_or('?', char::from);
                let text = alloc::format!("xenolith-xvd{letter}");
                id[..text.len()].copy_from_slice(text.as_bytes());
                match data.first() {
                    Some(b) if b.device_writes => {
                        let n = (b.len as usize).min(id.len());
                        match mem.write(b.addr, &id[..n]) {
                            Ok(()) => (S_OK, n as u64),
                            Err(_) => (S_IOERR, 0),
                        }
                    }
                    _ => (S_UNSUPP, 0),
                }
            }
            _ => (S_UNSUPP, 0),
        };
        if mem.write(status.addr, &[result]).is_err() {
            self.refused += 1;
            return 0;
        }
        if result == S_OK {
            written as u32 + 1
        } else {
            1
        }
    }

    fn read(&mut self, sector: u64, total: u64, data: &[Buffer], mem: &mut GuestMemory) -> u8 {
        let mut outside = false;
        let done = self
            .disk
            .read_with(sector, total as usize, |offset, bytes| {
                each_piece(data, offset, bytes.len(), |gpa, at, n| {
                    outside |= mem.write(gpa, &bytes[at..at + n]).is_err();
                })
            });
        self.status(done, outside)
    }

    fn write(&mut self, sector: u64, total: u64, data: &[Buffer], mem: &mut GuestMemory) -> u8 {
        let mut outside = false;
        let done = self
            .disk
            .write_with(sector, total as usize, |offset, page| {
                let len = page.len();
                each_piece(data, offset, len, |gpa, at, n| {
                    outside |= mem.read(gpa, &mut page[at..at + n]).is_err();
                })
            });
        // A write whose data lay outside the guest may have reached the
        // disk as zeros where the guest named nothing; it fails anyway.
        self.status(done, outside)
    }

    fn status(&mut self, done: Result<(), DiskError>, outside: bool) -> u8 {
        if outside {
            self.refused += 1;
            return S_IOERR;
        }
        // A driver given up on (`Gone`) fails each request the same way.
        if done.is_ok() {
            S_OK
        } else {
            S_IOERR
        }
    }
}

/// Calls `f(gpa, at, n)` for each piece of the buffers that bytes
/// `[offset, offset + len)` of the request's data (the buffers one after
/// another) fall in; `at` counts from `offset`.
fn each_piece(data: &[Buffer], offset: usize, len: usize, mut f: impl FnMut(u64, usize, usize)) {
    let mut start = 0usize;
    let end = offset + len;
    for b in data {
        let b_end = start + b.len as usize;
        let from = offset.max(start);
        let to = end.min(b_end);
        if from < to {
            f(b.addr + (from - start) as u64, from - offset, to - from);
        }
        start = b_end;
        if start >= end {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_a_transfer_fall_in_the_right_buffers() {
        let data = [
            Buffer {
                addr: 0x1000,
                len: 512,
                device_writes: true,
            },
            Buffer {
                addr: 0x9000,
                len: 8192,
                device_writes: true,
            },
        ];
        let mut seen = alloc::vec::Vec::new();
        each_piece(&data, 0, 4096, |gpa, at, n| seen.push((gpa, at, n)));
        assert_eq!(seen, [(0x1000, 0, 512), (0x9000, 512, 3584)]);
        seen.clear();
        each_piece(&data, 4096, 4608, |gpa, at, n| seen.push((gpa, at, n)));
        assert_eq!(seen, [(0x9000 + 3584, 0, 4608)]);
    }
}
