//! Physical and virtual addresses.
//!
//! The x86_64 kernel uses the `x86_64` crate's types; these are their
//! aarch64 counterparts with the methods the kernel uses. A virtual address
//! here is any 64-bit value: which ones translate is up to TCR_EL1 (TTBR0
//! below 2^48, TTBR1 at and above 0xffff_0000_0000_0000).

use core::ops::{Add, Sub};

/// A physical address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct PhysAddr(u64);

/// A virtual address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct VirtAddr(u64);

impl PhysAddr {
    pub const fn new(address: u64) -> Self {
        Self(address)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Rounds down to a multiple of `alignment` (a power of two).
    pub const fn align_down(self, alignment: u64) -> Self {
        Self(self.0 & !(alignment - 1))
    }

    /// Rounds up to a multiple of `alignment` (a power of two).
    pub const fn align_up(self, alignment: u64) -> Self {
        Self((self.0 + alignment - 1) & !(alignment - 1))
    }

    /// True when a multiple of `alignment` (a power of two).
    pub const fn is_aligned(self, alignment: u64) -> bool {
        self.0 & (alignment - 1) == 0
    }
}

/// A 4 KiB physical frame (x86_64's `PhysFrame<Size4KiB>` counterpart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysFrame(PhysAddr);

impl PhysFrame {
    /// The frame that contains `address`.
    pub const fn containing_address(address: PhysAddr) -> Self {
        Self(address.align_down(4096))
    }

    /// The frame's first byte.
    pub const fn start_address(self) -> PhysAddr {
        self.0
    }
}

impl VirtAddr {
    pub const fn new(address: u64) -> Self {
        Self(address)
    }

    pub fn from_ptr<T: ?Sized>(pointer: *const T) -> Self {
        Self(pointer.cast::<u8>() as u64)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub const fn as_ptr<T>(self) -> *const T {
        self.0 as *const T
    }

    pub const fn as_mut_ptr<T>(self) -> *mut T {
        self.0 as *mut T
    }

    /// Rounds down to a multiple of `alignment` (a power of two).
    pub const fn align_down(self, alignment: u64) -> Self {
        Self(self.0 & !(alignment - 1))
    }
}

impl Add<u64> for PhysAddr {
    type Output = Self;
    fn add(self, offset: u64) -> Self {
        Self(self.0 + offset)
    }
}

impl VirtAddr {
    /// True when a multiple of `alignment` (a power of two).
    pub const fn is_aligned(self, alignment: u64) -> bool {
        self.0 & (alignment - 1) == 0
    }
}

impl Add<u64> for VirtAddr {
    type Output = Self;
    fn add(self, offset: u64) -> Self {
        Self(self.0 + offset)
    }
}

impl Sub<VirtAddr> for VirtAddr {
    type Output = u64;
    fn sub(self, other: VirtAddr) -> u64 {
        self.0 - other.0
    }
}

impl Sub<u64> for VirtAddr {
    type Output = Self;
    fn sub(self, offset: u64) -> Self {
        Self(self.0 - offset)
    }
}

impl Sub<PhysAddr> for PhysAddr {
    type Output = u64;
    fn sub(self, other: PhysAddr) -> u64 {
        self.0 - other.0
    }
}

impl core::fmt::LowerHex for VirtAddr {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, formatter)
    }
}

impl core::fmt::LowerHex for PhysAddr {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, formatter)
    }
}

// quickmap's address types (x86_64's crate types have the same conversions,
// behind quickmap's `x86_64` feature).

impl From<PhysAddr> for quickmap::PhysAddr {
    fn from(address: PhysAddr) -> Self {
        quickmap::PhysAddr(address.0)
    }
}

impl From<PhysFrame> for quickmap::PhysAddr {
    fn from(frame: PhysFrame) -> Self {
        quickmap::PhysAddr(frame.0 .0)
    }
}

impl From<VirtAddr> for quickmap::VirtAddr {
    fn from(address: VirtAddr) -> Self {
        quickmap::VirtAddr(address.0 as usize)
    }
}
