//! Link the kernel as a static, freestanding ELF laid out by `linker.ld`.
//!
//! The host target's default link (crt files, libc, PIE, build-id note) is
//! switched off here; only the binary gets these arguments.

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let linker_script = format!("{manifest_dir}/linker.ld");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,--gc-sections",
        "-Wl,-z,max-page-size=4096",
        &format!("-T{linker_script}"),
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed={linker_script}");
    println!("cargo:rerun-if-changed=build.rs");
}
