//! `#[repr(C)]` types shared by the eBPF programs and the daemon.
//!
//! Both sides compile this crate: the eBPF side for `bpfel-unknown-none`, the
//! daemon with the `user` feature, which implements `aya::Pod` for each type.
#![no_std]
