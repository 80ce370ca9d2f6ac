//! Local mappings held across sleeps: Linux's `kmap_local_page`, which lets
//! the holder of a temporary mapping be preempted and block (a copy that
//! waits on a lock, or for its turn on a busy CPU) without pinning the CPU.
//!
//! Each worker owns a few pages. An operation maps one to all of them with
//! the kernel's local mappings at once, checks every byte, then gives up the
//! CPU while they are mapped (a sleep one time in four, else a yield): other
//! workers run on the CPU meanwhile, at the same slot addresses, with pages of
//! their own. When it runs again, on the same CPU (checked), it checks every
//! byte again, writes a new generation, and drops the mappings in the order
//! made. A slot the switch failed to restore, or restored with another
//! thread's page, shows as a wrong byte (or as quickmap's page-fault rule).

use alloc::vec::Vec;
use core::time::Duration;

use super::pages::{fill_pattern, map_local, verify_pattern, Generations, PageState, Rng};
use super::report::{count_operation, record_mismatch, Kind, MismatchReport, Work};
use crate::memory::frame_allocator::Zone;
use crate::vm::quick::LOCAL_SLOTS;

/// Pages each worker maps locally (at most all at once: fewer than its slots).
pub const LOCAL_PAGES: usize = 3;
const _: () = assert!(LOCAL_PAGES <= LOCAL_SLOTS);

/// How long a worker sleeps while it holds local mappings (rounded up to the
/// scheduler's tick).
const SLEEP: Duration = Duration::from_micros(200);

/// Local mappings that were held across a sleep, over all workers.
static SLEEPS_WHILE_MAPPED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Sleeps taken while holding local mappings so far.
pub fn sleeps_while_mapped() -> u64 {
    SLEEPS_WHILE_MAPPED.load(core::sync::atomic::Ordering::Relaxed)
}

/// One worker's pages for local mappings.
pub struct LocalJob {
    pub pages: Vec<PageState>,
}

impl LocalJob {
    /// High-memory pages holding fresh patterns.
    pub fn new(generations: &mut Generations) -> LocalJob {
        LocalJob {
            pages: (0..LOCAL_PAGES)
                .map(|_| PageState::patterned(Zone::High, generations))
                .collect(),
        }
    }

    /// One operation: map some of the pages locally, check them, give up the CPU
    /// while mapped, check them again on the same CPU, write a new generation.
    pub fn hold_across_sleep(&mut self, rng: &mut Rng, generations: &mut Generations, thread: u64) {
        let count = 1 + rng.below(LOCAL_PAGES);
        let first = rng.below(LOCAL_PAGES);
        let sleeps = rng.below(4) == 0;
        let chosen: Vec<usize> = (0..count).map(|i| (first + i) % LOCAL_PAGES).collect();
        let wired: Vec<_> = chosen.iter().map(|&i| self.pages[i].frame.wire()).collect();
        let mappings: Vec<_> = wired.iter().map(|page| map_local(page)).collect();
        let home = crate::cpu::current_cpu_index();
        let mut wrong = None;
        for (mapping, &i) in mappings.iter().zip(&chosen) {
            if let Err(byte) = verify_pattern(mapping, self.pages[i].content) {
                wrong.get_or_insert((i, byte));
            }
        }
        if sleeps {
            crate::sched::sleep(SLEEP);
            SLEEPS_WHILE_MAPPED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        } else {
            crate::sched::yield_now();
        }
        let now = crate::cpu::current_cpu_index();
        assert_eq!(
            now, home,
            "workload: a thread holding local mappings of CPU {home} resumed on CPU {now}"
        );
        let mut written = Vec::with_capacity(count);
        for (mapping, &i) in mappings.iter().zip(&chosen) {
            if let Err(byte) = verify_pattern(mapping, self.pages[i].content) {
                wrong.get_or_insert((i, byte));
            }
            written.push(fill_pattern(
                mapping,
                self.pages[i].frame.pa(),
                generations.next(),
            ));
        }
        drop(mappings);
        drop(wired);
        for (&i, content) in chosen.iter().zip(written) {
            self.pages[i].content = content;
        }
        if let Some((i, byte)) = wrong {
            record_mismatch(MismatchReport {
                kind: Kind::Local,
                page: self.pages[i].frame.pa(),
                cpu: home,
                thread,
                offset: byte.offset,
                expected: byte.expected,
                found: byte.found,
            });
        }
        let pages = count as u64;
        count_operation(
            Kind::Local,
            Work::pages(2 * pages, pages * quickmap::PAGE_SIZE as u64),
        );
    }
}
