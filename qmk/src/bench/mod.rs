//! `mode=bench`: the benchmark (DESIGN.md §6; output format in
//! `docs/kernel-protocol.md`, "mode=bench: the benchmark").
//!
//! Per variant, every CPU runs its share of the pairs on a thread pinned to
//! it, all CPUs at once: the threads first meet at a start line, then each
//! reads the TSC around its own loop. A variant's `ticks` are the slowest
//! CPU's. Event counts are read per CPU right around the loop (quickmap's
//! statistics, the CPU's lock and IPI counters), so spawning, joining and
//! page allocation do not count; the baselines count their own
//! invalidations and entry writes ([`variants::OwnCounts`]).
//!
//! - [`variants`]: what each variant does per pair.
//! - [`baselines`]: the global-lock window and the shootdown mapping.
//! - [`pages`]: the ring of held pages each thread works on, and the touch.
//!
//! With `icount=1` (QEMU `-icount shift=0`, one CPU) a TSC tick is one guest
//! instruction, and the empty loop's ticks per pair are reported for the host
//! to subtract.

mod baselines;
mod pages;
mod variants;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{compiler_fence, AtomicUsize, Ordering};

use crate::arch::interrupts::{disable_interrupts, enable_interrupts, interrupts_enabled};
use crate::arch::tsc;
use crate::boot_options::BootOptions;
use crate::qemu;
use crate::vm::quick::quickmap;
use pages::PageRing;
use variants::Variant;

/// Pairs per variant (all CPUs together) unless `pairs=` says otherwise.
const DEFAULT_PAIRS: u64 = 200_000;
/// Throughput boots run each variant this many times and report the fastest
/// run: under TCG on a small host a vCPU thread may lose its host CPU for a
/// while, which only ever makes a run slower. Under icount every run counts the
/// same instructions, so one is enough.
const THROUGHPUT_REPEATS: usize = 3;

/// Runs every variant, prints the protocol lines and ends the boot.
pub fn run(options: &BootOptions) -> ! {
    let cpus = crate::cpu::cpu_count();
    let pairs = options.bench_pairs.unwrap_or(DEFAULT_PAIRS);
    crate::println!(
        "qmk: bench-info cpus={cpus} icount={} tsc_hz={}",
        u8::from(options.icount),
        tsc::hz()
    );

    let repeats = if options.icount {
        1
    } else {
        THROUGHPUT_REPEATS
    };
    let empty = fastest_of(repeats, Variant::EmptyLoop, cpus, pairs);
    crate::println!(
        "qmk: bench overhead ticks_per_pair={}",
        (empty.ticks + empty.pairs / 2) / empty.pairs
    );
    for variant in Variant::REPORTED {
        let pairs = (pairs / variant.pairs_divisor()).max(1);
        let result = fastest_of(repeats, variant, cpus, pairs);
        crate::println!(
            "qmk: bench {} cpus={cpus} pairs={} ticks={} invalidations={} ipis={} locks={} \
             pte_writes={}",
            variant.name(),
            result.pairs,
            result.ticks,
            result.events.invalidations,
            result.events.ipis,
            result.events.locks,
            result.events.pte_writes
        );
    }
    crate::println!("qmk: bench done");
    qemu::exit(qemu::RunOutcome::Success);
}

/// Event counts (totals).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Events {
    invalidations: u64,
    ipis: u64,
    locks: u64,
    pte_writes: u64,
}

impl Events {
    fn plus(self, other: Events) -> Events {
        Events {
            invalidations: self.invalidations + other.invalidations,
            ipis: self.ipis + other.ipis,
            locks: self.locks + other.locks,
            pte_writes: self.pte_writes + other.pte_writes,
        }
    }
}

/// One variant's result over all CPUs.
struct Measurement {
    /// Pairs done, all CPUs together.
    pairs: u64,
    /// The slowest CPU's ticks.
    ticks: u64,
    events: Events,
}

