//! A host [`Platform`] and [`Mmu`] of our own: one CPU, and physical memory modelled as
//! a `Vec` of frames in this process.
//!
//! The model:
//!
//! - **physical memory**: `frames` page-aligned 4 KiB frames in one allocation; frame
//!   `i` is physical address `i * PAGE_SIZE`;
//! - **a direct map** of the first `direct_frames` frames, at their real addresses in
//!   this process (the allocation itself). quickmap returns a write-back page inside it
//!   at that address, which this process can dereference, so the unsafe slice views of
//!   [`Mapping`](quickmap::Mapping) work on such pages ([`HostMmu::is_host_address`]);
//! - **the window region**: one page-table entry per page of the region (windows and the
//!   guard pages after them), indexed by [`Window::region_page`], at [`WINDOW_BASE`], an
//!   address that is *not* this process's. Only the byte movers reach through it, by
//!   translating each address in the entries;
//! - **no TLB**: an entry takes effect when written and a cleared entry faults at once,
//!   so the invalidations only count. (quickmap's `sim` models per-CPU TLBs; this model
//!   is for code that only needs quickmap's behaviour on one CPU.)
//!
//! An access to an address the model does not translate panics with
//! `host_mmu: page fault`, as a kernel would fault.
//!
//! ## Why the byte movers are overridden
//!
//! quickmap's [`Mmu`] documentation: the default byte movers *dereference the kernel
//! virtual address* they are given. A window address such as `0xffff_c000_0000_0000` is
//! not mapped in this process, so a default left in place would crash (at best). All
//! four ([`read_bytes`](Mmu::read_bytes), [`write_bytes`](Mmu::write_bytes),
//! [`fill_bytes`](Mmu::fill_bytes), [`copy_bytes`](Mmu::copy_bytes)) translate each
//! page of the range and move the bytes in the model's memory with quickmap's
//! [`untyped`] helpers (volatile, never a reference).

use core::cell::{Cell, RefCell};
use core::ptr::NonNull;

use quickmap::{
    untyped, Config, ConfigError, CpuWindows, DirectMap, HeldPage, HeldRange, MemoryAttribute, Mmu,
    PhysAddr, Platform, QuickMap, VirtAddr, Window, WindowLayout, PAGE_SIZE,
};

/// Where the model's window region starts: a kernel address, not one of this process.
pub const WINDOW_BASE: VirtAddr = VirtAddr(0xffff_c000_0000_0000);

/// quickmap over the host model: [`OneCpu`], [`HostMmu`], `N` windows, strict.
pub type HostQuickMap<const N: usize> = QuickMap<OneCpu, HostMmu, N>;

/// quickmap with `N` windows over a fresh model of `frames` frames, the first
/// `direct_frames` of them direct-mapped.
///
/// Each instance gets per-CPU window state of its own, leaked (quickmap keeps it in a
/// `&'static [CpuWindows<N>]`; a kernel uses a `static` array). Sharing one array
/// between two instances that run at once would let them claim each other's windows.
///
/// # Errors
///
/// quickmap's [`ConfigError`] if it refuses the configuration (it does not for any
/// model that [`HostMmu::new`] accepts).
pub fn host_quickmap<const N: usize>(
    frames: usize,
    direct_frames: usize,
) -> Result<HostQuickMap<N>, ConfigError> {
    let layout = WindowLayout::guarded(WINDOW_BASE, N);
    let mmu = HostMmu::new(frames, direct_frames, layout, 1);
    let cpus: &'static [CpuWindows<N>] = Box::leak(Box::new([const { CpuWindows::new() }; 1]));
    QuickMap::new(mmu.config(), OneCpu::default(), mmu, cpus)
}

/// A machine with one CPU, in one host thread, that nothing preempts or interrupts.
///
/// It counts its critical sections, so a test can check that quickmap gave back every
/// one it took ([`critical_depth`](Self::critical_depth)).
#[derive(Debug, Default)]
pub struct OneCpu {
    depth: Cell<u32>,
}

impl OneCpu {
    /// Critical sections entered and not yet left.
    pub fn critical_depth(&self) -> u32 {
        self.depth.get()
    }
}

// SAFETY: 1. there is one CPU, and nothing preempts or migrates the one host thread that
// can use an `OneCpu` (it holds a `Cell`, so it is not `Sync`, and neither is a
// `QuickMap` that owns it): `current_cpu` is always 0; 2. 0 is below every CPU count
// quickmap accepts (at least 1); 3. the model has no interrupts.
unsafe impl Platform for OneCpu {
    fn current_cpu(&self) -> usize {
        0
    }

