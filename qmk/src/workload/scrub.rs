//! The scrubber: reads back every page a worker owns, one per operation in
//! turn, and compares its checksum with the one recorded when the page was
//! last written, as a memory scrubber does. A page that fails is compared
//! with its pattern to find the exact byte, reported, and rewritten.
//!
//! The worker's pages include "cold" ones that only the scrubber touches:
//! data at rest, whose frames stay mapped nowhere between scrubs.

use quickmap::PAGE_SIZE;

use super::pages::{
    checksum_mapped, fill_pattern, quickmap, verify_pattern, Generations, PageState, WrongByte,
};
use super::report::{record_mismatch, Kind, MismatchReport, Work};

/// How thoroughly a page is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Checksum, and the pattern only to explain a difference (the scrubber).
    Checksum,
    /// Every byte against the pattern (the final pass at the end of the run).
    EveryByte,
}

/// Checks one owned page; on a wrong byte reports it (as `kind`) and
/// rewrites the page with a new generation. Returns the work done.
pub fn check_page(
    state: &mut PageState,
    depth: Depth,
    generations: &mut Generations,
    thread: u64,
) -> Work {
    let wired = state.frame.wire();
    let mapping = quickmap().map(&wired);
    let cpu = crate::cpu::current_cpu_index();
    let result = match depth {
        Depth::EveryByte => verify_pattern(&mapping, state.content),
        Depth::Checksum => {
            let found = checksum_mapped(&mapping);
            if found == state.content.checksum {
                Ok(())
            } else {
                // Which byte? If the pattern matches after all, the page
                // changed between the two reads: report the checksum itself
                // (offset = the page size, bytes = the checksums' low bytes).
                verify_pattern(&mapping, state.content).and(Err(WrongByte {
                    offset: PAGE_SIZE,
                    expected: state.content.checksum as u8,
                    found: found as u8,
                }))
            }
        }
    };
    if result.is_err() {
        state.content = fill_pattern(&mapping, state.frame.pa(), generations.next());
    }
    drop(mapping);
    drop(wired);
    if let Err(wrong) = result {
        record_mismatch(MismatchReport {
            kind: Kind::Scrub,
            page: state.frame.pa(),
            cpu,
            thread,
            offset: wrong.offset,
            expected: wrong.expected,
            found: wrong.found,
        });
    }
    Work::pages(1, 0)
}
