//! `mode=bench`: the benchmark (DESIGN.md §6; output format in
//! `docs/kernel-protocol.md`, "mode=bench: the benchmark").
//!
//! Per variant, every CPU runs its share of the pairs on a thread pinned to
//! it, all CPUs at once: the threads first meet at a start line, then each
//! reads the TSC around its own loop. A variant's `ticks` are the slowest
//! CPU's. Event counts are read per CPU right around the loop (quickmap's
//! statistics of both kernel instances, the CPU's lock and IPI counters), so
//! spawning, joining, page allocation and a variant's warm-up do not count;
//! the baselines count their own invalidations and entry writes
//! ([`variants::OwnCounts`]). A kernel built without quickmap's `stats` (the
//! lean build) cannot count a quickmap variant's invalidations, entry writes,
//! full flushes and reuses: it prints `-` for them.
//!
//! - [`variants`]: what each variant does per pair.
//! - [`baselines`]: the global-lock window and the shootdown mapping.
//! - [`pages`]: the ring of held pages each thread works on, and the touch.
//!
//! With `icount=1` (QEMU `-icount shift=0`, one CPU) a tick of the bench's
//! clock (`arch::bench_clock`: the TSC on x86_64, the PMU's cycle counter on
//! aarch64) is one guest instruction, and the empty loop's ticks per pair are
//! reported for the host to subtract.

mod baselines;
mod pages;
mod variants;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{compiler_fence, AtomicUsize, Ordering};

use crate::arch::bench_clock as clock;
use crate::arch::interrupts::{disable_interrupts, enable_interrupts, interrupts_enabled};
use crate::boot_options::BootOptions;
use crate::qemu;
use crate::vm::quick::{deferred_quickmap, DEFERRED_MAX_CPUS};
use pages::PageRing;
use variants::Variant;

/// Which kernel build this is, for `bench-info`: `checked` with quickmap's
/// contract checks (the default features), `lean` without.
const BUILD: &str = if cfg!(feature = "contract-checks") {
    "checked"
} else {
    "lean"
};

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
    match clock::start(options.icount) {
        Ok(None) => {}
        Ok(Some(counter)) => crate::println!("qmk: bench-counter {counter}"),
        Err(problem) => panic!("bench: no instruction counter under icount: {problem}"),
    }
    crate::println!(
        "qmk: bench-info cpus={cpus} icount={} tsc_hz={} build={BUILD}",
        u8::from(options.icount),
        clock::hz()
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
        if variant.uses_deferred() && cpus > DEFERRED_MAX_CPUS {
            continue; // The kernel has no deferred instance on this machine.
        }
        if !variant.exists_here() {
            continue; // No broadcast invalidation on this architecture.
        }
        let pairs = (pairs / variant.pairs_divisor()).max(1);
        let result = fastest_of(repeats, variant, cpus, pairs);
        let events = result.events;
        crate::println!(
            "qmk: bench {} cpus={cpus} pairs={} ticks={} invalidations={} ipis={} locks={} \
             pte_writes={} full_flushes={} reuses={}",
            variant.name(),
            result.pairs,
            result.ticks,
            Count(events.invalidations),
            events.ipis,
            events.locks,
            Count(events.pte_writes),
            Count(events.full_flushes),
            Count(events.reuses)
        );
    }
    crate::println!("qmk: bench done");
    qemu::exit(qemu::RunOutcome::Success);
}

/// A count as the protocol prints it: the number, or `-` when it could not be
/// counted.
struct Count(Option<u64>);

impl core::fmt::Display for Count {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self.0 {
            Some(count) => write!(formatter, "{count}"),
            None => formatter.write_str("-"),
        }
    }
}

/// Event counts (totals); `None`: not countable in this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Events {
    /// Local single-page invalidations (`invlpg`), on any CPU.
    invalidations: Option<u64>,
    /// Local full TLB flushes (the deferred instance).
    full_flushes: Option<u64>,
    /// Page-table entries written to map a page.
    pte_writes: Option<u64>,
    /// Enters that took back a window still mapping the page (no entry write).
    reuses: Option<u64>,
    ipis: u64,
    locks: u64,
}

impl Events {
    const ZERO: Events = Events {
        invalidations: Some(0),
        full_flushes: Some(0),
        pte_writes: Some(0),
        reuses: Some(0),
        ipis: 0,
        locks: 0,
    };

