//! `mode=run`: the page workload (see `docs/kernel-protocol.md`, "mode=run").
//!
//! It does what the real callers of `pmap_quick_enter_page(9)` do, all
//! through quickmap, on every CPU at once, with preemption and migration
//! active and the timer interrupt taking windows too:
//! - [`bounce`]: busdma bounce copies of unmapped I/O buffers, PREWRITE and
//!   POSTREAD, at arbitrary offsets and lengths, to bounce storage with a
//!   kernel address or without one (direct-mapped or high bounce pages);
//! - [`zero_copy`]: pages zeroed into a shared free pool (`pmap_zero_page`)
//!   and checked by their next user; copy-on-write copies (`pmap_copy_page`);
//! - [`scrub`]: every page a worker owns read back against its checksum;
//! - [`local`]: local mappings (Linux's `kmap_local_page`) held across a sleep
//!   or a yield, while other workers use the same slots on the CPU;
//! - [`interrupt`]: the timer tick maps, checks and rewrites a page per CPU.
//!
//! All of them go through one quickmap instance, chosen by `invalidation=`
//! ([`pages::select`]): the kernel's strict one (the default), or its deferred
//! one, whose removed write-back windows stay mapped until the CPU's next local
//! full flush, so that a stale translation the flush missed would show as a wrong
//! byte like any other.
//!
//! Every byte is checked by its next user against a pattern derived from
//! (origin frame, generation, offset) ([`pages`]), so a wrong frame, a stale
//! translation or a torn copy shows as a wrong byte, reported with the
//! protocol's `mismatch` line ([`report`]). Any mismatch fails the run, as
//! does a window still in use at the end.
//!
//! Orchestration (this file): the main thread fills the free pool, arms the
//! tick, starts `2 × CPUs + 2` unpinned [`worker`] threads, prints progress
//! about once a second while they run, then checks what is left and prints
//! the summary and the verdict.

mod bounce;
mod interrupt;
mod local;
mod pages;
mod report;
mod scrub;
mod worker;
mod zero_copy;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;

use crate::arch::clock;
use crate::boot_options::{BootOptions, WorkloadLength};
use crate::qemu;
use pages::quickmap;
use worker::Budget;

/// The run's length when neither `ops=` nor `secs=` is given.
const DEFAULT_LENGTH: WorkloadLength = WorkloadLength::Seconds(10);
/// Zeroed pages in the free pool per worker.
const POOL_PAGES_PER_WORKER: usize = 4;
/// How often the main thread looks at the workers.
const POLL: Duration = Duration::from_millis(20);
/// Guest time between two progress lines.
const PROGRESS_INTERVAL_MS: u64 = 1000;

