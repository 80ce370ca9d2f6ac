//! The physical frame allocator: a bitmap, one bit per 4 KiB frame.
//!
//! Physical memory is split into two zones at the end of the direct map:
//! - [`Zone::DirectMapped`] — frames the kernel can always reach through the
//!   direct map (page tables, heap, kernel data structures);
//! - [`Zone::High`] — frames above it, reachable only through a temporary
//!   mapping (quickmap windows): what the tests need to prove that quickmap
//!   is the only way in.
//!
//! Each zone remembers the lowest bitmap word that may still hold a free
//! frame, so single-frame allocation is amortised O(1) even when a zone is
//! nearly full. A bitmap (rather than a free list threaded through the free
//! frames) needs no access to the frames themselves, which matters for high
//! memory: the allocator could not write into it.
//!
//! The frames are handed out by value; the allocator detects double frees.

use core::fmt;
use core::ops::Range;

use crate::sync::SpinLock;

use crate::arch::{PhysAddr, PhysFrame};

/// Size of a frame.
pub const FRAME_SIZE: u64 = 4096;
const FRAMES_PER_WORD: u64 = 64;

/// Where a frame comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// Below the end of the direct map: reachable at a fixed kernel address.
    DirectMapped,
    /// At or above the end of the direct map: not mapped anywhere by default.
    High,
}

impl Zone {
    /// Both zones.
    pub const ALL: [Zone; 2] = [Zone::DirectMapped, Zone::High];

    fn index(self) -> usize {
        match self {
            Zone::DirectMapped => 0,
            Zone::High => 1,
        }
    }
}

/// Why frames could not be handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameAllocError {
    /// The zone has no free run of `requested` frames (with the alignment asked for).
    Exhausted {
        zone: Zone,
        requested: u64,
        free: u64,
    },
    /// The global allocator is used before `init`.
    NotInitialised,
}

impl fmt::Display for FrameAllocError {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Exhausted {
                zone,
                requested,
                free,
            } => write!(
                formatter,
                "zone {zone:?} exhausted: {requested} contiguous frame(s) requested, {free} free in total"
            ),
            Self::NotInitialised => write!(formatter, "the frame allocator is not initialised"),
        }
    }
}

/// `count` physically contiguous frames starting at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRun {
    pub start: PhysFrame,
    pub count: u64,
}

impl FrameRun {
    /// The physical address range the run covers.
    pub fn physical_range(&self) -> Range<PhysAddr> {
        let start = self.start.start_address();
        start..start + self.count * FRAME_SIZE
    }
}

/// Frame counts of one zone or of all memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Usable frames the allocator manages.
    pub managed: u64,
    /// Of those, the ones not handed out.
    pub free: u64,
}

impl FrameCounts {
    /// Frames handed out (or reserved for the kernel image and firmware).
    pub fn used(&self) -> u64 {
        self.managed - self.free
    }
}

#[derive(Clone, Copy, Debug)]
struct ZoneState {
    /// Frame numbers `[first_frame, end_frame)` belong to the zone.
    first_frame: u64,
    end_frame: u64,
    /// Every bitmap word below this one (within the zone) is fully allocated.
    first_maybe_free_word: usize,
    counts: FrameCounts,
}

/// A bitmap frame allocator over frame numbers `[0, frame_limit)`.
///
/// Two bitmaps: `managed_bits` marks usable RAM that the allocator owns,
/// `free_bits` marks the managed frames not handed out. Frames that are not
/// managed (firmware, holes, the kernel image) are never handed out, and
/// freeing one is caught: without the second bitmap such a free would be
/// indistinguishable from a legitimate one and would put, say, a firmware
/// page into circulation.
pub struct FrameAllocator<'bitmap> {
    free_bits: &'bitmap mut [u64],
    managed_bits: &'bitmap mut [u64],
    zones: [ZoneState; 2],
}

impl<'bitmap> FrameAllocator<'bitmap> {
    /// How many `u64` words of storage [`FrameAllocator::new`] needs to
    /// manage `frame_count` frames.
    pub const fn storage_words(frame_count: u64) -> usize {
        (2 * frame_count.div_ceil(FRAMES_PER_WORD)) as usize
    }

    /// An allocator with no frames yet, for frame numbers below
    /// `storage.len() / 2 * 64` (see [`FrameAllocator::storage_words`]),
    /// whose direct-mapped zone ends at frame `direct_map_end_frame` (a
    /// multiple of 64, so zones own whole words).
    pub fn new(storage: &'bitmap mut [u64], direct_map_end_frame: u64) -> Self {
        storage.fill(0);
        let words = storage.len() / 2;
        let (free_bits, managed_bits) = storage.split_at_mut(words);
        let managed_bits = &mut managed_bits[..words];
        let frame_limit = words as u64 * FRAMES_PER_WORD;
        assert!(
            direct_map_end_frame.is_multiple_of(FRAMES_PER_WORD),
            "the direct-mapped zone must end on a multiple of {FRAMES_PER_WORD} frames, not at frame {direct_map_end_frame}"
        );
        let split = direct_map_end_frame.min(frame_limit);
        let zone = |first_frame: u64, end_frame: u64| ZoneState {
            first_frame,
            end_frame,
            first_maybe_free_word: (first_frame / FRAMES_PER_WORD) as usize,
            counts: FrameCounts::default(),
        };
        Self {
            free_bits,
            managed_bits,
            zones: [zone(0, split), zone(split, frame_limit)],
        }
    }