    fn plus(self, other: Events) -> Events {
        let add = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
        Events {
            invalidations: add(self.invalidations, other.invalidations),
            full_flushes: add(self.full_flushes, other.full_flushes),
            pte_writes: add(self.pte_writes, other.pte_writes),
            reuses: add(self.reuses, other.reuses),
            ipis: self.ipis + other.ipis,
            locks: self.locks + other.locks,
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
            .fold(Events::ZERO, |sum, r| sum.plus(r.events)),
    }
}

/// One CPU's share, on a thread pinned to `cpu`.
fn on_cpu(variant: Variant, cpu: usize, iterations: usize, start_line: &StartLine) -> CpuResult {
    let ring = PageRing::new(variant.zone(), variant.ring_pages());
    let partner = variant.partner(cpu);
    start_line.wait();
    let interrupts_were_enabled = interrupts_enabled();
    if !variant.needs_interrupts() {
        disable_interrupts();
    }
    variant.warm_up(&ring);
    let before = CpuCounters::read(cpu);
    compiler_fence(Ordering::SeqCst);
    let start = clock::read();
    let own = variant.run(cpu, &ring, iterations);
    let end = clock::read();
    compiler_fence(Ordering::SeqCst);
    let after = CpuCounters::read(cpu);
    if variant.uses_deferred() {
        // The deferred windows still map the ring's pages, which go back to the
        // frame allocator when the ring drops: flush them first, as any user of
        // a deferred instance must before a page changes owner.
        deferred_quickmap().flush_local();
    }
    if interrupts_were_enabled {
        enable_interrupts();
    }
    if let Some(partner) = partner {
        partner.finish();
    }
    let quickmap = if variant.uses_local() {
        after.local.zip(before.local).map(|(after, before)| {
            (
                after.invalidations() - before.invalidations(),
                0,
                after.entry_writes() - before.entry_writes(),
                0,
            )
        })
    } else if variant.uses_quickmap() {
        after.quickmap.zip(before.quickmap).map(|(after, before)| {
            (
                after.invalidations - before.invalidations,
                after.full_flushes - before.full_flushes,
                after.window_maps - before.window_maps,
                after.window_reuses - before.window_reuses,
            )
        })
    } else {
        Some((0, 0, 0, 0))
    };
    CpuResult {
        ticks: end - start,
        events: Events {
            invalidations: quickmap.map(|q| q.0 + own.invalidations),
            full_flushes: quickmap.map(|q| q.1),
            pte_writes: quickmap.map(|q| q.2 + own.pte_writes),
            reuses: quickmap.map(|q| q.3),
            ipis: after.ipis - before.ipis,
            locks: after.locks - before.locks,
        },
    }
}

/// The counters of one CPU that a variant's events are read from.
struct CpuCounters {
    /// quickmap's statistics of this CPU, both kernel instances together
    /// (`None` in a build without them).
    quickmap: Option<quickmap::Stats>,
    /// The statistics of the kernel's local mappings on this CPU (`None` in a
    /// build without them).
    local: Option<quickmap::LocalStats>,
    /// Spin-lock acquisitions on this CPU.
    locks: u64,
    /// IPIs this CPU sent.
    ipis: u64,
}

impl CpuCounters {
    fn read(cpu: usize) -> CpuCounters {
        let block = crate::cpu::cpu(cpu);
        CpuCounters {
            quickmap: quickmap_stats(cpu),
            #[cfg(feature = "stats")]
            local: Some(crate::vm::quick::local_quickmap().stats(cpu)),
            #[cfg(not(feature = "stats"))]
            local: None,
            locks: block.lock_acquisitions.load(Ordering::Relaxed),
            ipis: block.ipis_sent.load(Ordering::Relaxed),
        }
    }
}

/// quickmap's event counts of `cpu`: the strict instance's plus the deferred
/// one's, where the machine has it.
#[cfg(feature = "stats")]
fn quickmap_stats(cpu: usize) -> Option<quickmap::Stats> {
    let strict = crate::vm::quick::quickmap().stats(cpu);
    if crate::cpu::cpu_count() > DEFERRED_MAX_CPUS {
        return Some(strict);
    }
    Some(strict.plus(deferred_quickmap().stats(cpu)))
}

/// A build without quickmap's `stats` has no counts.
#[cfg(not(feature = "stats"))]
fn quickmap_stats(_cpu: usize) -> Option<quickmap::Stats> {
    None
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