/// Runs the workload and ends the boot.
pub fn run(options: &BootOptions) -> ! {
    let cpus = crate::cpu::cpu_count();
    let workers = 2 * cpus + 2;
    let length = options.workload_length.unwrap_or(DEFAULT_LENGTH);
    let hz = clock::hz();
    if let Err(reason) = pages::select(options.invalidation) {
        crate::println!("qmk: run FAILED: {reason}");
        qemu::exit(qemu::RunOutcome::Failure);
    }
    crate::memory::print_summary();
    crate::println!(
        "qmk: workload: {workers} threads on {cpus} CPU(s), seed {}, {}, {} invalidation",
        options.seed,
        match length {
            WorkloadLength::Operations(n) => alloc::format!("{n} operations"),
            WorkloadLength::Seconds(n) => alloc::format!("{n} s"),
        },
        options.invalidation.word()
    );

    zero_copy::fill_pool(POOL_PAGES_PER_WORKER * workers);
    interrupt::arm(cpus);
    let start = clock::read();
    let (target, duration_ms, budget) = match length {
        WorkloadLength::Operations(n) => (n, None, Budget::operations(n)),
        WorkloadLength::Seconds(s) => (
            0,
            Some(s * 1000),
            Budget::until(start.saturating_add(s.saturating_mul(hz))),
        ),
    };
    let budget = Arc::new(budget);
    let seed = options.seed;
    let handles: Vec<_> = (0..workers)
        .map(|index| {
            let budget = budget.clone();
            crate::sched::spawn("workload", move || worker::run(index, seed, &budget))
        })
        .collect();

    let elapsed_ms = || (clock::read() - start) * 1000 / hz;
    let mut next_progress = PROGRESS_INTERVAL_MS;
    while !handles.iter().all(|handle| handle.is_finished()) {
        crate::sched::sleep(POLL);
        report::print_deferred();
        let elapsed = elapsed_ms();
        if elapsed >= next_progress {
            report::print_progress(cpus, target, elapsed, duration_ms);
            next_progress = (elapsed / PROGRESS_INTERVAL_MS + 1) * PROGRESS_INTERVAL_MS;
        }
    }
    for handle in handles {
        handle.join();
    }
    let run_ms = elapsed_ms();
    interrupt::disarm();

    // What the workers left: the pool must still be zero, the tick pages
    // must hold their last generation, and no window may be in use.
    zero_copy::drain_pool();
    interrupt::final_check();
    report::print_deferred();
    let busy_cpus: Vec<(usize, u32)> = (0..cpus)
        .map(|cpu| (cpu, quickmap().windows_in_use(cpu)))
        .filter(|&(_, mask)| mask != 0)
        .collect();
    let mapped_local_slot = local_slot_still_mapped(cpus);

    report::print_progress(cpus, target, run_ms, duration_ms);
    crate::println!(
        "qmk: workload: {} CPU changes between operations; {} ticks mapped a page while the interrupted context held a window",
        worker::cpu_changes(),
        interrupt::nested_ticks()
    );
    #[cfg(feature = "stats")]
    let stats = quickmap().total_stats();
    // A kernel built without quickmap's `stats` (the benchmark's lean build, which
    // xtask never runs the workload on) has no counts to report.
    #[cfg(not(feature = "stats"))]
    let stats = quickmap::Stats::default();
    #[cfg(feature = "stats")]
    let local_stats = crate::vm::quick::local_quickmap().total_stats();
    #[cfg(not(feature = "stats"))]
    let local_stats = quickmap::LocalStats::default();
    report::print_summary(
        cpus,
        workers,
        run_ms,
        &report::QuickmapCounts {
            direct_map_hits: stats.direct_map_hits,
            window_maps: stats.window_maps,
            window_reuses: stats.window_reuses,
            invalidations: stats.invalidations,
            full_flushes: stats.full_flushes,
            local_slot_maps: local_stats.slot_maps,
            local_switch_outs: local_stats.switch_outs,
            local_sleeps: local::sleeps_while_mapped(),
        },
    );

    let mismatches = report::mismatches();
    if mismatches > 0 {
        crate::println!("qmk: run FAILED: {mismatches} mismatch(es)");
        qemu::exit(qemu::RunOutcome::Failure);
    }
    if let Some(&(cpu, mask)) = busy_cpus.first() {
        crate::println!(
            "qmk: run FAILED: CPU {cpu} still has windows in use at the end (mask {mask:#x})"
        );
        qemu::exit(qemu::RunOutcome::Failure);
    }
    if let Some((cpu, slot)) = mapped_local_slot {
        crate::println!(
            "qmk: run FAILED: local slot {slot} of CPU {cpu} is still mapped at the end (no thread \
             holds local mappings any more)"
        );
        qemu::exit(qemu::RunOutcome::Failure);
    }
    crate::println!("qmk: run ok");
    qemu::exit(qemu::RunOutcome::Success);
}

/// A local slot whose entry is still present, once every worker has ended (each
/// holder's slots are cleared by its drops, and its last switch-out).
fn local_slot_still_mapped(cpus: usize) -> Option<(usize, usize)> {
    let local = crate::vm::quick::local_quickmap();
    (0..cpus)
        .flat_map(|cpu| (0..crate::vm::quick::LOCAL_SLOTS).map(move |slot| (cpu, slot)))
        .find(|&(cpu, slot)| local.mmu().read_pte(local.layout().window_va(cpu, slot)) != 0)
}
