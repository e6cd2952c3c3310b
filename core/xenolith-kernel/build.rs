//! Links the bare-metal kernel with the linker script in `boot/`.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let boot = std::path::Path::new(&dir).join("boot");
    println!(
        "cargo:rerun-if-changed={}",
        boot.join("linker.ld").display()
    );
    println!("cargo:rerun-if-changed={}", boot.join("entry.S").display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!(
            "cargo:rustc-link-arg-bins=-T{}",
            boot.join("linker.ld").display()
        );
        println!("cargo:rustc-link-arg-bins=--no-pie");
        // defmt interns trace event strings in a `.defmt` section its script describes.
        if std::env::var_os("CARGO_FEATURE_TRACE").is_some() {
            println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
        }
    }
}
