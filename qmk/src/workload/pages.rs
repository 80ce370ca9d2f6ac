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

use crate::arch::quickmap_backend::KernelMmu;
use quickmap::{Deferred, HeldPage, MemoryAttribute, PAGE_SIZE};
use spin::Once;

use crate::boot_options::Invalidation;
use crate::memory::frame_allocator::{self, Zone};
use crate::vm::page::{VmPage, Wired};
use crate::vm::quick::{
    self, DeferredQuickMap, KernelQuickMap, QmkPlatform, DEFERRED_MAX_CPUS,
    DEFERRED_WINDOWS_PER_CPU, LOCAL_SLOTS, WINDOWS_PER_CPU,
};

/// The kernel's two quickmap instances as the workload drives them.
///
/// Aliases, so that a check with a deliberately broken backend (see the report of
/// the workload's teeth check) changes one line per instance.
pub type StrictInstance = KernelQuickMap;
/// See [`StrictInstance`].
pub type DeferredInstance = DeferredQuickMap;

/// The quickmap instance every job of the workload uses, chosen once at boot by
/// `invalidation=`: the bounce copies (including the FreeBSD-named ones), zeroing,
/// copying, the scrubber and the tick hook all go through it.
pub enum WorkloadQuickMap {
    /// `invalidation=strict`: [`quick::quickmap`] and the `pmap_*` functions.
    Strict(&'static StrictInstance),
    /// `invalidation=deferred`: [`quick::deferred_quickmap`] and the `qmk_deferred_*`
    /// functions.
    Deferred(&'static DeferredInstance),
}

/// A live mapping made by [`WorkloadQuickMap::map`], or a local one made by
/// [`map_local`] (whatever `invalidation=` says: local slots are always strict).
pub enum PageMapping<'p> {
    Strict(quickmap::Mapping<'static, 'p, QmkPlatform, KernelMmu, WINDOWS_PER_CPU>),
    Deferred(
        quickmap::Mapping<'static, 'p, QmkPlatform, KernelMmu, DEFERRED_WINDOWS_PER_CPU, Deferred>,
    ),
    Local(quickmap::LocalMapping<'static, 'p, QmkPlatform, KernelMmu, LOCAL_SLOTS>),
}

/// Maps `page` with the kernel's local mappings until the returned guard drops:
/// the holder may sleep meanwhile (see [`quick::local_quickmap`]).
pub fn map_local<H: HeldPage + ?Sized>(page: &H) -> PageMapping<'_> {
    PageMapping::Local(quick::local_quickmap().map(page))
}

/// Runs `$body` with `$q` bound to the instance (or mapping) inside `$value`,
/// whichever variant it is.
macro_rules! either {
    ($value:expr, $q:ident => $body:expr) => {
        match $value {
            WorkloadQuickMap::Strict($q) => $body,
            WorkloadQuickMap::Deferred($q) => $body,
        }
    };
}

macro_rules! either_mapping {
    ($value:expr, $m:ident => $body:expr) => {
        match $value {
            PageMapping::Strict($m) => $body,
            PageMapping::Deferred($m) => $body,
            PageMapping::Local($m) => $body,
        }
    };
}

static SELECTED: Once<WorkloadQuickMap> = Once::new();

/// Chooses the instance the workload drives; the error is one line saying why
/// it cannot (the deferred instance serves at most [`DEFERRED_MAX_CPUS`] CPUs).
pub fn select(invalidation: Invalidation) -> Result<(), alloc::string::String> {
    let cpus = crate::cpu::cpu_count();
    if invalidation == Invalidation::Deferred && cpus > DEFERRED_MAX_CPUS {
        return Err(alloc::format!(
            "invalidation=deferred needs at most {DEFERRED_MAX_CPUS} CPUs (the deferred \
             instance's windows fill one page table), this machine has {cpus}; use \
             invalidation=strict or fewer CPUs"
        ));
    }
    SELECTED.call_once(|| match invalidation {
        Invalidation::Strict => WorkloadQuickMap::Strict(quick::quickmap()),
        Invalidation::Deferred => WorkloadQuickMap::Deferred(quick::deferred_quickmap()),
    });
    Ok(())
}

/// The quickmap instance the workload drives.
///
/// # Panics
///
/// Before [`select`].
#[inline]
pub fn quickmap() -> &'static WorkloadQuickMap {
    match SELECTED.get() {
        Some(selected) => selected,
        None => panic!("workload: quickmap used before pages::select"),
    }
}

