//! Decoding the kernel's trace buffers (`toolstack host trace`), as
//! xenalyze does for xentrace.
//!
//! Owns: loading the decoding table from the kernel ELF the machine booted
//! (`defmt` keeps event format strings there, not in the machine), refusing
//! an ELF of another build, following each CPU's ring from a cursor (and
//! saying how much was lost when the reader fell behind), and turning frames
//! into lines with a timestamp, the CPU and domain names: an event names a
//! domain as `dom<id>`, which becomes `dom<short id>(<name>)`.

use crate::TraceChunk;
use defmt_decoder::{DecodeError, StreamDecoder, Table};
use defmt_parser::Fragment;
use object::{Object, ObjectSymbol};
use std::path::Path;

/// The decoding table of one kernel build.
pub struct KernelElf {
    table: Table,
    stamp: u64,
}

impl KernelElf {
    /// Reads the kernel ELF at `path` (the one `cargo xtask run` prints).
    pub fn load(path: &Path) -> Result<KernelElf, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the kernel ELF {}: {e}", path.display()))?;
        let table = Table::parse(&bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .ok_or_else(|| {
                format!(
                    "{} has no trace table (built without the trace feature?)",
                    path.display()
                )
            })?;
        let file = object::File::parse(&*bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let stamp = file
            .symbols()
            .find(|s| s.name() == Ok(ipc_abi::trace::STAMP_SYMBOL))
            .map(|s| s.address())
            .ok_or_else(|| {
                format!(
                    "{} has no {} symbol",
                    path.display(),
                    ipc_abi::trace::STAMP_SYMBOL
                )
            })?;
        Ok(KernelElf { table, stamp })
    }

    /// Whether `chunk` came from this build.
    pub fn check(&self, chunk: &TraceChunk) -> Result<(), String> {
        if chunk.stamp == self.stamp {
            Ok(())
        } else {
            Err(
                "the machine runs another kernel build than this ELF: pass the one it booted"
                    .into(),
            )
        }
    }
}

/// One decoded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Microseconds since boot.
    pub micros: u64,
    pub cpu: u32,
    pub text: String,
}

impl std::fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6}.{:06} cpu{} {}",
            self.micros / 1_000_000,
            self.micros % 1_000_000,
            self.cpu,
            self.text
        )
    }
}

/// What feeding one chunk gave.
#[derive(Debug, Default)]
pub struct Fed {
    pub events: Vec<TraceEvent>,
    /// Bytes overwritten before they could be read.
    pub lost: u64,
}

/// Follows every CPU's ring from the start of what it keeps.
pub struct Reader<'t> {
    elf: &'t KernelElf,
    cpus: Vec<CpuStream<'t>>,
}

struct CpuStream<'t> {
    cursor: u64,
    decoder: Box<dyn StreamDecoder + Send + Sync + 't>,
}

impl<'t> Reader<'t> {
    pub fn new(elf: &'t KernelElf) -> Reader<'t> {
        Reader {
            elf,
            cpus: Vec::new(),
        }
    }

    /// Where CPU `cpu`'s next read starts.
    pub fn cursor(&self, cpu: u32) -> u64 {
        self.cpus.get(cpu as usize).map_or(0, |c| c.cursor)
    }

    /// Decodes a chunk read from [`Reader::cursor`]; `name` gives a domain's
    /// name from its full id.
    pub fn feed(
        &mut self,
        cpu: u32,
        chunk: &TraceChunk,
        name: &dyn Fn(u32) -> Option<String>,
    ) -> Result<Fed, String> {
        self.elf.check(chunk)?;
        while self.cpus.len() <= cpu as usize {
            self.cpus.push(CpuStream {
                cursor: 0,
                decoder: self.elf.table.new_stream_decoder(),
            });
        }
        let stream = &mut self.cpus[cpu as usize];
        let lost = chunk.start.saturating_sub(stream.cursor);
        let data = if lost > 0 {
            // The first frame may be cut: start after the next frame end.
            stream.decoder = self.elf.table.new_stream_decoder();
            ipc_abi::trace::resync(&chunk.data)
        } else {
            &chunk.data[..]
        };
        stream.cursor = chunk.start + chunk.data.len() as u64;
        stream.decoder.received(data);
        let mut fed = Fed {
            events: Vec::new(),
            lost,
        };
        loop {
            match stream.decoder.decode() {
                Ok(frame) => fed.events.push(TraceEvent {
                    micros: micros(frame.display_timestamp().map(|t| t.to_string()).as_deref()),
                    cpu,
                    text: render(&frame, name),
                }),
                Err(DecodeError::UnexpectedEof) => break,
                Err(DecodeError::Malformed) => fed.lost += 1,
            }
        }
        Ok(fed)
    }
}

/// "S.UUUUUU" (defmt's `{=u64:us}`) in microseconds.
fn micros(shown: Option<&str>) -> u64 {
    let Some((s, us)) = shown.and_then(|t| t.split_once('.')) else {
        return 0;
    };
    s.parse::<u64>().unwrap_or(0) * 1_000_000 + us.parse::<u64>().unwrap_or(0)
}

/// The message with every `dom<id>` shown as `dom<short id>(<name>)`.
fn render(frame: &defmt_decoder::Frame<'_>, name: &dyn Fn(u32) -> Option<String>) -> String {
    let mut out = String::new();
    let mut after_dom = false;
    for (fragment, shown) in frame.fragments().into_iter().zip(frame.display_fragments()) {
        match fragment {
            Fragment::Literal(text) => {
                after_dom = text.ends_with("dom");
                out.push_str(&shown);
            }
            Fragment::Parameter(_) if after_dom => {
                after_dom = false;
                out.push_str(&domain(&shown, name));
            }
            Fragment::Parameter(_) => out.push_str(&shown),
        }
    }
    out
}

/// `id` (a full domain id) as its short id and, if known, its name.
fn domain(id: &str, name: &dyn Fn(u32) -> Option<String>) -> String {
    match id.parse::<u32>() {
        Ok(full) => match name(full) {
            Some(n) => format!("{}({n})", full & 0xffff),
            None => format!("{}", full & 0xffff),
        },
        Err(_) => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_domain_ids_are_shown_for_people() {
        assert_eq!(micros(Some("12.000345")), 12_000_345);
        assert_eq!(micros(None), 0);
        let names = |id: u32| (id == 0x1_0003).then(|| "web".to_string());
        assert_eq!(domain("65539", &names), "3(web)");
        assert_eq!(domain("7", &names), "7");
        assert_eq!(domain("idle", &names), "idle");
        let e = TraceEvent {
            micros: 1_500_000,
            cpu: 0,
            text: "dom3(web) wakes".into(),
        };
        assert_eq!(e.to_string(), "     1.500000 cpu0 dom3(web) wakes");
    }
}
