//! TCP reassembly of one direction, on segment sequences decoded from the
//! input: arbitrary offsets, lengths, truncated copies, acknowledgements,
//! FINs and forced hole skips, from an arbitrary initial sequence number
//! (so sequence numbers wrap).
//!
//! Every segment carries the bytes of one fixed stream at its offset, so
//! the check is exact. Each delivered byte must be the stream's byte at
//! the delivery position, which data and gaps both advance. Since all
//! copies agree, a conflict may be reported only for bytes whose first
//! copy was dropped unacknowledged, or for a FIN placed before data. The
//! buffer must stay within its bound.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use odoogate::capture::reassembly::{ConflictKind, Delivery, Reassembler};

const MAX_BUFFERED: usize = 4096;

#[derive(Arbitrary, Debug)]
enum Op {
    Segment { offset: u16, captured: u16, lost: u8 },
    Ack { offset: u16 },
    Fin { offset: u16 },
    SkipHole,
    Flush,
}

#[derive(Arbitrary, Debug)]
struct Input {
    isn: u32,
    after_syn: bool,
    ops: Vec<Op>,
}

/// Returns the stream's byte at `offset`. The period 251 is prime, so the
/// pattern does not line up with power-of-two offsets.
fn stream_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

fuzz_target!(|input: Input| {
    let mut reassembler = Reassembler::new(MAX_BUFFERED);
    // Both starts put stream offset 0 at `base`.
    let base = if input.after_syn { input.isn.wrapping_add(1) } else { input.isn };
    if input.after_syn {
        reassembler.start_after_syn(input.isn);
    } else {
        reassembler.start_at(base, true);
    }
    let mut deliveries = Vec::new();
    let mut checker = Checker::default();
    // The end of the furthest segment and the earliest FIN so far, as
    // stream offsets: data after a FIN may be reported once both exist.
    let mut data_end = 0u64;
    let mut first_fin = u64::MAX;

    for op in &input.ops {
        // A conflict is decided before the same push drops kept bytes, so
        // only bytes dropped by an earlier operation may excuse it.
        let unverified_before = reassembler.stats().unverified_bytes;
        match *op {
            Op::Segment { offset, captured, lost } => {
                let payload: Vec<u8> = (0..u64::from(captured)).map(|i| stream_byte(u64::from(offset) + i)).collect();
                let wire_len = u32::from(captured) + u32::from(lost);
                let seq = base.wrapping_add(u32::from(offset));
                reassembler.push(seq, Bytes::from(payload), wire_len, 0, &mut deliveries);
                data_end = data_end.max(u64::from(offset) + u64::from(wire_len));
            }
            Op::Ack { offset } => reassembler.ack(base.wrapping_add(u32::from(offset)), &mut deliveries),
            Op::Fin { offset } => {
                reassembler.fin(base.wrapping_add(u32::from(offset)), &mut deliveries);
                first_fin = first_fin.min(u64::from(offset));
            }
            Op::SkipHole => {
                reassembler.skip_hole(&mut deliveries);
            }
            Op::Flush => reassembler.flush(&mut deliveries),
        }
        checker.check(&deliveries, unverified_before, first_fin < data_end);
        deliveries.clear();
        assert!(reassembler.buffered_bytes() <= MAX_BUFFERED, "buffer beyond its bound");
    }
    reassembler.flush(&mut deliveries);
    checker.check(&deliveries, reassembler.stats().unverified_bytes, first_fin < data_end);
});

/// Follows the delivered stream position from offset 0.
#[derive(Default)]
struct Checker {
    position: u64,
}

impl Checker {
    /// Checks `deliveries`. An unverifiable copy is allowed only once the
    /// reassembler has dropped kept bytes unacknowledged (`unverified_bytes`),
    /// whose later copies it cannot compare, and data after a FIN only once
    /// a FIN came before some data (`fin_before_data`).
    fn check(&mut self, deliveries: &[Delivery], unverified_bytes: u64, fin_before_data: bool) {
        for delivery in deliveries {
            match delivery {
                Delivery::Data { bytes, .. } => {
                    for (index, byte) in bytes.iter().enumerate() {
                        assert_eq!(*byte, stream_byte(self.position + index as u64), "wrong byte delivered");
                    }
                    self.position += bytes.len() as u64;
                }
                Delivery::Gap { missing_bytes } => self.position += missing_bytes,
                Delivery::Conflict { offset, kind: ConflictKind::DataAfterFin } => {
                    assert!(fin_before_data, "data after a FIN reported at {offset} without a FIN before data");
                }
                Delivery::Conflict { offset, kind } => {
                    assert_eq!(*kind, ConflictKind::Unverifiable, "copies of the same bytes reported as different at {offset}");
                    assert!(unverified_bytes > 0, "a copy reported as unverifiable at {offset} before any was dropped");
                }
            }
        }
    }
}