impl WorkloadQuickMap {
    /// Maps `page` until the returned guard drops.
    #[inline]
    pub fn map<'p, H: HeldPage + ?Sized>(&self, page: &'p H) -> PageMapping<'p> {
        match *self {
            WorkloadQuickMap::Strict(q) => PageMapping::Strict(q.map(page)),
            WorkloadQuickMap::Deferred(q) => PageMapping::Deferred(q.map(page)),
        }
    }

    /// `copy_from_pages`: from the run `pages` at `offset` into `dst`.
    pub fn copy_from_pages<H: HeldPage>(&self, pages: &[H], offset: usize, dst: &mut [u8]) {
        either!(*self, q => q.copy_from_pages(pages, offset, dst))
    }

    /// `copy_to_pages`: `src` into the run `pages` at `offset`.
    pub fn copy_to_pages<H: HeldPage>(&self, pages: &[H], offset: usize, src: &[u8]) {
        either!(*self, q => q.copy_to_pages(pages, offset, src))
    }

    /// `pmap_zero_page` on this instance.
    pub fn zero_page(&self, page: &Wired<'_>) {
        match *self {
            WorkloadQuickMap::Strict(_) => quick::pmap_zero_page(page.page()),
            WorkloadQuickMap::Deferred(q) => q.zero_page(page),
        }
    }

    /// `pmap_copy_page` on this instance.
    pub fn copy_page(&self, source: &Wired<'_>, destination: &Wired<'_>) {
        match *self {
            WorkloadQuickMap::Strict(_) => quick::pmap_copy_page(source.page(), destination.page()),
            WorkloadQuickMap::Deferred(q) => q.copy_page(source, destination),
        }
    }

    /// `pmap_quick_enter_page(9)` on this instance (through the exported C-ABI
    /// function: `pmap_quick_enter_page` or `qmk_deferred_enter_page`).
    pub fn quick_enter_page(&self, page: &VmPage) -> usize {
        match self {
            WorkloadQuickMap::Strict(_) => quick::pmap_quick_enter_page(page),
            WorkloadQuickMap::Deferred(_) => quick::qmk_deferred_enter_page(page),
        }
    }

    /// `pmap_quick_remove_page(9)` on this instance.
    ///
    /// # Safety
    ///
    /// `kva` was returned by [`quick_enter_page`](Self::quick_enter_page) of this
    /// instance in the calling context and not removed since; nothing uses it after.
    pub unsafe fn quick_remove_page(&self, kva: usize) {
        match self {
            // SAFETY: forwarded from this function's contract.
            WorkloadQuickMap::Strict(_) => unsafe { quick::pmap_quick_remove_page(kva) },
            // SAFETY: forwarded from this function's contract.
            WorkloadQuickMap::Deferred(_) => unsafe { quick::qmk_deferred_remove_page(kva) },
        }
    }

    /// The MMU backend (byte copies through an address the instance returned).
    pub fn mmu(&self) -> &'static KernelMmu {
        either!(*self, q => q.mmu())
    }

    /// Windows in use on `cpu` (a bit mask).
    pub fn windows_in_use(&self, cpu: usize) -> u32 {
        either!(*self, q => q.windows_in_use(cpu))
    }

    /// Event counts of all CPUs together.
    #[cfg(feature = "stats")]
    pub fn total_stats(&self) -> quickmap::Stats {
        either!(*self, q => q.total_stats())
    }
}

impl PageMapping<'_> {
    /// Copies bytes at `offset` of the page into `dst`.
    #[inline]
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        either_mapping!(self, m => m.read(offset, dst))
    }

    /// Copies `src` to `offset` of the page.
    #[inline]
    pub fn write(&self, offset: usize, src: &[u8]) {
        either_mapping!(self, m => m.write(offset, src))
    }

    /// Compares the bytes at `offset` with `expected`; the first difference.
    #[inline]
    pub fn compare(&self, offset: usize, expected: &[u8]) -> Result<(), quickmap::Mismatch> {
        either_mapping!(self, m => m.compare(offset, expected))
    }
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
            page: VmPage::managed(frame.into(), MemoryAttribute::WriteBack),
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
    mapping: &PageMapping<'_>,
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
pub fn verify_pattern(mapping: &PageMapping<'_>, content: Content) -> Result<(), WrongByte> {
    compare_mapped(mapping, 0..PAGE_SIZE, |offset, chunk| {
        pattern_bytes(content.origin, content.generation, offset, chunk)
    })
}

/// Writes the pattern of `(origin, generation)` over the whole mapped page;
/// returns the content it now holds.
pub fn fill_pattern(mapping: &PageMapping<'_>, origin: u64, generation: u64) -> Content {
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
pub fn checksum_mapped(mapping: &PageMapping<'_>) -> u64 {
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
