//! `domain save` and `domain restore` on the host side: streaming a
//! suspended domain into a file, and a file back into a new domain
//! (`ipc_abi::save` defines the file; the toolstack domain does the rest).
//!
//! Owns: the order of the requests, writing the file only once all of it
//! came and checks whole (a failed save leaves the domain running and no
//! file), and checking a file whole before a restore sends anything (a
//! bad file creates nothing).

use crate::{Client, Error, Owned};
use ipc_abi::mgmt::messages::{Answer, Request, SAVE_READ_MAX};
use ipc_abi::save::{self, Record};
use std::path::Path;
use std::time::Duration;

/// How long `SaveBegin` may take: the domain has 5 s to suspend.
const SUSPEND_WAIT: Duration = Duration::from_secs(15);
/// Records sent per `RestoreData` (three pages and their framing fit a frame).
const RESTORE_BATCH: usize = 3 * (save::RECORD_HEADER_LEN + save::RECORD_MAX);

/// What a save wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub name: String,
    pub pages: u64,
    pub bytes: u64,
    pub devices: u32,
}

impl Client {
    /// Saves `domain` to `path`: it suspends, its file is streamed, checked
    /// and written, then the domain is destroyed (`keep`: left paused).
    /// `progress(pages so far, pages in all)` is called as pages come.
    /// On failure the domain runs on and no file is left.
    pub fn save(
        &mut self,
        domain: u32,
        path: &Path,
        keep: bool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Saved, Error> {
        match self
            .call_within(&Request::SaveBegin { domain }, |_| true, SUSPEND_WAIT)?
            .pop()
        {
            Some(Owned::Ok) => {}
            Some(Owned::Error(m)) => return Err(Error::Refused(m)),
            _ => return Err(Error::Channel("unexpected answer".into())),
        }
        let streamed = self.stream_save(domain, &mut progress).and_then(|file| {
            let summary = save::check_file(&file)
                .map_err(|e| Error::Channel(format!("the file came out wrong: {e}")))?;
            let tmp = path.with_extension("partial");
            std::fs::write(&tmp, &file)
                .and_then(|()| std::fs::rename(&tmp, path))
                .map_err(|e| Error::Refused(format!("{}: {e}", path.display())))?;
            Ok(Saved {
                name: summary.name.to_string(),
                pages: summary.pages,
                bytes: file.len() as u64,
                devices: summary.devices,
            })
        });
        match streamed {
            Ok(saved) => {
                self.simple(&Request::SaveEnd { domain, keep })?;
                Ok(saved)
            }
            Err(e) => {
                let _ = self.simple(&Request::SaveCancel { domain });
                Err(e)
            }
        }
    }

    /// Reads the whole file from the toolstack domain.
    pub(crate) fn stream_save(
        &mut self,
        domain: u32,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<Vec<u8>, Error> {
        let mut file = Vec::new();
        let mut cursor = 0;
        let mut pages_seen = 0;
        loop {
            // Several pieces per request: each answer is one, the last is
            // `done` or the `count`th.
            let count = SAVE_READ_MAX;
            let seen = std::cell::Cell::new(0);
            let answers = self.call(
                &Request::SaveRead {
                    domain,
                    cursor,
                    count,
                },
                |a| {
                    seen.set(seen.get() + 1);
                    matches!(
                        a,
                        Answer::SaveData { done: true, .. } | Answer::Error { .. }
                    ) || seen.get() == count
                },
            )?;
            for answer in answers {
                let (next, pages, done, data) = match answer {
                    Owned::SaveData {
                        cursor: at,
                        next,
                        pages,
                        done,
                        data,
                    } if at == cursor => (next, pages, done, data),
                    Owned::Error(m) => return Err(Error::Refused(m)),
                    _ => return Err(Error::Channel("unexpected answer".into())),
                };
                pages_seen += count_pages(&data);
                file.extend_from_slice(&data);
                progress(pages_seen, pages);
                if done {
                    return Ok(file);
                }
                cursor = next;
            }
        }
    }

    /// Restores the domain saved in `path`; returns its id. The file is
    /// checked whole first: a truncated, corrupted or foreign file is
    /// refused before anything is created. `progress(bytes sent, bytes in all)`.
    pub fn restore(
        &mut self,
        path: &Path,
        paused: bool,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<u32, Error> {
        let file =
            std::fs::read(path).map_err(|e| Error::Refused(format!("{}: {e}", path.display())))?;
        save::check_file(&file).map_err(|e| Error::Refused(format!("{}: {e}", path.display())))?;
        let records = save::check_file_header(&file).map_err(|e| Error::Refused(e.to_string()))?;
        self.simple(&Request::RestoreBegin)?;
        // Batches of whole records, as many as fit each.
        let mut batches = Vec::new();
        let mut rest = records;
        while !rest.is_empty() {
            let mut take = 0;
            while take < rest.len() {
                let len = u32::from_le_bytes(rest[take..take + 4].try_into().unwrap_or([0; 4]));
                let end = take + save::RECORD_HEADER_LEN + len as usize;
                if take > 0 && end > RESTORE_BATCH {
                    break;
                }
                take = end;
            }
            batches.push(&rest[..take]);
            rest = &rest[take..];
        }
        let mut sent = 0;
        self.pipelined(
            batches.iter().map(|data| Request::RestoreData { data }),
            |i| {
                sent += batches[i].len();
                progress(sent, records.len())
            },
        )?;
        match self
            .call(&Request::RestoreCommit { paused }, |_| true)?
            .pop()
        {
            Some(Owned::Created(id)) => Ok(id),
            Some(Owned::Error(m)) => Err(Error::Refused(m)),
            _ => Err(Error::Channel("unexpected answer".into())),
        }
    }
}

/// `Page` records in a run of whole records.
fn count_pages(mut data: &[u8]) -> u64 {
    let mut n = 0;
    while let Ok((r, rest)) = save::next_record(data) {
        n += matches!(r, Record::Page { .. }) as u64;
        data = rest;
    }
    n
}

/// The owned form of a `SaveData` answer.
pub(crate) fn owned(a: &Answer<'_>) -> Option<Owned> {
    match a {
        Answer::SaveData {
            cursor,
            next,
            pages,
            done,
            data,
        } => Some(Owned::SaveData {
            cursor: *cursor,
            next: *next,
            pages: *pages,
            done: *done,
            data: data.to_vec(),
        }),
        _ => None,
    }
}
