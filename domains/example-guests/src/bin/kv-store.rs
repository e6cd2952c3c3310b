//! kv-store: a key-value store on the guest's disk (xvda), kept as a log
//! that survives guest restarts and machine reboots (format: `lib.rs`).
//!
//! Commands: on the command line `put=KEY:VALUE` and `get=KEY` (in order),
//! then on the console, one per line: `put KEY VALUE`, `get KEY`, `list`.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;
use domain_runtime::block::{Disk, DiskError};
use domain_runtime::{console, println};
use example_guests::{header, read_header, read_record, record, Store, SECTOR};

domain_runtime::entry!(run);

struct Kv {
    disk: Disk,
    store: Store,
    records: u64,
}

impl Kv {
    /// Opens the log on the disk (a disk without one starts empty).
    fn open(mut disk: Disk) -> Result<Kv, DiskError> {
        let mut s = [0u8; SECTOR];
        disk.read(0, &mut s)?;
        let mut kv = Kv {
            disk,
            store: Store::default(),
            records: 0,
        };
        let announced = read_header(&s).unwrap_or(0);
        for n in 0..announced {
            kv.disk.read(n + 1, &mut s)?;
            match read_record(&s) {
                Some((k, v)) => kv.store.apply(k, v),
                // A damaged record ends the log: what follows it is not trusted.
                None => break,
            }
            kv.records = n + 1;
        }
        Ok(kv)
    }

    fn put(&mut self, key: &str, value: &str) {
        let Some(r) = record(key, value) else {
            println!("kv: '{}' or its value is too long (64 / 400 bytes)", key);
            return;
        };
        if self.records + 2 > self.disk.info().sectors {
            println!("kv: the disk is full");
            return;
        }
        let done = self
            .disk
            .write(self.records + 1, &r)
            .and_then(|()| self.disk.flush())
            .and_then(|()| self.disk.write(0, &header(self.records + 1)))
            .and_then(|()| self.disk.flush());
        match done {
            Ok(()) => {
                self.records += 1;
                self.store.apply(key.into(), value.into());
                println!("kv: put {}", key);
            }
            Err(e) => println!("kv: put {} failed: {:?}", key, e),
        }
    }

    fn get(&self, key: &str) {
        match self.store.get(key) {
            Some(v) => println!("kv: {} = {}", key, v),
            None => println!("kv: {} is not set", key),
        }
    }

    fn command(&mut self, line: &str) {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("put"), Some(k), Some(v)) => self.put(k, v),
            (Some("get"), Some(k), None) => self.get(k),
            (Some("list"), None, None) => {
                for k in self.store.keys() {
                    println!("kv: {} = {}", k, self.store.get(k).unwrap_or(""));
                }
                println!("kv: {} keys", self.store.len());
            }
            _ => println!("kv: commands are 'put KEY VALUE', 'get KEY', 'list'"),
        }
    }
}

fn run(_: &'static domain_runtime::StartInfo) {
    let disk = match Disk::connect(0) {
        Ok(d) => d,
        Err(e) => {
            println!("kv: no disk xvda: {}", e);
            return;
        }
    };
    let mut kv = match Kv::open(disk) {
        Ok(kv) => kv,
        Err(e) => {
            println!("kv: cannot read the log: {:?}", e);
            return;
        }
    };
    println!(
        "kv: ready, {} keys in {} records",
        kv.store.len(),
        kv.records
    );
    for word in domain_runtime::command_line().split_whitespace() {
        if let Some((k, v)) = word.strip_prefix("put=").and_then(|p| p.split_once(':')) {
            kv.put(k, v);
        } else if let Some(k) = word.strip_prefix("get=") {
            kv.get(k);
        }
    }
    let mut input: console::LineReader<512> = console::LineReader::new();
    while let Some(line) = input.next_line() {
        kv.command(line.trim());
    }
}
