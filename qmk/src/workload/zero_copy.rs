//! Page zeroing and copy-on-write copies: `pmap_zero_page` and
//! `pmap_copy_page`, the two oldest callers of quick mappings.
//!
//! **Zeroing.** Freed pages go back to a free pool shared by every worker,
//! zeroed on the way (`pmap_zero_page`), as a VM system pre-zeroes free pages
//! for reuse. The pool is a FIFO under a spin lock (the one shared structure
//! on the data path, as the free-page queues of a real VM are), so the page a
//! worker takes was usually zeroed long ago, by another thread, on another
//! CPU: the next user checks every byte is zero before it writes its own
//! pattern, which is exactly the visibility a stale window would break.
//!
//! **Copying.** Each worker has a few pages a parent process shares with a
//! child; a write fault copies the shared page into the child's
//! (`pmap_copy_page`, both pages mapped at once). The parent first writes a
//! new generation into the source, so the copy must deliver that one: a copy
//! from the wrong frame, from a stale translation, or torn, shows as a wrong
//! byte in the destination.
//!
//! With `invalidation=deferred` both go through the deferred instance's
//! `zero_page`/`copy_page` instead of the `pmap_*` functions (see
//! [`WorkloadQuickMap`](super::pages::WorkloadQuickMap)).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use quickmap::PAGE_SIZE;

use super::pages::{
    compare_mapped, fill_pattern, quickmap, verify_pattern, Generations, OwnedPage, PageState, Rng,
    WrongByte,
};
use super::report::{count_operation, count_work, record_mismatch, Kind, MismatchReport, Work};
use crate::memory::frame_allocator::Zone;
use crate::sync::SpinLock;

/// The free pool: zeroed pages, oldest first.
static FREE_POOL: SpinLock<VecDeque<OwnedPage>> = SpinLock::new(VecDeque::new());

/// Pages each worker keeps from the pool at a time.
pub const ZERO_PAGES: usize = 2;
/// Pages each worker shares between "parent" and "child" for copies: mostly
/// high memory, one direct-mapped (quickmap's fast path on one side).
pub const COW_PAGES: usize = 4;

/// Puts `count` freshly zeroed pages into the free pool (one in four
/// direct-mapped, the rest in high memory).
pub fn fill_pool(count: usize) {
    for index in 0..count {
        let zone = if index % 4 == 3 {
            Zone::DirectMapped
        } else {
            Zone::High
        };
        let page = OwnedPage::allocate(zone);
        {
            let wired = page.wire();
            quickmap().zero_page(&wired);
        }
        FREE_POOL.lock().push_back(page);
    }
}

/// Empties the pool at the end of the run, checking that every page in it is
/// still all zeroes; frees them.
pub fn drain_pool() {
    let thread = crate::sched::current_thread_id();
    loop {
        let Some(page) = FREE_POOL.lock().pop_front() else {
            break;
        };
        if let Err((wrong, cpu)) = check_zero(&page) {
            record_mismatch(report(Kind::Zero, &page, wrong, cpu, thread));
        }
        count_work(Work::pages(1, 0));
    }
}

/// The zeroing job of one worker: the pages it took from the pool.
pub struct ZeroJob {
    pub owned: Vec<PageState>,
}

impl ZeroJob {
    /// Fresh pages holding patterns (the pool is for pages freed later).
    pub fn new(generations: &mut Generations) -> ZeroJob {
        ZeroJob {
            owned: (0..ZERO_PAGES)
                .map(|_| PageState::patterned(Zone::High, generations))
                .collect(),
        }
    }

    /// One zero operation: free a page (zeroed into the pool), take the oldest
    /// page from the pool, check it is zero, and use it.
    pub fn zero(&mut self, rng: &mut Rng, generations: &mut Generations, thread: u64) {
        let freed = self.owned.swap_remove(rng.below(self.owned.len()));
        {
            let wired = freed.frame.wire();
            quickmap().zero_page(&wired);
        }
        let reused = {
            let mut pool = FREE_POOL.lock();
            pool.push_back(freed.frame);
            pool.pop_front()
        }
        .expect("the free pool holds the page just freed");
        let result = check_zero(&reused);
        let content = {
            let wired = reused.wire();
            let mapping = quickmap().map(&wired);
            fill_pattern(&mapping, reused.pa(), generations.next())
        };
        if let Err((wrong, cpu)) = result {
            record_mismatch(report(Kind::Zero, &reused, wrong, cpu, thread));
        }
        self.owned.push(PageState {
            frame: reused,
            content,
        });
        count_operation(Kind::Zero, Work::pages(1, PAGE_SIZE as u64));
    }
}

/// The copy-on-write job of one worker.
pub struct CopyJob {
    pub pages: Vec<PageState>,
}

impl CopyJob {
    /// Pages holding patterns.
    pub fn new(generations: &mut Generations) -> CopyJob {
        CopyJob {
            pages: (0..COW_PAGES)
                .map(|index| {
                    let zone = if index == 0 {
                        Zone::DirectMapped
                    } else {
                        Zone::High
                    };
                    PageState::patterned(zone, generations)
                })
                .collect(),
        }
    }

    /// One copy: the parent writes its page, the fault copies it to the
    /// child's, and the child's page is checked byte for byte.
    pub fn copy(&mut self, rng: &mut Rng, generations: &mut Generations, thread: u64) {
        let source = rng.below(COW_PAGES);
        let destination = (source + 1 + rng.below(COW_PAGES - 1)) % COW_PAGES;
        let written = {
            let frame = &self.pages[source].frame;
            let wired = frame.wire();
            let mapping = quickmap().map(&wired);
            fill_pattern(&mapping, frame.pa(), generations.next())
        };
        self.pages[source].content = written;
        {
            let from = self.pages[source].frame.wire();
            let to = self.pages[destination].frame.wire();
            quickmap().copy_page(&from, &to);
        }
        let child = &mut self.pages[destination];
        let wired = child.frame.wire();
        let mapping = quickmap().map(&wired);
        let cpu = crate::cpu::current_cpu_index();
        let result = verify_pattern(&mapping, written);
        child.content = match result {
            Ok(()) => written,
            // Rewrite it whole, so one corruption is reported once.
            Err(_) => fill_pattern(&mapping, child.frame.pa(), generations.next()),
        };
        drop(mapping);
        drop(wired);
        if let Err(wrong) = result {
            record_mismatch(report(Kind::Copy, &child.frame, wrong, cpu, thread));
        }
        count_operation(Kind::Copy, Work::pages(1, PAGE_SIZE as u64));
    }
}

/// Checks every byte of `page` is zero; the first that is not, and the CPU.
fn check_zero(page: &OwnedPage) -> Result<(), (WrongByte, usize)> {
    let wired = page.wire();
    let mapping = quickmap().map(&wired);
    let cpu = crate::cpu::current_cpu_index();
    compare_mapped(&mapping, 0..PAGE_SIZE, |_, out| out.fill(0)).map_err(|wrong| (wrong, cpu))
}

fn report(
    kind: Kind,
    page: &OwnedPage,
    wrong: WrongByte,
    cpu: usize,
    thread: u64,
) -> MismatchReport {
    MismatchReport {
        kind,
        page: page.pa(),
        cpu,
        thread,
        offset: wrong.offset,
        expected: wrong.expected,
        found: wrong.found,
    }
}
