//! Per-CPU data through TPIDR_EL1.
//!
//! Bring-up state (issue 13): TPIDR_EL1 holds this CPU's dense index. Once
//! the kernel core's `cpu::PerCpu` builds here it will hold the address of
//! this CPU's block instead, and the field accessors the core uses (the
//! x86_64 `gs:` macros' counterparts) will read through it with interrupts
//! masked: unlike `gs:[offset]`, `mrs` + `ldr` is two instructions, and a
//! thread preempted between them could migrate and touch another CPU's
//! block. TODO(issue 13): the `PerCpu` block and those accessors.

use aarch64_cpu::registers::{Readable, Writeable, TPIDR_EL1};

/// Records `index` as this CPU's dense index.
pub fn install_this_cpu_index(index: usize) {
    TPIDR_EL1.set(index as u64);
}

/// The dense index of the executing CPU (bootstrap CPU = 0).
pub fn cpu_index() -> usize {
    TPIDR_EL1.get() as usize
}
