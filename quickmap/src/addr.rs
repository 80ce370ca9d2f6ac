//! Physical and kernel virtual addresses, and the page size quickmap maps.

use core::fmt;

/// Size in bytes of the pages quickmap maps: one base page of the MMU.
pub const PAGE_SIZE: usize = 4096;

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct PhysAddr(pub u64);

/// A kernel virtual address: what `enter` returns and `remove` takes back.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct VirtAddr(pub usize);

impl PhysAddr {
    /// Whether the address is the first byte of a page.
    pub const fn is_page_aligned(self) -> bool {
        self.0 % PAGE_SIZE as u64 == 0
    }
}

impl VirtAddr {
    /// The address `bytes` further on.
    #[must_use]
    pub const fn add(self, bytes: usize) -> VirtAddr {
        VirtAddr(self.0 + bytes)
    }

    /// The address as a pointer, for callers that take on the obligations of raw access.
    pub const fn as_mut_ptr(self) -> *mut u8 {
        self.0 as *mut u8
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
