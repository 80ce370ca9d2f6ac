//! quickmap (work in progress)
#![no_std]
