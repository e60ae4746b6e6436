//! The observe path's capture stage: eBPF programs, the ring buffer reader,
//! the flow table and TCP reassembly.
//!
//! `ebpf` loads and attaches the programs, `ring` turns ring buffer records
//! into [`CaptureEvent`]s on its own thread, `cgroup` maps cgroup ids to
//! paths; `flow` keeps one entry per TCP connection and feeds
//! `reassembly`, which turns segments into ordered bytes per direction.

pub mod cgroup;
pub mod ebpf;
pub mod event;
pub mod flow;
pub mod reassembly;
pub mod ring;

pub use event::{
    CaptureEvent, CaptureStats, Endpoint, FlowKey, FlowOrigin, GuardRefusal, Segment, TcpFlags,
};
