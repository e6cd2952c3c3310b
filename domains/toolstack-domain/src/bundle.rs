//! The boot bundle: a GRUB module (command line `bundle`) holding domain
//! configurations and images as a tar archive (layout in `docs/boot-bundle.md`):
//!
//! ```text
//! auto/NN-name.cfg   started at boot, in name order (as xendomains did)
//! images/NAME        the image a configuration's `kernel = "NAME"` names
//! ```
//!
//! Owns: finding the bundle, listing `auto/` in order, and reading its
//! files. Its configurations are checked and started by `start.rs`; one
//! with any error starts nothing, its errors printed with file, line and key.

extern crate alloc;
use alloc::string::String;
use alloc::vec::Vec;
use domain_runtime::println;
use tar_no_std::TarArchiveRef;

/// The bundle module, if the boot loaded one.
pub fn find() -> Option<&'static [u8]> {
    domain_runtime::modules()
        .find(|(_, line)| line.split_whitespace().next() == Some("bundle"))
        .map(|(b, _)| b)
}

/// `(path, text)` of every `auto/*.cfg`, in name order.
pub fn auto_configs(bundle: &'static [u8]) -> Vec<(String, &'static str)> {
    let Ok(tar) = TarArchiveRef::new(bundle) else {
        println!("toolstack: the boot bundle is not a readable tar archive");
        return Vec::new();
    };
    let mut out: Vec<(String, &'static str)> = tar
        .entries()
        .filter_map(|e| {
            let name = e.filename().as_str().ok()?.trim_start_matches("./").into();
            let name: String = name;
            if !(name.starts_with("auto/") && name.ends_with(".cfg")) {
                return None;
            }
            match e.data_as_str() {
                Ok(text) => Some((name, text)),
                Err(_) => {
                    println!("toolstack: {}: not UTF-8, skipped", name);
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The file at `path` in the bundle.
pub fn file(bundle: &'static [u8], path: &str) -> Option<&'static [u8]> {
    let tar = TarArchiveRef::new(bundle).ok()?;
    tar.entries()
        .find(|e| {
            e.filename()
                .as_str()
                .is_ok_and(|f| f.trim_start_matches("./") == path)
        })
        .map(|e| e.data())
}

/// The image `images/NAME` of the bundle.
pub fn image(bundle: &'static [u8], name: &str) -> Option<&'static [u8]> {
    file(bundle, &alloc::format!("images/{}", name))
}
