//! `domain dump-core` on the host side: the domain is paused, every page of
//! its memory and its vCPUs' registers are streamed as a save file's
//! records, it runs on (if it ran), and an ELF core (`core_file`) is
//! written that `gdb IMAGE CORE` opens.

use crate::{core_file, Client, Error, Owned};
use ipc_abi::mgmt::messages::Request;
use ipc_abi::save::{self, Record};
use std::path::Path;

/// What a core dump wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dumped {
    pub name: String,
    pub pages: u64,
    pub vcpus: usize,
    pub bytes: u64,
}

impl Client {
    /// Writes an ELF core of `domain` to `path`. `progress(pages so far,
    /// pages in all)` as pages come. A domain that ran runs on afterwards,
    /// whether the dump worked or not; on failure no file is left.
    pub fn dump_core(
        &mut self,
        domain: u32,
        path: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Dumped, Error> {
        match self.call(&Request::CoreBegin { domain }, |_| true)?.pop() {
            Some(Owned::Ok) => {}
            Some(Owned::Error(m)) => return Err(Error::Refused(m)),
            _ => return Err(Error::Channel("unexpected answer".into())),
        }
        let streamed = self.stream_save(domain, &mut progress);
        let ended = self.simple(&Request::CoreEnd { domain });
        let file = streamed?;
        ended?;
        let records = save::check_file_header(&file)
            .map_err(|e| Error::Channel(format!("the dump came out wrong: {e}")))?;
        let (name, vcpus, pages) = parse(records)?;
        let page_refs: Vec<(u64, &[u8])> = pages.iter().map(|(va, d)| (*va, *d)).collect();
        let core = core_file::build(&name, &vcpus, &page_refs);
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, &core)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::Refused(format!("{}: {e}", path.display())))?;
        Ok(Dumped {
            name,
            pages: pages.len() as u64,
            vcpus: vcpus.len(),
            bytes: core.len() as u64,
        })
    }
}

/// The name, vCPU registers and pages a dump's records carry.
type Parsed<'a> = (String, Vec<core_file::Registers>, Vec<(u64, &'a [u8])>);

fn parse(mut records: &[u8]) -> Result<Parsed<'_>, Error> {
    let (mut name, mut vcpus, mut pages) = (String::new(), Vec::new(), Vec::new());
    while !records.is_empty() {
        let (r, rest) = save::next_record(records)
            .map_err(|e| Error::Channel(format!("the dump came out wrong: {e}")))?;
        match r {
            Record::Header { name: n, .. } => name = n.to_string(),
            Record::Context { regs, .. } => vcpus.push(regs),
            Record::Page { va, data } => pages.push((va, data)),
            Record::End { .. } => break,
            Record::Image { .. } | Record::Device { .. } => {}
        }
        records = rest;
    }
    Ok((name, vcpus, pages))
}