    fn critical_enter(&self) {
        self.depth.set(self.depth.get() + 1);
    }

    fn critical_exit(&self) {
        let depth = self.depth.get();
        assert!(depth > 0, "host_mmu: critical_exit without critical_enter");
        self.depth.set(depth - 1);
    }
}

/// One frame of the model's memory, page-aligned so that the direct map can be the
/// allocation itself.
#[derive(Clone)]
#[repr(C, align(4096))]
struct Frame([u8; PAGE_SIZE]);

const _: () = assert!(core::mem::align_of::<Frame>() == PAGE_SIZE);
const _: () = assert!(core::mem::size_of::<Frame>() == PAGE_SIZE);

/// What the model's hardware did, for tests that count events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCounters {
    /// Window entries written.
    pub entries_written: u64,
    /// Window entries cleared.
    pub entries_cleared: u64,
    /// Local single-page invalidations.
    pub invalidations: u64,
    /// Local full flushes.
    pub full_flushes: u64,
}

/// The model's MMU: its physical memory, direct map and window page-table entries.
/// See the [module documentation](self).
pub struct HostMmu {
    /// The frames, from `Box<[Frame]>::into_raw`; freed on drop. Every access goes
    /// through raw pointers derived from this one, never through a reference to a
    /// frame, so that a slice view of a direct-mapped page is the only reference.
    frames: NonNull<Frame>,
    frame_count: usize,
    direct_frames: usize,
    window_base: VirtAddr,
    /// One entry per page of the window region, by `Window::region_page`.
    entries: RefCell<Vec<Option<(PhysAddr, MemoryAttribute)>>>,
    counters: Cell<HostCounters>,
}

impl HostMmu {
    /// A model of `frames` frames of zeroes, the first `direct_frames` direct-mapped,
    /// with clear entries for the window region of `layout` for `cpus` CPUs
    /// ([`WindowLayout::region_pages`]: quickmap writes the entries of windows and of
    /// the guard pages views map, all inside it).
    ///
    /// # Panics
    ///
    /// If `frames` is zero or `direct_frames` is more than `frames`.
    pub fn new(frames: usize, direct_frames: usize, layout: WindowLayout, cpus: usize) -> HostMmu {
        assert!(
            frames > 0 && direct_frames <= frames,
            "host_mmu: {frames} frame(s) with {direct_frames} direct-mapped; give at least one \
             frame and direct-map at most all of them"
        );
        let memory: Box<[Frame]> = vec![Frame([0; PAGE_SIZE]); frames].into_boxed_slice();
        let frames_ptr = NonNull::from(Box::leak(memory)).cast::<Frame>();
        HostMmu {
            frames: frames_ptr,
            frame_count: frames,
            direct_frames,
            window_base: layout.base,
            entries: RefCell::new(vec![None; layout.region_pages(cpus)]),
            counters: Cell::new(HostCounters::default()),
        }
    }

    /// Bytes of physical memory, and quickmap's physical limit.
    pub fn memory_len(&self) -> usize {
        self.frame_count * PAGE_SIZE
    }

    /// The direct map: the first `direct_frames` frames at their addresses in this
    /// process; `None` without direct-mapped frames.
    pub fn direct_map(&self) -> Option<DirectMap> {
        (self.direct_frames > 0).then(|| DirectMap {
            phys_start: PhysAddr(0),
            len: (self.direct_frames * PAGE_SIZE) as u64,
            virt_start: VirtAddr(self.frames.as_ptr() as usize),
        })
    }

    /// quickmap's configuration for this model.
    pub fn config(&self) -> Config {
        Config {
            window_base: self.window_base,
            direct_map: self.direct_map(),
            phys_limit: PhysAddr(self.memory_len() as u64),
        }
    }

    /// Frame `index`, write-back.
    ///
    /// # Panics
    ///
    /// If the model has no frame `index`.
    pub fn frame(&self, index: usize) -> HostFrame {
        assert!(
            index < self.frame_count,
            "host_mmu: no frame {index} in a model of {} frames",
            self.frame_count
        );
        HostFrame {
            pa: PhysAddr((index * PAGE_SIZE) as u64),
            attribute: MemoryAttribute::WriteBack,
        }
    }

    /// The `index`-th frame above the direct map: reachable only through a window.
    ///
    /// # Panics
    ///
    /// If the model has no such frame.
    pub fn high_frame(&self, index: usize) -> HostFrame {
        self.frame(self.direct_frames + index)
    }

