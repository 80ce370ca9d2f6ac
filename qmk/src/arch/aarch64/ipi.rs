//! Inter-processor interrupts: the SGIs the kernel uses for them, and
//! sending one through the GICv3 CPU interface.

/// IPI that makes an idle CPU look at the run queue now.
pub const RESCHEDULE_VECTOR: u8 = 1;
/// IPI that runs the pending cross-CPU call (`smp::run_on_every_cpu`).
pub const CALL_VECTOR: u8 = 2;
/// IPI free for kernel tests.
pub const TEST_VECTOR: u8 = 3;

/// The SGIs above, which every CPU enables in its redistributor.
pub(super) const KERNEL_SGIS: [u8; 3] = [RESCHEDULE_VECTOR, CALL_VECTOR, TEST_VECTOR];

/// Sends SGI `vector` to the CPU whose hardware id (MPIDR affinity, see
/// `smp_boot::hardware_id`) is `hardware_id`.
///
/// # Panics
///
/// If `vector` is not an SGI (0–15) or the GIC refuses the target.
pub fn send(hardware_id: u32, vector: u8) {
    assert!(
        vector < 16,
        "IPIs are SGIs 0-15 on aarch64; vector {vector} is not one"
    );
    if let Err(error) = super::gic::send_sgi(u32::from(vector), u64::from(hardware_id)) {
        panic!("sending SGI {vector} to the CPU with MPIDR affinity {hardware_id:#x}: {error}");
    }
}
