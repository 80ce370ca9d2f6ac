//! What a driver tells its device about a transfer, in pages it reaches through
//! quickmap: plain-data segment descriptors (moved with `read_obj`/`write_obj`,
//! quickmap's feature `zerocopy`) and a page checksum over the unsafe slice view.

use quickmap::{Invalidation, Mapping, Mmu, Platform, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// One DMA segment as the device reads it from its descriptor ring: FreeBSD's
/// `bus_dma_segment_t` (`ds_addr`, `ds_len`) plus the device's flags.
///
/// `#[repr(C)]` with no padding (8 + 4 + 4 bytes), so zerocopy derives the traits that
/// [`Mapping::read_obj`] (`FromBytes + IntoBytes`) and [`Mapping::write_obj`]
/// (`IntoBytes + Immutable`) need. Fields are in the host's byte order, as a device on
/// the host's bus expects; use zerocopy's `byteorder` types for a fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct DmaSegment {
    /// Bus address of the segment's first byte.
    pub addr: u64,
    /// Bytes in the segment.
    pub len: u32,
    /// [`DmaSegment::LAST`] on the last segment of a transfer.
    pub flags: u32,
}

impl DmaSegment {
    /// Bytes of one descriptor in the ring.
    pub const SIZE: usize = core::mem::size_of::<DmaSegment>();

    /// Flag of the last segment of a transfer.
    pub const LAST: u32 = 1;

    /// Descriptors that fit in one page of the ring.
    pub const PER_PAGE: usize = PAGE_SIZE / Self::SIZE;
}

/// The Internet checksum (RFC 1071) of `bytes`: the one's complement of the
/// one's-complement sum of its big-endian 16-bit words, an odd last byte padded with zero.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = bytes.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum of the page `mapping` maps, computed in place over
/// [`Mapping::as_slice`] (no copy of the page).
///
/// # Safety
///
/// As for [`Mapping::as_slice`], for the duration of the call:
/// 1. no other mapping of the frame is written (another window, the direct map, a user
///    mapping, a device's DMA);
/// 2. the caller writes nothing through `mapping` meanwhile (this function does not);
/// 3. the page is memory, not device registers;
/// 4. `mapping`'s address is one this CPU can dereference (a kernel's window or direct
///    map; with the host model of [`host_mmu`](crate::host_mmu), a direct-mapped page:
///    [`HostMmu::is_host_address`](crate::host_mmu::HostMmu::is_host_address)).
pub unsafe fn page_checksum<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    mapping: &Mapping<'_, '_, P, M, N, I>,
) -> u16 {
    // SAFETY: the caller's promises 1, 3 and 4 are `as_slice`'s first, third and fourth;
    // its second holds because `bytes` lives only for this call, which writes nothing
    // through the guard, and the caller writes nothing meanwhile (promise 2).
    let bytes = unsafe { mapping.as_slice() };
    internet_checksum(bytes)
}

/// The same checksum from a copy of the page, through the safe accessors: what a
/// caller who cannot make [`page_checksum`]'s promises does.
pub fn page_checksum_copied<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    mapping: &Mapping<'_, '_, P, M, N, I>,
) -> u16 {
    let mut page = [0u8; PAGE_SIZE];
    mapping.read(0, &mut page);
    internet_checksum(&page)
}
