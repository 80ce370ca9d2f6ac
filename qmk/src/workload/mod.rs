//! `mode=run`: the page workload (see `docs/kernel-protocol.md`).

use crate::boot_options::BootOptions;
use crate::qemu;

/// Runs the workload and ends the boot.
pub fn run(_options: &BootOptions) -> ! {
    crate::memory::print_summary();
    crate::println!("qmk: error: mode=run: the page workload is not written yet");
    qemu::exit(qemu::RunOutcome::Failure);
}