    /// One past the highest frame number the bitmap can describe.
    pub fn frame_limit(&self) -> u64 {
        self.free_bits.len() as u64 * FRAMES_PER_WORD
    }

    fn zone_of(&self, frame_number: u64) -> usize {
        usize::from(frame_number >= self.zones[0].end_frame)
    }

    fn is_free(&self, frame_number: u64) -> bool {
        bit(self.free_bits, frame_number)
    }

    fn set_free(&mut self, frame_number: u64, free: bool) {
        set_bit(self.free_bits, frame_number, free);
    }

    fn is_managed(&self, frame_number: u64) -> bool {
        bit(self.managed_bits, frame_number)
    }

    /// Makes the whole frames inside `[start, end)` available (boot-time set-up:
    /// usable RAM from the memory map). Frames beyond the bitmap are ignored.
    pub fn add_usable_range(&mut self, start: PhysAddr, end: PhysAddr) {
        let first = start.align_up(FRAME_SIZE).as_u64() / FRAME_SIZE;
        let last = (end.align_down(FRAME_SIZE).as_u64() / FRAME_SIZE).min(self.frame_limit());
        for frame_number in first..last {
            if !self.is_managed(frame_number) {
                set_bit(self.managed_bits, frame_number, true);
                self.set_free(frame_number, true);
                let zone = self.zone_of(frame_number);
                self.zones[zone].counts.managed += 1;
                self.zones[zone].counts.free += 1;
            }
        }
    }

    /// Takes every frame touching `[start, end)` out of the allocator for
    /// good (the kernel image, firmware areas). Boot-time set-up only: the
    /// frames must not be handed out yet.
    pub fn reserve_range(&mut self, start: PhysAddr, end: PhysAddr) {
        let first = start.align_down(FRAME_SIZE).as_u64() / FRAME_SIZE;
        let last = (end.align_up(FRAME_SIZE).as_u64() / FRAME_SIZE).min(self.frame_limit());
        for frame_number in first..last {
            if self.is_managed(frame_number) {
                assert!(
                    self.is_free(frame_number),
                    "frame {:#x} reserved after it was handed out",
                    frame_number * FRAME_SIZE
                );
                set_bit(self.managed_bits, frame_number, false);
                self.set_free(frame_number, false);
                let counts = &mut self.zones[self.zone_of(frame_number)].counts;
                counts.managed -= 1;
                counts.free -= 1;
            }
        }
    }

    /// Hands out one free frame from `zone`.
    pub fn allocate(&mut self, zone: Zone) -> Result<PhysFrame, FrameAllocError> {
        let state = self.zones[zone.index()];
        let end_word = state.end_frame.div_ceil(FRAMES_PER_WORD) as usize;
        for word_index in state.first_maybe_free_word..end_word {
            let word = self.free_bits[word_index];
            if word == 0 {
                continue;
            }
            let frame_number =
                word_index as u64 * FRAMES_PER_WORD + u64::from(word.trailing_zeros());
            self.zones[zone.index()].first_maybe_free_word = word_index;
            self.set_free(frame_number, false);
            self.zones[zone.index()].counts.free -= 1;
            return Ok(frame_of(frame_number));
        }
        self.zones[zone.index()].first_maybe_free_word = end_word;
        Err(FrameAllocError::Exhausted {
            zone,
            requested: 1,
            free: state.counts.free,
        })
    }

    /// Hands out `count` physically contiguous frames from `zone`, the first
    /// one aligned to `alignment_frames` frames (a power of two).
    pub fn allocate_contiguous(
        &mut self,
        zone: Zone,
        count: u64,
        alignment_frames: u64,
    ) -> Result<FrameRun, FrameAllocError> {
        assert!(
            count > 0,
            "a contiguous allocation needs at least one frame"
        );
        assert!(
            alignment_frames.is_power_of_two(),
            "frame alignment must be a power of two, not {alignment_frames}"
        );
        let state = self.zones[zone.index()];
        let search_start = (state.first_maybe_free_word as u64 * FRAMES_PER_WORD)
            .max(state.first_frame)
            .next_multiple_of(alignment_frames);
        let mut candidate = search_start;
        while candidate + count <= state.end_frame {
            match (candidate..candidate + count).find(|&frame| !self.is_free(frame)) {
                None => {
                    for frame_number in candidate..candidate + count {
                        self.set_free(frame_number, false);
                    }
                    self.zones[zone.index()].counts.free -= count;
                    return Ok(FrameRun {
                        start: frame_of(candidate),
                        count,
                    });
                }
                Some(used) => candidate = (used + 1).next_multiple_of(alignment_frames),
            }
        }
        Err(FrameAllocError::Exhausted {
            zone,
            requested: count,
            free: state.counts.free,
        })
    }

