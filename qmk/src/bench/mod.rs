//! `mode=bench`: the benchmark (see `docs/kernel-protocol.md`).

use crate::boot_options::BootOptions;
use crate::qemu;

/// Runs every benchmark variant and ends the boot.
pub fn run(_options: &BootOptions) -> ! {
    crate::println!("qmk: error: mode=bench: the benchmark is not written yet");
    qemu::exit(qemu::RunOutcome::Failure);
}
