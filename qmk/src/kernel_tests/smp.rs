//! SMP: every CPU online with its own hardware id; IPIs; cross-CPU calls; the
//! TLB shootdown.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::{scratch_page, test_frame};
use crate::arch::fault_probe::probe_read_u8;
use crate::arch::interrupts::{set_interrupt_handler, InterruptFrame};
use crate::arch::{clock, ipi, paging};
use crate::cpu::{self, MAX_CPUS};
use crate::fault_expectation::expect_page_fault;
use crate::{kernel_test, sched, smp};

/// Spins until `condition` holds, or panics with `what` after `seconds`.
pub(super) fn wait_for(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let deadline = clock::read() + seconds * clock::hz();
    while !condition() {
        assert!(
            clock::read() < deadline,
            "timed out after {seconds} s waiting for {what}"
        );
        core::hint::spin_loop();
    }
}

kernel_test! {
    /// Every CPU the firmware lists comes online, and each reports (from its
    /// own local APIC, in a cross-CPU call) a distinct hardware id matching the
    /// one it was started with.
    fn all_cpus_online_report_hardware_ids() {
        let count = cpu::cpu_count();
        assert_eq!(
            count,
            smp::cpus_listed_by_firmware().min(MAX_CPUS),
            "CPUs online vs. CPUs the MADT lists"
        );
        static REPORTED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
        smp::run_on_all_cpus(|| {
            let guard = cpu::PreemptGuard::new();
            let this = cpu::this_cpu(&guard);
            REPORTED[this.index()].store(crate::arch::smp_boot::this_cpu_hardware_id(), Ordering::Release);
        });
        let reported: alloc::vec::Vec<u32> = REPORTED[..count]
            .iter()
            .map(|hardware_id| hardware_id.load(Ordering::Acquire))
            .collect();
        for (index, &hardware_id) in reported.iter().enumerate() {
            crate::println!("qmk: cpu {index} hardware_id {hardware_id}");
            assert_eq!(hardware_id, cpu::cpu(index).hardware_id(), "CPU {index}'s hardware id");
            if let Some(other) = reported[..index].iter().position(|&seen| seen == hardware_id) {
                panic!("CPUs {other} and {index} report the same hardware id {hardware_id}");
            }
        }
    }
}

static PINGS_RECEIVED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn on_ping(_frame: &mut InterruptFrame) {
    PINGS_RECEIVED[cpu::current_cpu_index()].fetch_add(1, Ordering::AcqRel);
    crate::arch::interrupts::end_of_interrupt();
}

kernel_test! {
    /// An IPI to each other CPU arrives there (its handler runs on that
    /// CPU), an IPI to all others reaches each once, and the IPI counter
    /// counts them.
    fn ipi_round_trip() {
        set_interrupt_handler(ipi::TEST_VECTOR, on_ping);
        let count = cpu::cpu_count();
        let guard = cpu::PreemptGuard::new();
        let me = cpu::this_cpu(&guard).index();
        let sent_before = smp::ipis_sent();
        for target in (0..count).filter(|&target| target != me) {
            let before = PINGS_RECEIVED[target].load(Ordering::Acquire);
            smp::send_ipi(target, ipi::TEST_VECTOR);
            wait_for("an IPI to arrive", 2, || {
                PINGS_RECEIVED[target].load(Ordering::Acquire) > before
            });
        }
        let before: [u64; MAX_CPUS] =
            core::array::from_fn(|index| PINGS_RECEIVED[index].load(Ordering::Acquire));
        smp::send_ipi_all_others(ipi::TEST_VECTOR);
        for target in (0..count).filter(|&target| target != me) {
            wait_for("a broadcast IPI to arrive", 2, || {
                PINGS_RECEIVED[target].load(Ordering::Acquire) > before[target]
            });
        }
        assert_eq!(PINGS_RECEIVED[me].load(Ordering::Acquire), before[me], "no IPI to self");
        drop(guard);
        assert_eq!(smp::ipis_sent() - sent_before, 2 * (count as u64 - 1));
    }
}

kernel_test! {
    /// `run_on_all_cpus` runs the function once on every CPU and returns
    /// only after all have run it.
    fn run_on_all_cpus_runs_everywhere_and_waits() {
        static RUNS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
        for round in 1..=3u64 {
            smp::run_on_all_cpus(|| {
                RUNS[cpu::current_cpu_index()].fetch_add(1, Ordering::AcqRel);
            });
            for (index, runs) in RUNS.iter().enumerate().take(cpu::cpu_count()) {
                assert_eq!(runs.load(Ordering::Acquire), round, "runs on CPU {index}");
            }
        }
    }
}

kernel_test! {
    /// A translation another CPU cached survives a local-only unmap (the
    /// stale mapping the shootdown exists for), and is gone after
    /// `smp::shootdown`: the access then faults on that CPU.
    fn shootdown_removes_stale_translation_on_other_cpu() {
        if cpu::cpu_count() < 2 {
            crate::println!("qmk: note: shootdown test needs 2 CPUs; checked nothing remote");
            return;
        }
        static LOADED: AtomicBool = AtomicBool::new(false);
        static UNMAPPED: AtomicBool = AtomicBool::new(false);
        static STALE_SEEN: AtomicBool = AtomicBool::new(false);
        static SHOT_DOWN: AtomicBool = AtomicBool::new(false);
        let frame = test_frame();
        let address = scratch_page(40);
        paging::map_page(address, frame, paging::PageTableFlags::WRITABLE | paging::PageTableFlags::NO_EXECUTE)
            .unwrap();
        // SAFETY: the page was just mapped to a frame this test owns.
        unsafe { address.as_mut_ptr::<u8>().write_volatile(0xa5) };

        let reader = sched::spawn_pinned("stale-reader", 1, move || {
            // SAFETY: mapped to the test's frame (or unmapped later: then
            // the probe faults, which is what is tested).
            let first = unsafe { probe_read_u8(address) };
            assert_eq!(first, Ok(0xa5), "CPU 1 reads the mapped page");
            LOADED.store(true, Ordering::Release);
            wait_for("the unmap on CPU 0", 5, || UNMAPPED.load(Ordering::Acquire));
            // SAFETY: as above.
            let stale = unsafe { probe_read_u8(address) };
            assert_eq!(
                stale,
                Ok(0xa5),
                "precondition: CPU 1 still uses its cached translation after a local-only unmap on CPU 0"
            );
            STALE_SEEN.store(true, Ordering::Release);
            wait_for("the shootdown", 5, || SHOT_DOWN.load(Ordering::Acquire));
            expect_page_fault(address..address + 1u64, || {
                // SAFETY: as above.
                let _ = unsafe { probe_read_u8(address) };
            });
        });
        let unmapper = sched::spawn_pinned("unmapper", 0, move || {
            wait_for("CPU 1 to load the translation", 5, || LOADED.load(Ordering::Acquire));
            assert_eq!(paging::unmap_page_local_only(address), Ok(frame));
            UNMAPPED.store(true, Ordering::Release);
            wait_for("CPU 1 to read through its stale entry", 5, || {
                STALE_SEEN.load(Ordering::Acquire)
            });
            smp::shootdown(address..address + paging::PAGE_SIZE);
            SHOT_DOWN.store(true, Ordering::Release);
        });
        unmapper.join();
        reader.join();
        crate::memory::frame_allocator::free_frame(frame);
    }
}
