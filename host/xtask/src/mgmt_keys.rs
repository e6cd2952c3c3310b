//! The keys of the network management channel for the machines xtask
//! builds (`ipc_abi::mgmt_net`): the machine's key goes into the boot
//! bundle, the client's key file stays in `target/` for `toolstack --key`.
//!
//! Owns: making both key pairs once (kept across builds, so a client key
//! file keeps working after a rebuild) and the bundle files that carry
//! them: `mgmt/host.key` and `mgmt/authorized_keys`.

use ipc_abi::mgmt_net::{self, Key, KeyText};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use toolstack::network::{generate_keypair, public_key, Identity};

/// The machine's key and the client's key file.
pub struct Keys {
    pub host_private: Key,
    pub client: Identity,
    pub client_file: PathBuf,
}

/// The keys under `dir` (`xenolith-host.key`, `xenolith-client.key`),
/// made the first time.
pub fn ensure(dir: &Path) -> Result<Keys, String> {
    let host_file = dir.join("xenolith-host.key");
    let client_file = dir.join("xenolith-client.key");
    let host_private = match std::fs::read_to_string(&host_file) {
        Ok(text) => mgmt_net::parse_key(&text)
            .ok_or_else(|| format!("{}: not a key", host_file.display()))?,
        Err(_) => {
            let (private, _) = generate_keypair();
            write_private(&host_file, &format!("{}\n", KeyText(&private)))?;
            private
        }
    };
    let host_public = public_key(&host_private);
    let client = match Identity::load(&client_file) {
        Ok(id) if id.host == Some(host_public) => id,
        _ => {
            let (private, _) = generate_keypair();
            let id = Identity {
                private,
                host: Some(host_public),
            };
            let _ = std::fs::remove_file(&client_file);
            write_private(&client_file, &id.to_text())?;
            id
        }
    };
    Ok(Keys {
        host_private,
        client,
        client_file,
    })
}

/// Writes a file only its owner reads.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Keys {
    /// The bundle files: the machine's private key, and the client's public
    /// key as the one authorised.
    pub fn bundle_files(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                mgmt_net::HOST_KEY_PATH,
                format!("{}\n", KeyText(&self.host_private)).into_bytes(),
            ),
            (
                mgmt_net::AUTHORIZED_KEYS_PATH,
                format!(
                    "{} the client key cargo xtask made\n",
                    KeyText(&public_key(&self.client.private))
                )
                .into_bytes(),
            ),
        ]
    }
}
