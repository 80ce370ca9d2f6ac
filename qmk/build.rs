//! Link the kernel as a static, freestanding ELF laid out by the target's
//! linker script (`linker.ld` for x86_64, `linker-aarch64.ld` for aarch64).
//!
//! x86_64: the host target's default link (crt files, libc, PIE, build-id
//! note) is switched off here, through the C compiler driver's flags.
//! aarch64-unknown-none links with `rust-lld` directly, so its arguments are
//! the linker's own. Only the binary gets these arguments.

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let target_arch =
        std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let (linker_script, link_args): (String, Vec<String>) = match target_arch.as_str() {
        "x86_64" => {
            let script = format!("{manifest_dir}/linker.ld");
            let args = [
                "-nostartfiles",
                "-nostdlib",
                "-static",
                "-no-pie",
                "-Wl,--build-id=none",
                "-Wl,--gc-sections",
                "-Wl,-z,max-page-size=4096",
            ]
            .iter()
            .map(|arg| arg.to_string())
            .chain([format!("-T{script}")])
            .collect();
            (script, args)
        }
        "aarch64" => {
            let script = format!("{manifest_dir}/linker-aarch64.ld");
            let args = ["--build-id=none", "--gc-sections", "-zmax-page-size=4096"]
                .iter()
                .map(|arg| arg.to_string())
                .chain([format!("-T{script}")])
                .collect();
            (script, args)
        }
        other => panic!("qmk supports x86_64 and aarch64, not {other}"),
    };
    for arg in link_args {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed={linker_script}");
    println!("cargo:rerun-if-changed=build.rs");
}
