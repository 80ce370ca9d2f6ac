//! The workload's pages and what they hold: the byte pattern every page
//! carries, its checksum, and the map-and-compare helpers every job uses.
//!
//! **The pattern.** A page at rest holds, in every 8-byte word at offset `o`,
//! `pattern_word(origin, generation, o)`: a mix of
//! - `origin`, the physical address of the page the data was first written
//!   to (the page itself, or the source of a copy): a window that maps the
//!   wrong frame, or a stale translation still pointing at the previous
//!   frame, reads another page's words;
//! - `generation`, unique over the whole run (the writer's thread number in
//!   the high bits, a counter below): a stale translation or a lost write
//!   reads an older generation, and no two writes ever produce the same page;
//! - `o` itself: a copy that lands at the wrong offset, or a torn copy that
//!   mixes two sources, is caught at the first displaced byte.
//!
//! The next user of a page recomputes what it must hold and compares every
//! byte; the first difference is reported with its page, offset and bytes.
//!
//! **The checksum.** Each owned page also records a checksum of its content,
//! computed by whoever wrote it from the bytes it wrote. The scrubber reads a
//! page back, sums it and compares with the record, as a real memory scrubber
//! does; on a difference the pattern tells exactly which byte is wrong.

use quickmap::arch::x86_64::X86Mmu;
use quickmap::{MemoryAttribute, PhysAddr, PAGE_SIZE};

use crate::memory::frame_allocator::{self, Zone};
use crate::vm::page::{VmPage, Wired};
use crate::vm::quick::{KernelQuickMap, QmkPlatform, WINDOWS_PER_CPU};

/// The quickmap instance the workload drives, and its guard type.
///
/// One alias, so that a check with a deliberately broken backend (see the
/// report of the workload's teeth check) changes one line.
pub type WorkloadQuickMap = KernelQuickMap;
/// A live mapping made by [`quickmap`].
pub type PageMapping<'q, 'p> = quickmap::Mapping<'q, 'p, QmkPlatform, X86Mmu, WINDOWS_PER_CPU>;

/// The quickmap instance the workload drives: the kernel's own.
#[inline]
pub fn quickmap() -> &'static WorkloadQuickMap {
    crate::vm::quick::quickmap()
}

/// Bytes handled per step when generating, comparing and copying: small
/// enough for an interrupt stack, large enough to amortise the calls.
pub const CHUNK: usize = 256;

/// A frame of RAM the workload owns, as a managed `VmPage`; freed on drop.
#[derive(Debug)]
pub struct OwnedPage {
    page: VmPage,
}

impl OwnedPage {
    /// A write-back page from `zone`, or from the other zone if `zone` has
    /// none left (e.g. `dmap` ≥ RAM: there is no high memory at all).
    pub fn allocate(zone: Zone) -> OwnedPage {
        let other = match zone {
            Zone::High => Zone::DirectMapped,
            Zone::DirectMapped => Zone::High,
        };
        let frame = frame_allocator::allocate_frame(zone)
            .or_else(|_| frame_allocator::allocate_frame(other))
            .unwrap_or_else(|error| panic!("workload: out of page frames: {error}"));
        OwnedPage {
            page: VmPage::managed(
                PhysAddr(frame.start_address().as_u64()),
                MemoryAttribute::WriteBack,
            ),
        }
    }

    /// Its physical address.
    pub fn pa(&self) -> u64 {
        self.page.phys_addr().0
    }

    /// Wires it for the duration of an operation.
    pub fn wire(&self) -> Wired<'_> {
        self.page.wire()
    }
}

impl Drop for OwnedPage {
    fn drop(&mut self) {
        frame_allocator::free_frame(crate::arch::PhysFrame::containing_address(
            crate::arch::PhysAddr::new(self.pa()),
        ));
    }
}

/// What a page holds at rest: `pattern(origin, generation)` in every byte,
/// whose checksum is `checksum`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Content {
    pub origin: u64,
    pub generation: u64,
    pub checksum: u64,
}

/// An owned page together with what it must hold.
#[derive(Debug)]
pub struct PageState {
    pub frame: OwnedPage,
    pub content: Content,
}

impl PageState {
    /// A page from `zone` holding a fresh pattern.
    pub fn patterned(zone: Zone, generations: &mut Generations) -> PageState {
        let frame = OwnedPage::allocate(zone);
        let content = {
            let wired = frame.wire();
            let mapping = quickmap().map(&wired);
            fill_pattern(&mapping, frame.pa(), generations.next())
        };
        PageState { frame, content }
    }
}

/// The word at byte `offset` (a multiple of 8) of a page holding
/// `(origin, generation)`: a splitmix64-style finaliser of the three, so that
/// changing any one of them changes the word.
#[inline]
pub fn pattern_word(origin: u64, generation: u64, offset: usize) -> u64 {
    let mut z = origin.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ generation.wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ (offset as u64).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z = z.wrapping_mul(0xd6e8_feb8_6659_fd93);
    z ^ (z >> 29)
}

