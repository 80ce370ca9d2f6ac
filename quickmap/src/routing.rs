//! Where a page is reached: at its direct-map address, or through a slot of the
//! instance's region; and the checks every page that takes a slot passes. Shared by
//! both kinds of instance, [`QuickMap`](crate::QuickMap) (pinned windows) and
//! [`LocalQuickMap`](crate::LocalQuickMap) (thread-local slots), which differ only in
//! who owns their slots.

use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::layout::{ConfigError, DirectMap, WindowLayout};
use crate::page::MemoryAttribute;
use crate::quick_map::{Config, PAGE_SHIFT};
use crate::rules;

/// A [`Config`] checked against a region of slots and an MMU, in the numbers the
/// fast paths compare with: one subtraction and one comparison decide the direct
/// map's fast path, and one more refuses a page that is unaligned or out of range.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Routing {
    /// The direct map in frames (page numbers); zero frames when there is no direct
    /// map.
    direct_first_frame: u64,
    direct_frames: u64,
    direct_virt_start: usize,
    /// What turns a direct-mapped physical address into its virtual one: one add.
    direct_offset: usize,
    direct_map: Option<DirectMap>,
    /// `phys_limit` in frames.
    frame_limit: u64,
    /// Frames from the direct map's first one up to the limit (the limit itself when
    /// there is no direct map): what the usual page is checked against.
    frames_from_direct_start_to_limit: u64,
}

impl Routing {
    /// Check `config` for a region laid out as `layout` for `cpus` CPUs, served by an
    /// MMU that maps physical addresses below `mmu_limit`.
    pub(crate) fn new(
        config: &Config,
        layout: WindowLayout,
        cpus: usize,
        mmu_limit: PhysAddr,
    ) -> Result<Routing, ConfigError> {
        if config.phys_limit > mmu_limit {
            return Err(ConfigError::PhysLimitBeyondMmu {
                phys_limit: config.phys_limit,
                mmu_limit,
            });
        }
        layout.validate(cpus)?;
        let region_len = layout.region_len(cpus);
        if let Some(direct_map) = config.direct_map {
            let aligned =
                direct_map.phys_start.is_page_aligned() && direct_map.virt_start.0 % PAGE_SIZE == 0;
            if !aligned {
                return Err(ConfigError::DirectMapMisaligned { direct_map });
            }
            let dmap_end = direct_map
                .virt_start
                .0
                .saturating_add(direct_map.len as usize);
            if direct_map.virt_start.0 < layout.base.0 + region_len && layout.base.0 < dmap_end {
                return Err(ConfigError::DirectMapOverlapsWindows { direct_map });
            }
            // The fast path trusts a direct-mapped page to be mappable at all.
            let phys_end = direct_map.phys_start.0.checked_add(direct_map.len);
            if phys_end.is_none_or(|end| end > config.phys_limit.0) {
                return Err(ConfigError::DirectMapBeyondLimit {
                    direct_map,
                    phys_limit: config.phys_limit,
                });
            }
        }
        let dmap = config.direct_map;
        Ok(Routing {
            direct_first_frame: dmap.map_or(0, |d| d.phys_start.0 >> PAGE_SHIFT),
            direct_frames: dmap.map_or(0, |d| d.len >> PAGE_SHIFT),
            direct_virt_start: dmap.map_or(0, |d| d.virt_start.0),
            direct_offset: dmap.map_or(0, |d| d.virt_start.0.wrapping_sub(d.phys_start.0 as usize)),
            direct_map: dmap,
            // A page must lie wholly below the limit.
            frame_limit: config.phys_limit.0 >> PAGE_SHIFT,
            // The direct map lies below the limit (checked above), so no wrap.
            frames_from_direct_start_to_limit: (config.phys_limit.0 >> PAGE_SHIFT)
                - dmap.map_or(0, |d| d.phys_start.0 >> PAGE_SHIFT),
        })
    }

    /// Whether the page at `pa` may be reached at its direct-map address
    /// ([`direct_va`](Self::direct_va)): write-back and inside the direct map. When it
    /// must take a slot instead, it has passed the page checks first (which panic,
    /// naming the rule, for a page that is unaligned or not below the limit).
    ///
    /// A test, with the address apart: a caller that counts the hit first computes the
    /// address after the count, from memory, and needs no register for it meanwhile.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn takes_direct_map(&self, pa: PhysAddr, attribute: MemoryAttribute) -> bool {
        // Rotating moves the offset bits of an unaligned address to the top, so one
        // comparison refuses both an unaligned and an out-of-range address. Frames are
        // counted from the direct map's first one: the direct map's test and the limit's
        // share the subtraction.
        let direct_frame =
            pa.0.rotate_right(PAGE_SHIFT)
                .wrapping_sub(self.direct_first_frame);
        // Only write-back may use the direct map: its mapping is write-back, and mapping a
        // frame with two cache attributes at once is undefined on x86 (SDM 11.12.4). The
        // direct map lies below the limit (`new` checks it).
        if attribute == MemoryAttribute::WriteBack && direct_frame < self.direct_frames {
            return true;
        }
        if direct_frame >= self.frames_from_direct_start_to_limit {
            // Out of range, unaligned, or below the direct map's first frame.
            self.check_page_outside_direct_span(pa);
        }
        false
    }

    /// The direct-map address of a page for which
    /// [`takes_direct_map`](Self::takes_direct_map) holds: one add.
    #[inline(always)]
    pub(crate) fn direct_va(&self, pa: PhysAddr) -> VirtAddr {
        VirtAddr((pa.0 as usize).wrapping_add(self.direct_offset))
    }

    /// Whether `va` lies in the direct map.
    #[inline(always)]
    pub(crate) fn is_direct_address(&self, va: VirtAddr) -> bool {
        va.0.wrapping_sub(self.direct_virt_start) < (self.direct_frames as usize) << PAGE_SHIFT
    }

    /// The direct map, if any.
    pub(crate) fn direct_map(&self) -> Option<&DirectMap> {
        self.direct_map.as_ref()
    }

    /// A page that is not between the direct map's first frame and the limit: below
    /// that first frame it is fine (it takes a slot like any other); otherwise
    /// refused, naming the rule broken.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn check_page_outside_direct_span(&self, pa: PhysAddr) {
        self.check_window_page(pa);
    }

    /// Refuse `pa` unless it is the first byte of a page below the limit: what every
    /// page that takes a slot must be (a view's pages all do).
    #[inline]
    #[track_caller]
    pub(crate) fn check_window_page(&self, pa: PhysAddr) {
        if pa.0.rotate_right(PAGE_SHIFT) >= self.frame_limit {
            self.refuse_page(pa);
        }
    }

    /// Names which of the two page rules `frame >= frame_limit` broke.
    #[cold]
    #[inline(never)]
    #[track_caller]
    fn refuse_page(&self, pa: PhysAddr) -> ! {
        if !pa.is_page_aligned() {
            rules::unaligned_page(pa);
        }
        rules::page_out_of_range(pa, PhysAddr(self.frame_limit << PAGE_SHIFT))
    }
}
