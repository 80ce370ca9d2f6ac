//! What the workload tells the host (`docs/kernel-protocol.md`, "mode=run"):
//! per-CPU counters, mismatch lines, progress and summary lines.
//!
//! Counters are per CPU (each on its own cache line) and updated by whoever
//! runs there: a worker thread after each operation, the timer interrupt
//! after its own. A thread may migrate between reading its CPU index and
//! adding, which only moves a count to a neighbouring line; the sums stay
//! exact.

use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::cpu::MAX_CPUS;
use crate::sync::SpinLock;

/// The kinds of operation, as the summary names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    BouncePrewrite,
    BouncePostread,
    Zero,
    Copy,
    Scrub,
    Interrupt,
    /// Local mappings held across a sleep or a yield (`local.rs`).
    Local,
}

impl Kind {
    /// Every kind, in summary order.
    pub const ALL: [Kind; 7] = [
        Kind::BouncePrewrite,
        Kind::BouncePostread,
        Kind::Zero,
        Kind::Copy,
        Kind::Scrub,
        Kind::Interrupt,
        Kind::Local,
    ];

    /// The summary key of its operation count.
    pub fn summary_key(self) -> &'static str {
        match self {
            Kind::BouncePrewrite => "bounce_prewrite",
            Kind::BouncePostread => "bounce_postread",
            Kind::Zero => "zero",
            Kind::Copy => "copy",
            Kind::Scrub => "scrub",
            Kind::Interrupt => "interrupt_ops",
            Kind::Local => "local",
        }
    }

    /// The `kind=` of its mismatch lines.
    pub fn mismatch_name(self) -> &'static str {
        match self {
            Kind::Interrupt => "interrupt",
            other => other.summary_key(),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One CPU's counters, alone on its cache line(s).
#[repr(align(64))]
struct CpuCounters {
    ops: [AtomicU64; Kind::ALL.len()],
    pages_verified: AtomicU64,
    bytes_verified: AtomicU64,
    bytes_moved: AtomicU64,
}

static COUNTERS: [CpuCounters; MAX_CPUS] = [const {
    CpuCounters {
        ops: [const { AtomicU64::new(0) }; Kind::ALL.len()],
        pages_verified: AtomicU64::new(0),
        bytes_verified: AtomicU64::new(0),
        bytes_moved: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// What one operation did, added to the running CPU's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Work {
    pub pages_verified: u64,
    pub bytes_verified: u64,
    pub bytes_moved: u64,
}

impl Work {
    /// `pages` whole pages verified, `moved` bytes moved.
    pub fn pages(pages: u64, moved: u64) -> Work {
        Work {
            pages_verified: pages,
            bytes_verified: pages * quickmap::PAGE_SIZE as u64,
            bytes_moved: moved,
        }
    }
}

/// Counts one finished operation of `kind` on the current CPU.
pub fn count_operation(kind: Kind, work: Work) {
    let counters = &COUNTERS[crate::cpu::current_cpu_index()];
    counters.ops[kind.index()].fetch_add(1, Ordering::Relaxed);
    add_work(counters, work);
}

/// Counts verification work that is not an operation (the final pass).
pub fn count_work(work: Work) {
    add_work(&COUNTERS[crate::cpu::current_cpu_index()], work);
}

fn add_work(counters: &CpuCounters, work: Work) {
    if work.pages_verified != 0 {
        counters
            .pages_verified
            .fetch_add(work.pages_verified, Ordering::Relaxed);
    }
    if work.bytes_verified != 0 {
        counters
            .bytes_verified
            .fetch_add(work.bytes_verified, Ordering::Relaxed);
    }
    if work.bytes_moved != 0 {
        counters
            .bytes_moved
            .fetch_add(work.bytes_moved, Ordering::Relaxed);
    }
}

/// Worker operations (all kinds but interrupts) done on `cpu`.
pub fn worker_ops_on(cpu: usize) -> u64 {
    Kind::ALL
        .iter()
        .filter(|&&kind| kind != Kind::Interrupt)
        .map(|kind| COUNTERS[cpu].ops[kind.index()].load(Ordering::Relaxed))
        .sum()
}

fn total(cpus: usize, field: impl Fn(&CpuCounters) -> &AtomicU64) -> u64 {
    COUNTERS[..cpus]
        .iter()
        .map(|counters| field(counters).load(Ordering::Relaxed))
        .sum()
}

/// A verification failure, as one protocol line.
#[derive(Clone, Copy, Debug)]
pub struct MismatchReport {
    pub kind: Kind,
    /// Physical address of the page whose bytes were wrong (for bounce copies,
    /// the I/O buffer page the bytes belong to).
    pub page: u64,
    pub cpu: usize,
    /// Scheduler id of the thread that found it (in an interrupt handler: of
    /// the thread it interrupted).
    pub thread: u64,
    pub offset: usize,
    pub expected: u8,
    pub found: u8,
}

impl MismatchReport {
    fn print(&self) {
        crate::println!(
            "qmk: mismatch kind={} page={:#x} cpu={} thread={} offset={:#x} expected={:#04x} found={:#04x}",
            self.kind.mismatch_name(),
            self.page,
            self.cpu,
            self.thread,
            self.offset,
            self.expected,
            self.found
        );
    }
}

/// Mismatch lines printed at most; the count goes on.
const MAX_PRINTED: u64 = 16;
/// After this many mismatches the workers stop: the run has failed already.
pub const STOP_AFTER: u64 = 16;

static MISMATCHES: AtomicU64 = AtomicU64::new(0);
/// Set when the run should end early (too many mismatches).
pub static STOP: AtomicBool = AtomicBool::new(false);

/// Reports found by interrupt handlers, which must not print (the thread
/// they interrupted may hold the console lock): the main thread prints them.
struct Deferred {
    reports: [Option<MismatchReport>; MAX_PRINTED as usize],
}
static DEFERRED: SpinLock<Deferred> = SpinLock::new(Deferred {
    reports: [None; MAX_PRINTED as usize],
});
static DEFERRED_PENDING: AtomicUsize = AtomicUsize::new(0);

/// Counts a mismatch and prints its line (the first [`MAX_PRINTED`] only).
/// Call with no mapping held: printing takes the console lock.
pub fn record_mismatch(report: MismatchReport) {
    let number = MISMATCHES.fetch_add(1, Ordering::AcqRel) + 1;
    if number <= MAX_PRINTED {
        report.print();
    }
    if number >= STOP_AFTER {
        STOP.store(true, Ordering::Release);
    }
}

/// [`record_mismatch`] for interrupt handlers: counted now, printed later by
/// [`print_deferred`].
pub fn record_mismatch_in_interrupt(report: MismatchReport) {
    let number = MISMATCHES.fetch_add(1, Ordering::AcqRel) + 1;
    if number <= MAX_PRINTED {
        let mut deferred = DEFERRED.lock_irq();
        if let Some(slot) = deferred.reports.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(report);
            DEFERRED_PENDING.fetch_add(1, Ordering::Release);
        }
    }
    if number >= STOP_AFTER {
        STOP.store(true, Ordering::Release);
    }
}

/// Prints the reports interrupt handlers left (thread context).
pub fn print_deferred() {
    if DEFERRED_PENDING.load(Ordering::Acquire) == 0 {
        return;
    }
    let mut taken = [None; MAX_PRINTED as usize];
    {
        let mut deferred = DEFERRED.lock_irq();
        for (slot, out) in deferred.reports.iter_mut().zip(taken.iter_mut()) {
            *out = slot.take();
        }
        DEFERRED_PENDING.store(0, Ordering::Release);
    }
    for report in taken.iter().flatten() {
        report.print();
    }
}

/// Mismatches so far.
pub fn mismatches() -> u64 {
    MISMATCHES.load(Ordering::Acquire)
}

/// The progress line: worker operations `done` of `target` (0 for a timed
/// run, which then also gives `duration_ms`), bytes moved, per-CPU counts.
pub fn print_progress(cpus: usize, target: u64, elapsed_ms: u64, duration_ms: Option<u64>) {
    use core::fmt::Write;
    let done: u64 = (0..cpus).map(worker_ops_on).sum();
    let bytes = total(cpus, |c| &c.bytes_moved);
    // One `println!` of the whole line, so that no other output splits it.
    let mut line = String::new();
    let _ = write!(
        line,
        "qmk: progress done={done} total={target} bytes={bytes} elapsed_ms={elapsed_ms}"
    );
    if let Some(duration) = duration_ms {
        let _ = write!(line, " duration_ms={duration}");
    }
    for cpu in 0..cpus {
        let _ = write!(line, " cpu{cpu}={}", worker_ops_on(cpu));
    }
    crate::println!("{line}");
}

/// quickmap's own counts over the run.
pub struct QuickmapCounts {
    pub direct_map_hits: u64,
    pub window_maps: u64,
    /// Windows taken back while they still mapped the page (deferred only).
    pub window_reuses: u64,
    pub invalidations: u64,
    /// Local full TLB flushes (deferred only).
    pub full_flushes: u64,
    /// Local mappings that took a slot.
    pub local_slot_maps: u64,
    /// Context switches away from a thread that held local mappings.
    pub local_switch_outs: u64,
    /// Sleeps taken while holding local mappings.
    pub local_sleeps: u64,
}

/// The summary lines, one counter each.
pub fn print_summary(
    cpus: usize,
    threads: usize,
    duration_ms: u64,
    quickmap_counts: &QuickmapCounts,
) {
    for kind in Kind::ALL {
        let count = total(cpus, |c| &c.ops[kind.index()]);
        crate::println!("qmk: summary {}={count}", kind.summary_key());
    }
    let lines = [
        ("pages_verified", total(cpus, |c| &c.pages_verified)),
        ("bytes_verified", total(cpus, |c| &c.bytes_verified)),
        ("bytes_moved", total(cpus, |c| &c.bytes_moved)),
        ("direct_map_hits", quickmap_counts.direct_map_hits),
        ("window_maps", quickmap_counts.window_maps),
        ("window_reuses", quickmap_counts.window_reuses),
        ("invalidations", quickmap_counts.invalidations),
        ("full_flushes", quickmap_counts.full_flushes),
        ("local_slot_maps", quickmap_counts.local_slot_maps),
        ("local_switch_outs", quickmap_counts.local_switch_outs),
        ("local_sleeps", quickmap_counts.local_sleeps),
        ("mismatches", mismatches()),
        ("duration_ms", duration_ms),
        ("cpus", cpus as u64),
        ("threads", threads as u64),
    ];
    for (key, value) in lines {
        crate::println!("qmk: summary {key}={value}");
    }
}
