//! Inter-processor interrupts: the vectors the kernel uses for them, and
//! sending one (a fixed-delivery IPI through the local APIC).

/// IPI that makes an idle CPU look at the run queue now.
pub const RESCHEDULE_VECTOR: u8 = 0x82;
/// IPI that runs the pending cross-CPU call (`smp::run_on_every_cpu`).
pub const CALL_VECTOR: u8 = 0x83;
/// IPI free for kernel tests.
pub const TEST_VECTOR: u8 = 0x84;

/// Sends interrupt `vector` to the CPU whose local APIC id is `hardware_id`.
pub fn send(hardware_id: u32, vector: u8) {
    super::apic::send_fixed(hardware_id, vector);
}