    /// `pages` physically contiguous frames from frame `first`.
    ///
    /// # Panics
    ///
    /// If the run reaches past the model's memory, or is empty.
    pub fn run(&self, first: usize, pages: usize) -> HostRun {
        assert!(
            pages > 0 && first + pages <= self.frame_count,
            "host_mmu: frames {first} .. {} are not all in a model of {} frames",
            first + pages,
            self.frame_count
        );
        HostRun {
            pa: PhysAddr((first * PAGE_SIZE) as u64),
            pages,
        }
    }

    /// Read physical memory directly, as a device's DMA would: the reference a test
    /// compares against.
    ///
    /// # Panics
    ///
    /// If the range reaches past the model's memory.
    pub fn phys_read(&self, pa: PhysAddr, dst: &mut [u8]) {
        let src = self.phys_ptr(pa, dst.len());
        // SAFETY: `phys_ptr` checked that the range lies in the live allocation.
        unsafe { untyped::read(src, dst) }
    }

    /// Write physical memory directly, as a device's DMA would.
    ///
    /// # Panics
    ///
    /// If the range reaches past the model's memory.
    pub fn phys_write(&self, pa: PhysAddr, src: &[u8]) {
        let dst = self.phys_ptr(pa, src.len());
        // SAFETY: `phys_ptr` checked that the range lies in the live allocation.
        unsafe { untyped::write(dst, src) }
    }

    /// The window entry for `va`, if it is present.
    pub fn entry(&self, va: VirtAddr) -> Option<(PhysAddr, MemoryAttribute)> {
        let page = va.0.checked_sub(self.window_base.0)? / PAGE_SIZE;
        self.entries.borrow().get(page).copied().flatten()
    }

    /// Window entries present now (zero once every mapping is gone).
    pub fn entries_present(&self) -> usize {
        self.entries.borrow().iter().flatten().count()
    }

    /// What the model's hardware did so far.
    pub fn counters(&self) -> HostCounters {
        self.counters.get()
    }

    /// Whether `va .. va + len` lies in the direct map, whose addresses are real
    /// addresses of this process: what the unsafe slice views of a
    /// [`Mapping`](quickmap::Mapping) need. Window addresses never are.
    pub fn is_host_address(&self, va: VirtAddr, len: usize) -> bool {
        let start = self.frames.as_ptr() as usize;
        let direct_len = self.direct_frames * PAGE_SIZE;
        va.0.checked_sub(start)
            .is_some_and(|offset| offset <= direct_len && len <= direct_len - offset)
    }

    fn count(&self, event: impl FnOnce(&mut HostCounters)) {
        let mut counters = self.counters.get();
        event(&mut counters);
        self.counters.set(counters);
    }

    /// A pointer to physical address `pa` of the model, checked to have `len` bytes
    /// of memory after it.
    fn phys_ptr(&self, pa: PhysAddr, len: usize) -> *mut u8 {
        let in_memory = usize::try_from(pa.0)
            .ok()
            .filter(|&start| start <= self.memory_len() && len <= self.memory_len() - start);
        let Some(start) = in_memory else {
            panic!(
                "host_mmu: {len} bytes at physical address {pa} run past the model's {} bytes",
                self.memory_len()
            )
        };
        self.frames.as_ptr().cast::<u8>().wrapping_add(start)
    }

    /// Translate `va` as the hardware would: the direct map, else the window entries;
    /// anything else is a page fault.
    fn translate(&self, va: VirtAddr, write: bool) -> PhysAddr {
        let direct = self.frames.as_ptr() as usize;
        if let Some(offset) =
            va.0.checked_sub(direct)
                .filter(|&offset| offset < self.direct_frames * PAGE_SIZE)
        {
            return PhysAddr(offset as u64);
        }
        match self.entry(va) {
            Some((pa, _)) => PhysAddr(pa.0 + (va.0 % PAGE_SIZE) as u64),
            None => panic!(
                "host_mmu: page fault: {} {va}, which has no translation",
                if write { "write to" } else { "read of" }
            ),
        }
    }

    /// Apply `access` to the host pointer of each piece of `len` bytes at `va` that
    /// lies in one page, with the offset of the piece in the range and its length.
    fn for_each_piece(
        &self,
        va: VirtAddr,
        len: usize,
        write: bool,
        mut access: impl FnMut(*mut u8, usize, usize),
    ) {
        let mut done = 0;
        while done < len {
            let here = va.add(done);
            let piece = (PAGE_SIZE - here.0 % PAGE_SIZE).min(len - done);
            let pa = self.translate(here, write);
            access(self.phys_ptr(pa, piece), done, piece);
            done += piece;
        }
    }
}