    /// Returns `frame` to its zone.
    ///
    /// # Panics
    ///
    /// If the frame is not allocated (a double free: it would reach two
    /// owners) or not managed (never handed out, e.g. firmware memory).
    pub fn free(&mut self, frame: PhysFrame) {
        let frame_number = frame.start_address().as_u64() / FRAME_SIZE;
        let address = frame.start_address().as_u64();
        assert!(
            frame_number < self.frame_limit() && self.is_managed(frame_number),
            "frame {address:#x} freed, but it is not RAM this allocator manages: it was never handed out"
        );
        assert!(
            !self.is_free(frame_number),
            "frame {address:#x} freed twice: it is not allocated"
        );
        self.set_free(frame_number, true);
        let zone = &mut self.zones[self.zone_of(frame_number)];
        zone.counts.free += 1;
        zone.first_maybe_free_word = zone
            .first_maybe_free_word
            .min((frame_number / FRAMES_PER_WORD) as usize);
    }

    /// Returns every frame of `run` (see [`FrameAllocator::free`]).
    pub fn free_run(&mut self, run: FrameRun) {
        let first = run.start.start_address().as_u64() / FRAME_SIZE;
        for frame_number in first..first + run.count {
            self.free(frame_of(frame_number));
        }
    }

    /// Counts for one zone.
    pub fn counts(&self, zone: Zone) -> FrameCounts {
        self.zones[zone.index()].counts
    }

    /// Counts for all memory.
    pub fn total_counts(&self) -> FrameCounts {
        let [low, high] = self.zones.map(|zone| zone.counts);
        FrameCounts {
            managed: low.managed + high.managed,
            free: low.free + high.free,
        }
    }
}

fn bit(bits: &[u64], frame_number: u64) -> bool {
    bits[(frame_number / FRAMES_PER_WORD) as usize] & (1 << (frame_number % FRAMES_PER_WORD)) != 0
}

fn set_bit(bits: &mut [u64], frame_number: u64, value: bool) {
    let word = &mut bits[(frame_number / FRAMES_PER_WORD) as usize];
    let mask = 1 << (frame_number % FRAMES_PER_WORD);
    if value {
        *word |= mask;
    } else {
        *word &= !mask;
    }
}

fn frame_of(frame_number: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(frame_number * FRAME_SIZE))
}

/// The kernel's frame allocator.
/// Taken with interrupts off: a handler on the same CPU could otherwise
/// spin on it forever.
static FRAME_ALLOCATOR: SpinLock<Option<FrameAllocator<'static>>> = SpinLock::new(None);

/// Installs the kernel's frame allocator (once, at boot).
pub fn install(allocator: FrameAllocator<'static>) {
    let mut slot = FRAME_ALLOCATOR.lock_irq();
    assert!(
        slot.is_none(),
        "the kernel frame allocator is installed once"
    );
    *slot = Some(allocator);
}

fn with_allocator<R>(
    operation: impl FnOnce(&mut FrameAllocator<'static>) -> R,
) -> Result<R, FrameAllocError> {
    FRAME_ALLOCATOR
        .lock_irq()
        .as_mut()
        .map(operation)
        .ok_or(FrameAllocError::NotInitialised)
}

/// Allocates one frame from `zone` of the kernel's allocator.
pub fn allocate_frame(zone: Zone) -> Result<PhysFrame, FrameAllocError> {
    with_allocator(|allocator| allocator.allocate(zone))?
}

/// Allocates `count` contiguous frames from `zone`, aligned to `alignment_frames`.
pub fn allocate_contiguous(
    zone: Zone,
    count: u64,
    alignment_frames: u64,
) -> Result<FrameRun, FrameAllocError> {
    with_allocator(|allocator| allocator.allocate_contiguous(zone, count, alignment_frames))?
}

/// Returns a frame to the kernel's allocator (panics on a double free).
pub fn free_frame(frame: PhysFrame) {
    with_allocator(|allocator| allocator.free(frame))
        .expect("a frame is freed only after the allocator handed it out");
}

/// Returns a run of frames to the kernel's allocator.
pub fn free_run(run: FrameRun) {
    with_allocator(|allocator| allocator.free_run(run))
        .expect("frames are freed only after the allocator handed them out");
}

/// Frame counts of all zones of the kernel's allocator.
pub fn total_counts() -> FrameCounts {
    with_allocator(|allocator| allocator.total_counts()).unwrap_or_default()
}

/// Frame counts of `zone` in the kernel's allocator.
pub fn counts(zone: Zone) -> FrameCounts {
    with_allocator(|allocator| allocator.counts(zone)).unwrap_or_default()
}