/// Fills `out` with the pattern bytes of `(origin, generation)` from page
/// offset `offset` on (any alignment; `offset + out.len() <= PAGE_SIZE`).
pub fn pattern_bytes(origin: u64, generation: u64, offset: usize, out: &mut [u8]) {
    let mut position = offset;
    let mut index = 0;
    while index < out.len() {
        let word_start = position & !7;
        let word = pattern_word(origin, generation, word_start).to_le_bytes();
        let from = position - word_start;
        let take = (8 - from).min(out.len() - index);
        out[index..index + take].copy_from_slice(&word[from..from + take]);
        index += take;
        position += take;
    }
}

/// An order-sensitive checksum over 8-byte words (Fletcher-style: a running
/// sum and a sum of sums, so swapped or displaced words change it).
#[derive(Clone, Copy, Debug, Default)]
pub struct Checksum {
    sum: u64,
    sum_of_sums: u64,
}

impl Checksum {
    /// Adds `bytes` (a multiple of 8 long, starting at an 8-byte boundary of
    /// the page).
    pub fn add(&mut self, bytes: &[u8]) {
        for word in bytes.chunks_exact(8) {
            let value = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
            self.sum = self.sum.wrapping_add(value);
            self.sum_of_sums = self.sum_of_sums.wrapping_add(self.sum);
        }
    }

    /// The checksum so far.
    pub fn value(&self) -> u64 {
        self.sum ^ self.sum_of_sums.rotate_left(32)
    }
}

/// The first wrong byte a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongByte {
    /// Offset in the page.
    pub offset: usize,
    pub expected: u8,
    pub found: u8,
}

impl From<quickmap::Mismatch> for WrongByte {
    fn from(mismatch: quickmap::Mismatch) -> Self {
        WrongByte {
            offset: mismatch.offset,
            expected: mismatch.expected,
            found: mismatch.found,
        }
    }
}

/// Compares bytes `range` of the mapped page with what `expected` generates
/// (it fills a chunk with the bytes due from a page offset on); the first
/// difference, if any.
pub fn compare_mapped(
    mapping: &PageMapping<'_, '_>,
    range: core::ops::Range<usize>,
    mut expected: impl FnMut(usize, &mut [u8]),
) -> Result<(), WrongByte> {
    let mut chunk = [0u8; CHUNK];
    let mut offset = range.start;
    while offset < range.end {
        let len = CHUNK.min(range.end - offset);
        let want = &mut chunk[..len];
        expected(offset, want);
        mapping.compare(offset, want)?;
        offset += len;
    }
    Ok(())
}

/// Checks that the whole mapped page holds `content`'s pattern.
pub fn verify_pattern(mapping: &PageMapping<'_, '_>, content: Content) -> Result<(), WrongByte> {
    compare_mapped(mapping, 0..PAGE_SIZE, |offset, chunk| {
        pattern_bytes(content.origin, content.generation, offset, chunk)
    })
}

/// Writes the pattern of `(origin, generation)` over the whole mapped page;
/// returns the content it now holds.
pub fn fill_pattern(mapping: &PageMapping<'_, '_>, origin: u64, generation: u64) -> Content {
    let mut chunk = [0u8; CHUNK];
    let mut checksum = Checksum::default();
    for offset in (0..PAGE_SIZE).step_by(CHUNK) {
        pattern_bytes(origin, generation, offset, &mut chunk);
        checksum.add(&chunk);
        mapping.write(offset, &chunk);
    }
    Content {
        origin,
        generation,
        checksum: checksum.value(),
    }
}

/// Reads the whole mapped page and returns its checksum.
pub fn checksum_mapped(mapping: &PageMapping<'_, '_>) -> u64 {
    let mut chunk = [0u8; CHUNK];
    let mut checksum = Checksum::default();
    for offset in (0..PAGE_SIZE).step_by(CHUNK) {
        mapping.read(offset, &mut chunk);
        checksum.add(&chunk);
    }
    checksum.value()
}

/// A small deterministic PRNG (splitmix64): offsets, lengths, choices.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for stream `stream` of seed `seed`.
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0xa076_1d64_78bd_642f))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`; the tiny modulo bias is harmless).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }
}

/// Generations unique over the run: the owner's number in the high bits.
#[derive(Debug)]
pub struct Generations {
    next: u64,
}

impl Generations {
    /// The generations of owner `owner` (a worker's index; interrupt
    /// handlers use indices above the workers').
    pub fn new(owner: u64) -> Generations {
        Generations {
            next: (owner + 1) << 40,
        }
    }

    /// A generation never handed out before.
    pub fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}
