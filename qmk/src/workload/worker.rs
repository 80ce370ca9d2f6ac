//! A worker thread: owns its pages (no locks on its data path), and runs a
//! random mix of operations until the run's budget is spent. Workers are not
//! pinned: the scheduler preempts them every tick and they resume on
//! whichever CPU is free, so operations of one thread run on many CPUs.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::bounce::{BounceJob, BUFFER_PAGES};
use super::local::{LocalJob, LOCAL_PAGES};
use super::pages::{Generations, PageState, Rng};
use super::report::{self, count_operation, count_work, Kind};
use super::scrub::{check_page, Depth};
use super::zero_copy::{CopyJob, ZeroJob, COW_PAGES, ZERO_PAGES};
use crate::arch::clock;
use crate::memory::frame_allocator::Zone;

/// Pages only the scrubber touches, per worker.
const COLD_PAGES: usize = 4;

/// When the workers stop: after a number of operations over all of them, or
/// at a time; earlier if the run has failed already.
pub struct Budget {
    limit: Option<u64>,
    deadline_tsc: u64,
    claimed: AtomicU64,
    /// Set by the first worker to find the budget spent.
    spent: AtomicBool,
}

impl Budget {
    /// Stop after `operations` in all.
    pub fn operations(operations: u64) -> Budget {
        Budget {
            limit: Some(operations),
            deadline_tsc: u64::MAX,
            claimed: AtomicU64::new(0),
            spent: AtomicBool::new(false),
        }
    }

    /// Stop at TSC value `deadline_tsc`.
    pub fn until(deadline_tsc: u64) -> Budget {
        Budget {
            limit: None,
            deadline_tsc,
            claimed: AtomicU64::new(0),
            spent: AtomicBool::new(false),
        }
    }

    /// Whether one more operation may run (and, with a limit, claims it).
    fn claim(&self) -> bool {
        if self.spent.load(Ordering::Relaxed) || report::STOP.load(Ordering::Relaxed) {
            return false;
        }
        let more = match self.limit {
            Some(limit) => self.claimed.fetch_add(1, Ordering::Relaxed) < limit,
            None => clock::read() < self.deadline_tsc,
        };
        if !more {
            self.spent.store(true, Ordering::Relaxed);
        }
        more
    }
}

/// Times a worker found itself on another CPU than for its previous
/// operation (migrations seen from inside), over all workers.
static CPU_CHANGES: AtomicU64 = AtomicU64::new(0);

/// CPU changes between operations seen so far.
pub fn cpu_changes() -> u64 {
    CPU_CHANGES.load(Ordering::Relaxed)
}

/// One worker's pages and state.
struct Worker {
    rng: Rng,
    generations: Generations,
    bounce: BounceJob,
    zero: ZeroJob,
    copy: CopyJob,
    local: LocalJob,
    cold: Vec<PageState>,
    scrub_cursor: usize,
}

impl Worker {
    fn new(index: usize, seed: u64) -> Worker {
        let mut generations = Generations::new(index as u64);
        let cold = (0..COLD_PAGES)
            .map(|_| PageState::patterned(Zone::High, &mut generations))
            .collect();
        Worker {
            rng: Rng::new(seed, index as u64),
            bounce: BounceJob::new(&mut generations),
            zero: ZeroJob::new(&mut generations),
            copy: CopyJob::new(&mut generations),
            local: LocalJob::new(&mut generations),
            cold,
            generations,
            scrub_cursor: 0,
        }
    }

    fn scrub_next(&mut self, thread: u64) {
        let index = self.scrub_cursor % PAGES_PER_WORKER;
        self.scrub_cursor += 1;
        let (generations, mut pages) = self.owned_pages();
        let state = pages.nth(index).expect("index below the page count");
        let work = check_page(state, Depth::Checksum, generations, thread);
        count_operation(Kind::Scrub, work);
    }

    /// The last word: every page the worker owns, every byte.
    fn final_pass(&mut self, thread: u64) {
        let (generations, pages) = self.owned_pages();
        for state in pages {
            count_work(check_page(state, Depth::EveryByte, generations, thread));
        }
    }

    /// Every page the worker owns, in the scrubber's order, and the generations
    /// that tell what each must hold.
    fn owned_pages(&mut self) -> (&mut Generations, impl Iterator<Item = &mut PageState>) {
        let pages = self
            .bounce
            .buffer
            .iter_mut()
            .chain(self.zero.owned.iter_mut())
            .chain(self.copy.pages.iter_mut())
            .chain(self.local.pages.iter_mut())
            .chain(self.cold.iter_mut());
        (&mut self.generations, pages)
    }
}

/// Pages a worker owns and the scrubber checks (not the bounce pages: they
/// hold nothing between transfers).
const PAGES_PER_WORKER: usize = BUFFER_PAGES + ZERO_PAGES + COW_PAGES + LOCAL_PAGES + COLD_PAGES;

/// The body of worker thread `index`.
pub fn run(index: usize, seed: u64, budget: &Budget) {
    let thread = crate::sched::current_thread_id();
    let mut worker = Worker::new(index, seed);
    let mut last_cpu = crate::cpu::current_cpu_index();
    while budget.claim() {
        let Worker {
            rng,
            generations,
            bounce,
            zero,
            copy,
            local,
            ..
        } = &mut worker;
        match rng.below(100) {
            0..25 => bounce.prewrite(rng, thread),
            25..50 => bounce.postread(rng, generations, thread),
            50..65 => zero.zero(rng, generations, thread),
            65..78 => copy.copy(rng, generations, thread),
            78..88 => local.hold_across_sleep(rng, generations, thread),
            _ => worker.scrub_next(thread),
        }
        let cpu = crate::cpu::current_cpu_index();
        if cpu != last_cpu {
            CPU_CHANGES.fetch_add(1, Ordering::Relaxed);
            last_cpu = cpu;
        }
    }
    worker.final_pass(thread);
}
