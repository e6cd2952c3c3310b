//! Reading a NIC's recorded frames (`qemu::Config::capture_frames`, a
//! classic pcap file of Ethernet frames) to say what happened to one TCP
//! connection: which side opened, closed or reset it. For a bench or test
//! whose connection failed, so that its error names the side that reset.

use std::path::Path;

/// One TCP segment as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Seconds since the first frame of the file.
    pub at: f64,
    pub from: ([u8; 4], u16),
    pub to: ([u8; 4], u16),
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// Payload bytes (from the IP header's total length).
    pub len: u32,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = |a: [u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
        let names = [(SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (ACK, "ACK")];
        let flags: Vec<_> = names
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        write!(
            f,
            "{:9.6} s {}:{} -> {}:{} {} seq {} ack {} len {}",
            self.at,
            ip(self.from.0),
            self.from.1,
            ip(self.to.0),
            self.to.1,
            flags.join("+"),
            self.seq,
            self.ack,
            self.len
        )
    }
}

/// The TCP segments in the pcap bytes `file` (Ethernet, IPv4; other frames
/// are skipped).
pub fn segments(file: &[u8]) -> Result<Vec<Segment>, String> {
    Ok(frames(file)?
        .into_iter()
        .filter_map(|(at, frame)| tcp_in(frame, at))
        .collect())
}

/// Each frame of the pcap bytes `file` with its time in seconds since the
/// first (a cut-off last record is left out: QEMU may be writing it).
fn frames(file: &[u8]) -> Result<Vec<(f64, &[u8])>, String> {
    let header = file.get(..24).ok_or("not a pcap file: too short")?;
    let magic = u32::from_le_bytes(header[..4].try_into().unwrap());
    let le = match magic {
        0xa1b2_c3d4 => true,
        0xd4c3_b2a1 => false,
        _ => return Err(format!("not a pcap file: magic {magic:#x}")),
    };
    let word = |b: &[u8]| {
        let b: [u8; 4] = b.try_into().unwrap();
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut out = Vec::new();
    let mut first = None;
    let mut at = 24;
    while let Some(record) = file.get(at..at + 16) {
        let seconds = f64::from(word(&record[..4])) + f64::from(word(&record[4..8])) / 1e6;
        let len = word(&record[8..12]) as usize;
        let Some(frame) = file.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        let start = *first.get_or_insert(seconds);
        out.push((seconds - start, frame));
    }
    Ok(out)
}

/// The TCP segment in an Ethernet frame, if it holds one.
fn tcp_in(frame: &[u8], at: f64) -> Option<Segment> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || *ip.get(9)? != 6 || ihl < 20 {
        return None;
    }
    let total = u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]);
    let tcp = ip.get(ihl..)?;
    let be16 = |i: usize| Some(u16::from_be_bytes([*tcp.get(i)?, *tcp.get(i + 1)?]));
    let be32 = |i: usize| Some(u32::from_be_bytes(tcp.get(i..i + 4)?.try_into().ok()?));
    let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
    let addr = |i: usize| -> Option<[u8; 4]> { ip.get(i..i + 4)?.try_into().ok() };
    Some(Segment {
        at,
        from: (addr(12)?, be16(0)?),
        to: (addr(16)?, be16(2)?),
        flags: *tcp.get(13)?,
        seq: be32(4)?,
        ack: be32(8)?,
        len: u32::from(total).saturating_sub((ihl + data_offset) as u32),
    })
}

/// What happened to connections to or from `port`, told for a person: the
/// segments that open, close or reset them, each reset with the segments
/// just before it, and how many segments went each way.
pub fn story(path: &Path, port: u16) -> Result<String, String> {
    let file = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let recorded = frames(&file)?;
    let last = recorded.last().map_or(0.0, |(at, _)| *at);
    let all: Vec<_> = segments(&file)?
        .into_iter()
        .filter(|s| s.from.1 == port || s.to.1 == port)
        .collect();
    let mut lines = Vec::new();
    for (i, s) in all.iter().enumerate() {
        if s.flags & RST != 0 {
            lines.push("  ... before the reset:".to_string());
            lines.extend(all[i.saturating_sub(8)..i].iter().map(|s| format!("  {s}")));
        }
        if s.flags & (SYN | FIN | RST) != 0 {
            lines.push(format!("  {s}"));
        }
    }
    let towards = all.iter().filter(|s| s.to.1 == port).count();
    lines.push(format!(
        "  {} segments to port {port}, {} from it; {} frames recorded in all, the last at {last:.6} s",
        towards,
        all.len() - towards,
        recorded.len()
    ));
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flags: u8, from_port: u16, to_port: u16, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 2..14 + 4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        f[14 + 9] = 6;
        let (host, guest) = ([10, 0, 2, 2], [10, 0, 2, 15]);
        let (src, dst) = if from_port == 5001 {
            (guest, host)
        } else {
            (host, guest)
        };
        f[14 + 12..14 + 16].copy_from_slice(&src);
        f[14 + 16..14 + 20].copy_from_slice(&dst);
        let t = 34;
        f[t..t + 2].copy_from_slice(&from_port.to_be_bytes());
        f[t + 2..t + 4].copy_from_slice(&to_port.to_be_bytes());
        f[t + 4..t + 8].copy_from_slice(&7u32.to_be_bytes());
        f[t + 12] = 5 << 4;
        f[t + 13] = flags;
        f
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        p[..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        for (i, f) in frames.iter().enumerate() {
            for w in [100, i as u32 * 1000, f.len() as u32, f.len() as u32] {
                p.extend_from_slice(&w.to_le_bytes());
            }
            p.extend_from_slice(f);
        }
        p
    }

    #[test]
    fn segments_are_read_with_their_flags_ports_and_payload() {
        let p = pcap(&[
            frame(SYN, 40000, 5001, 0),
            vec![0u8; 60],
            frame(ACK, 5001, 40000, 100),
        ]);
        let s = segments(&p).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].flags, s[0].from.1, s[0].to.1), (SYN, 40000, 5001));
        assert_eq!((s[1].len, s[1].seq), (100, 7));
        assert!((s[1].at - 0.002).abs() < 1e-9);
    }

    #[test]
    fn a_cut_off_last_record_is_skipped_and_a_non_pcap_refused() {
        let mut p = pcap(&[frame(SYN, 1, 5001, 0), frame(ACK, 1, 5001, 0)]);
        p.truncate(p.len() - 10);
        assert_eq!(segments(&p).unwrap().len(), 1);
        assert!(segments(b"hello, this is not a pcap file").is_err());
    }

    #[test]
    fn the_story_shows_the_reset_and_what_came_before_it() {
        let dir = std::env::temp_dir().join(format!("xtask-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let p = pcap(&[
            frame(SYN, 40000, 5001, 0),
            frame(SYN | ACK, 5001, 40000, 0),
            frame(ACK, 40000, 5001, 1000),
            frame(RST, 5001, 40000, 0),
        ]);
        std::fs::write(&path, p).unwrap();
        let story = story(&path, 5001).unwrap();
        assert!(
            story.contains("10.0.2.15:5001 -> 10.0.2.2:40000 RST"),
            "{story}"
        );
        assert!(story.contains("before the reset"), "{story}");
        assert!(
            story.contains("2 segments to port 5001, 2 from it"),
            "{story}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