impl Drop for HostMmu {
    fn drop(&mut self) {
        let frames = core::ptr::slice_from_raw_parts_mut(self.frames.as_ptr(), self.frame_count);
        // SAFETY: the allocation came from `Box::leak` of a `Box<[Frame]>` of
        // `frame_count` frames in `new`, and is freed once, here; nothing borrows the
        // model any more (every mapping borrows it).
        drop(unsafe { Box::from_raw(frames) });
    }
}

// SAFETY: 1. after `set_window_pte`, the byte movers translate the window's page to `pa`
// (the model has no other accessor; attributes and permissions are recorded, not
// modelled); 2. `clear_window_pte` removes the entry, after which every access to the
// window's page panics with `host_mmu: page fault` (the model has no TLB to invalidate);
// 3. the byte movers touch exactly the model's bytes that the entries or the direct map
// name for the given addresses, through the checked pointers of `phys_ptr`.
unsafe impl Mmu for HostMmu {
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        let mut entries = self.entries.borrow_mut();
        let entry = &mut entries[window.region_page];
        assert!(
            entry.is_none(),
            "host_mmu: entry busy: region page {} (window {} of CPU {}) still maps {:?}",
            window.region_page,
            window.slot,
            window.cpu,
            entry
        );
        *entry = Some((pa, attribute));
        self.count(|c| c.entries_written += 1);
    }

    fn clear_window_pte(&self, window: Window) {
        self.entries.borrow_mut()[window.region_page] = None;
        self.count(|c| c.entries_cleared += 1);
    }

    fn invalidate_local(&self, _va: VirtAddr) {
        self.count(|c| c.invalidations += 1);
    }

    fn invalidate_all_local(&self) {
        self.count(|c| c.full_flushes += 1);
    }

    unsafe fn read_bytes(&self, src: VirtAddr, dst: &mut [u8]) {
        self.for_each_piece(src, dst.len(), false, |host, at, len| {
            // SAFETY: `host .. host + len` lies in the model's memory (`phys_ptr`).
            unsafe { untyped::read(host, &mut dst[at..at + len]) }
        });
    }

    unsafe fn write_bytes(&self, dst: VirtAddr, src: &[u8]) {
        self.for_each_piece(dst, src.len(), true, |host, at, len| {
            // SAFETY: as in `read_bytes`.
            unsafe { untyped::write(host, &src[at..at + len]) }
        });
    }

    unsafe fn fill_bytes(&self, dst: VirtAddr, len: usize, byte: u8) {
        self.for_each_piece(dst, len, true, |host, _, len| {
            // SAFETY: as in `read_bytes`.
            unsafe { untyped::fill(host, len, byte) }
        });
    }

    unsafe fn copy_bytes(&self, dst: VirtAddr, src: VirtAddr, len: usize) {
        // Through a buffer: two different addresses may name the same frame, and
        // `untyped::copy` must not be given physically overlapping ranges.
        let mut buffer = [0u8; 512];
        let mut done = 0;
        while done < len {
            let chunk = &mut buffer[..(len - done).min(512)];
            // SAFETY: forwarded from this function's contract, for a part of each range.
            unsafe {
                self.read_bytes(src.add(done), chunk);
                self.write_bytes(dst.add(done), chunk);
            }
            done += chunk.len();
        }
    }
}

/// A frame of a [`HostMmu`] ([`HostMmu::frame`]), with the attribute to map it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFrame {
    pa: PhysAddr,
    attribute: MemoryAttribute,
}

impl HostFrame {
    /// Its physical address.
    pub fn pa(&self) -> PhysAddr {
        self.pa
    }

    /// The same frame, to be mapped with `attribute`.
    #[must_use]
    pub fn with_attribute(self, attribute: MemoryAttribute) -> HostFrame {
        HostFrame { attribute, ..self }
    }
}

// SAFETY: 1. `pa` is a fixed field, page-aligned (`HostMmu::frame` makes it); 2. the model never frees, swaps or reuses a frame while it lives, and a mapping
// borrows the quickmap that owns the model; 3. the model does not model caching, so
// every attribute is one the frame may be mapped with.
unsafe impl HeldPage for HostFrame {
    fn phys_addr(&self) -> PhysAddr {
        self.pa
    }

    fn memory_attribute(&self) -> MemoryAttribute {
        self.attribute
    }
}

/// A physically contiguous run of frames of a [`HostMmu`] ([`HostMmu::run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostRun {
    pa: PhysAddr,
    pages: usize,
}

// SAFETY: 1. both fields are fixed, and `pa` is page-aligned (`HostMmu::run`); 2. and 3.
// as for `HostFrame`.
unsafe impl HeldRange for HostRun {
    fn phys_addr(&self) -> PhysAddr {
        self.pa
    }

    fn pages(&self) -> usize {
        self.pages
    }
}