/// One CPU's result.
struct CpuResult {
    ticks: u64,
    events: Events,
}

/// The fastest of `repeats` measurements.
fn fastest_of(repeats: usize, variant: Variant, cpus: usize, pairs: u64) -> Measurement {
    (0..repeats)
        .map(|_| measure(variant, cpus, pairs))
        .min_by_key(|measurement| measurement.ticks)
        .expect("at least one run")
}

/// Runs about `pairs` pairs of `variant`, split evenly over `cpus` CPUs.
fn measure(variant: Variant, cpus: usize, pairs: u64) -> Measurement {
    let per_iteration = variant.pairs_per_iteration();
    let iterations = (pairs / (cpus as u64 * per_iteration)).max(1) as usize;
    let start_line = Arc::new(StartLine::new(cpus));
    let threads: Vec<_> = (0..cpus)
        .map(|cpu| {
            let start_line = start_line.clone();
            crate::sched::spawn_pinned(variant.name(), cpu, move || {
                on_cpu(variant, cpu, iterations, &start_line)
            })
        })
        .collect();
    let results: Vec<CpuResult> = threads.into_iter().map(|thread| thread.join()).collect();
    Measurement {
        pairs: iterations as u64 * per_iteration * cpus as u64,
        ticks: results.iter().map(|r| r.ticks).max().unwrap_or(0),
        events: results
            .iter()
            .fold(Events::default(), |sum, r| sum.plus(r.events)),
    }
}

/// One CPU's share, on a thread pinned to `cpu`.
fn on_cpu(variant: Variant, cpu: usize, iterations: usize, start_line: &StartLine) -> CpuResult {
    let ring = PageRing::new(variant.zone());
    start_line.wait();
    let interrupts_were_enabled = interrupts_enabled();
    if !variant.needs_interrupts() {
        disable_interrupts();
    }
    let before = CpuCounters::read(cpu);
    compiler_fence(Ordering::SeqCst);
    let start = tsc::read();
    let own = variant.run(cpu, &ring, iterations);
    let end = tsc::read();
    compiler_fence(Ordering::SeqCst);
    let after = CpuCounters::read(cpu);
    if interrupts_were_enabled {
        enable_interrupts();
    }
    CpuResult {
        ticks: end - start,
        events: Events {
            invalidations: after.invalidations - before.invalidations + own.invalidations,
            ipis: after.ipis - before.ipis,
            locks: after.locks - before.locks,
            pte_writes: after.window_maps - before.window_maps + own.pte_writes,
        },
    }
}

/// The counters of one CPU that a variant's events are read from.
struct CpuCounters {
    /// quickmap: window entries written (one per window enter).
    window_maps: u64,
    /// quickmap: local invalidations (one per window remove).
    invalidations: u64,
    /// Spin-lock acquisitions on this CPU.
    locks: u64,
    /// IPIs this CPU sent.
    ipis: u64,
}

impl CpuCounters {
    fn read(cpu: usize) -> CpuCounters {
        let stats = quickmap().stats(cpu);
        let block = crate::cpu::cpu(cpu);
        CpuCounters {
            window_maps: stats.window_maps,
            invalidations: stats.invalidations,
            locks: block.lock_acquisitions.load(Ordering::Relaxed),
            ipis: block.ipis_sent.load(Ordering::Relaxed),
        }
    }
}

/// Where the CPUs' threads wait for each other, so that they all start
/// their loops at (nearly) the same moment.
struct StartLine {
    expected: usize,
    arrived: AtomicUsize,
}

impl StartLine {
    fn new(expected: usize) -> StartLine {
        StartLine {
            expected,
            arrived: AtomicUsize::new(0),
        }
    }

    /// Arrive, and wait (spinning) until every thread has.
    fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        while self.arrived.load(Ordering::Acquire) < self.expected {
            core::hint::spin_loop();
        }
    }
}
