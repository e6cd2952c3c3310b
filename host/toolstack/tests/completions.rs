//! The shipped binary prints completion scripts that know its verbs, and
//! needs no machine to do it.

use std::process::Command;

fn completions(shell: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_toolstack"))
        .args(["--connect", "/nonexistent.sock", "completions", shell])
        .output()
        .expect("run toolstack");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn bash_completion_names_the_verbs() {
    let (ok, script) = completions("bash");
    assert!(ok);
    for word in ["domain", "host", "create", "shutdown", "--all", "dmesg"] {
        assert!(script.contains(word), "no {word} in the bash script");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_toolstack"))
        .args(["completions", "cmd.exe"])
        .output()
        .expect("run toolstack");
    assert_eq!(out.status.code(), Some(2));
}
