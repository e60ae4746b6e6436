//! Reassembly of one direction of a TCP connection into ordered bytes.
//!
//! The capture sees segments roughly, but not exactly, in wire order; the
//! loopback interface shows retransmissions; and a record lost in the
//! kernel ring buffer is never sent again, because the packet itself did
//! reach the application. The [`Reassembler`] therefore delivers the
//! contiguous bytes it has, buffers out-of-order segments up to a bound, and
//! declares a gap whenever the missing bytes can no longer arrive.
//!
//! A client that crafts packets can send two different copies of the same
//! bytes, one of which the receiver's kernel drops (a bad checksum, a stale
//! timestamp, a segment outside the window) while the capture, which runs
//! before those checks, copies both. The capture cannot tell which copy the
//! server read. So the reassembler keeps the bytes it delivered until the
//! peer acknowledges them, compares every later copy of buffered or kept
//! bytes with the first, and reports a difference as a
//! [`Delivery::Conflict`]. A FIN the kernel drops works the same way: data
//! after it shows that one of the two was not what the receiver read, so
//! the reassembler reports the conflict and reads on instead of ending the
//! stream there.
//!
//! Sequence numbers are 32-bit and wrap. Every segment is placed on a 64-bit
//! stream offset (bytes since the stream start) by serial-number arithmetic
//! (RFC 1982) relative to the next expected byte, so comparisons stay correct
//! across the wrap as long as data lies within 2^31 of that byte.

use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// Maximum distance (bytes) ahead of the next expected byte at which a
/// segment or an acknowledgement is believed. It is the largest TCP window
/// (65535 << 14, RFC 7323 §2.3), rounded up; anything further is taken as a
/// stray packet instead of a reason to declare a gigabyte gap.
const MAX_WINDOW: u64 = 1 << 30;

/// Maximum number of buffered pieces per direction. It bounds the map's
/// per-entry overhead, which the byte bound alone does not when many tiny
/// segments arrive out of order.
pub const MAX_PIECES: usize = 1024;

/// An item handed on by the reassembler, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Contiguous bytes, with the capture timestamp of the segment that
    /// carried them.
    Data { bytes: Bytes, timestamp_ns: u64 },
    /// Bytes that will never be seen: the stream continues after them.
    Gap { missing_bytes: u64 },
    /// A later copy of the bytes at stream offset `offset` was checked
    /// against the first, which the reassembler delivered or buffered, and
    /// failed: the bytes delivered there may not be those the peer read.
    Conflict { offset: u64, kind: ConflictKind },
}

/// The reason bytes of a stream may not be those the receiver read: a later
/// copy of delivered or buffered bytes that failed its check, or a segment
/// that the receiver's kernel reads differently from the capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictKind {
    /// Its bytes differ from the first copy's.
    Differs,
    /// The first copy was dropped before the peer acknowledged it, to bound
    /// memory, so the copies cannot be compared. An ordinary retransmission
    /// gives this when more than the buffer bound is unacknowledged.
    Unverifiable,
    /// Data came after the sender's FIN, or a FIN came before data already
    /// seen. A TCP sender never sends data after its FIN, so one of the two
    /// was crafted for the receiver's kernel to drop.
    DataAfterFin,
    /// A segment carried the URG flag. Linux takes the urgent byte out of
    /// the data an application reads unless the application sets
    /// `SO_OOBINLINE`, which Odoo does not. The capture keeps the byte, so
    /// the bytes from there on may not be those the receiver read.
    UrgentData,
    /// A segment came as IP fragments, which the capture does not
    /// reassemble. It has the first fragment's part of the payload and not
    /// the rest, so it does not read the segment at all.
    IpFragment,
}

impl ConflictKind {
    /// Returns the `ODOOGATE_ERROR_CODE` of the records it gives.
    pub fn code(self) -> &'static str {
        match self {
            Self::Differs => "conflicting_copies",
            Self::Unverifiable => "unverifiable_copy",
            Self::DataAfterFin => "data_after_fin",
            Self::UrgentData => "urgent_data",
            Self::IpFragment => "ip_fragments",
        }
    }
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub delivered_bytes: u64,
    /// Bytes dropped because an earlier copy of them had been seen.
    pub duplicate_bytes: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Segments and acknowledgements ignored because they lay more than
    /// the maximum TCP window away from the next expected byte.
    pub out_of_window: u64,
    /// Segments whose bytes differed from an earlier copy of them, covered
    /// bytes whose first copy was dropped unacknowledged, disagreed with a
    /// FIN about where the stream ends, or carried the URG flag.
    pub conflicts: u64,
    /// Delivered bytes dropped before the peer acknowledged them, so a later
    /// copy of them cannot be compared.
    pub unverified_bytes: u64,
}

/// A buffered range of the stream.
#[derive(Clone, Debug)]
enum Piece {
    Data {
        bytes: Bytes,
        timestamp_ns: u64,
    },
    /// Bytes that were on the wire but not captured (a truncated copy).
    Lost {
        len: u64,
    },
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Data { bytes, .. } => bytes.len() as u64,
            Piece::Lost { len } => *len,
        }
    }

    fn buffered_bytes(&self) -> usize {
        match self {
            Piece::Data { bytes, .. } => bytes.len(),
            Piece::Lost { .. } => 0,
        }
    }

    /// Returns the part of this piece from `from` to `to` (offsets inside
    /// the piece).
    fn slice(&self, from: u64, to: u64) -> Piece {
        match self {
            Piece::Data {
                bytes,
                timestamp_ns,
            } => {
                let part = bytes.slice(from as usize..to as usize);
                // A small slice of a large capture buffer would keep the whole
                // buffer alive. Copying it keeps real memory within twice the
                // bytes counted against the bound.
                let bytes = if part.len() * 2 < bytes.len() {
                    Bytes::copy_from_slice(&part)
                } else {
                    part
                };
                Piece::Data {
                    bytes,
                    timestamp_ns: *timestamp_ns,
                }
            }
            Piece::Lost { .. } => Piece::Lost { len: to - from },
        }
    }
}

/// Reassembles one direction of a TCP connection.
///
/// Overlapping data follows a first-copy-wins rule: once bytes at an offset
/// have been buffered or delivered, a later segment covering the same
/// offset contributes only the bytes not yet seen, even if its content
/// differs. The same holds for bytes a truncated capture lost: a later
/// retransmission does not fill them in. A copy that differs from the
/// first is reported as a [`Delivery::Conflict`] while the first is
/// buffered, or delivered and not acknowledged yet.
#[derive(Debug)]
pub struct Reassembler {
    max_buffered_bytes: usize,
    /// Sequence number of stream offset 0, once the stream has started.
    origin: Option<u32>,
    mid_stream: bool,
    /// Stream offset of the next byte to deliver.
    next: u64,
    /// Out-of-order pieces by stream offset; none overlap, all start after
    /// `next`.
    pieces: BTreeMap<u64, Piece>,
    buffered_bytes: usize,
    /// Stream offset of the FIN, which is the end of the data.
    fin: Option<u64>,
    /// Stream offset just past the furthest byte of any segment seen. Unlike
    /// `next`, an acknowledgement beyond the data does not move it.
    data_end: u64,
    /// The conflict kinds reported once per stream so far (data after a
    /// FIN, urgent data, IP fragments), one bit each (see
    /// [`Reassembler::report_once`]).
    reported_kinds: u8,
    /// Delivered data that the peer has not acknowledged yet, by stream
    /// offset, oldest first, kept to compare with later copies.
    unacked: VecDeque<(u64, Bytes)>,
    unacked_bytes: usize,
    /// Stream offset up to which the peer has acknowledged the bytes.
    acked: u64,
    /// End of the delivered bytes dropped from `unacked` before the peer
    /// acknowledged them. A later copy of bytes between `acked` and this
    /// offset has nothing to be compared with.
    unverified_end: u64,
    stats: ReassemblyStats,
}

// === impl Reassembler ===

impl Reassembler {
    /// Creates a reassembler that has not seen its stream start yet and
    /// buffers at most `max_buffered_bytes` out-of-order bytes.
    pub fn new(max_buffered_bytes: usize) -> Self {
        Self {
            max_buffered_bytes,
            origin: None,
            mid_stream: false,
            next: 0,
            pieces: BTreeMap::new(),
            buffered_bytes: 0,
            fin: None,
            data_end: 0,
            reported_kinds: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            acked: 0,
            unverified_end: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// Starts the stream right after a SYN with sequence number `isn`.
    /// Does nothing once the stream has started.
    pub fn start_after_syn(&mut self, isn: u32) {
        self.start_at(isn.wrapping_add(1), false);
    }

    /// Starts the stream at sequence number `seq`, known to be the first
    /// data byte (for instance the acknowledgement in a SYN-ACK). Does
    /// nothing once the stream has started.
    pub fn start_at(&mut self, seq: u32, mid_stream: bool) {
        if self.origin.is_none() {
            self.origin = Some(seq);
            self.mid_stream = mid_stream;
        }
    }

    pub fn is_started(&self) -> bool {
        self.origin.is_some()
    }

    /// Returns whether the stream started at an arbitrary segment instead
    /// of its SYN, so its first bytes may sit inside a message.
    pub fn is_mid_stream(&self) -> bool {
        self.mid_stream
    }

    /// Returns whether the FIN was seen and every byte before it delivered
    /// or declared lost.
    pub fn is_finished(&self) -> bool {
        self.fin.is_some_and(|fin| self.next >= fin)
    }

    /// Bytes held in out-of-order pieces.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Bytes held in out-of-order pieces and in delivered bytes kept until
    /// the peer acknowledges them.
    pub fn held_bytes(&self) -> usize {
        self.buffered_bytes + self.unacked_bytes
    }

    /// Frees memory under the flow table's total bound: drops the delivered
    /// bytes kept for comparison, or when none are kept, gives up the first
    /// hole. Dropping kept bytes loses no data, so it comes first. Returns
    /// false when nothing was held.
    pub fn shed(&mut self, out: &mut Vec<Delivery>) -> bool {
        if self.unacked.is_empty() {
            return self.skip_hole(out);
        }
        while self.drop_oldest_kept() {}
        true
    }

    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Returns the stream offset up to which the peer has acknowledged the
    /// bytes, 0 before any acknowledgement.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Adds a segment whose first payload byte has sequence number `seq`.
    /// `wire_len` is the payload length on the wire; when the capture kept
    /// fewer bytes, the captured ones are delivered and the rest becomes a
    /// gap. A stream that has not started yet starts here, mid-stream.
    pub fn push(
        &mut self,
        seq: u32,
        payload: Bytes,
        wire_len: u32,
        timestamp_ns: u64,
        out: &mut Vec<Delivery>,
    ) {
        self.start_at(seq, true);
        let Some(start) = self.signed_offset(seq) else {
            return;
        };

        // Bytes before the stream start are cut off, because they would
        // otherwise be read as its first bytes. The receiver's TCP drops a
        // segment that ends before its next expected byte and reads one that
        // starts before it from that byte on.
        let before_start = start.min(0).unsigned_abs();
        let wire_len = u64::from(wire_len);
        if before_start >= wire_len {
            return;
        }
        let start = start.max(0) as u64;
        let captured = (payload.len() as u64).min(wire_len);
        let skipped = before_start.min(captured);
        let payload = payload.slice(skipped as usize..captured as usize);
        self.stats.duplicate_bytes += skipped;
        let wire_len = wire_len - before_start;
        let captured = captured - skipped;
        self.data_end = self.data_end.max(start + wire_len);
        if let Some(fin) = self.fin
            && start + wire_len > fin
        {
            self.report_data_after_fin(fin, out);
        }
        if captured > 0
            && let Some(kind) = self.check_copy(start, &payload)
        {
            self.stats.conflicts += 1;
            out.push(Delivery::Conflict { offset: start, kind });
        }
        if captured > 0 {
            self.insert(
                start,
                Piece::Data {
                    bytes: payload,
                    timestamp_ns,
                },
            );
        }
        if wire_len > captured {
            self.insert(
                start + captured,
                Piece::Lost {
                    len: wire_len - captured,
                },
            );
        }

        self.deliver_ready(out);
        self.enforce_bounds(out);
    }

    /// Records the peer's acknowledgement `ack`: the peer has received every
    /// byte before it, so a hole before it will never be filled and becomes
    /// a gap.
    pub fn ack(&mut self, ack: u32, out: &mut Vec<Delivery>) {
        if self.origin.is_none() {
            return;
        }
        let Some(mut acked) = self.offset_in_window(ack) else {
            return;
        };
        if let Some(fin) = self.fin {
            // The FIN takes one sequence number that carries no data.
            acked = acked.min(fin);
        }
        self.declare_lost_until(acked, out);
        self.forget_acked(acked);
    }

    /// Records a FIN with sequence number `seq`, the end of the data. Holes
    /// before it become gaps once the peer acknowledges the FIN (see
    /// [`Reassembler::ack`]), not here, because a FIN that the receiver's
    /// kernel dropped must not make the real bytes after a hole
    /// duplicates. A FIN before the end of a segment already seen is
    /// reported as a [`ConflictKind::DataAfterFin`] conflict and ignored, and
    /// one before the stream start is ignored.
    pub fn fin(&mut self, seq: u32, out: &mut Vec<Delivery>) {
        self.start_at(seq, true);
        if self.fin.is_some() {
            return;
        }
        // A FIN before the stream start belongs to an earlier connection on
        // the same ports, and the receiver drops it as out of its window.
        let Some(end) = self.signed_offset(seq).and_then(|offset| u64::try_from(offset).ok()) else {
            return;
        };
        // The receiver's acknowledgement of the FIN can come before the FIN
        // (the capture lost the FIN's record and saw its retransmission),
        // so the bytes it skipped do not count as data after the FIN.
        if self.data_end > end {
            self.report_data_after_fin(end, out);
            return;
        }
        self.fin = Some(end);
    }

    /// Reports data beyond the FIN at stream offset `fin`, once per stream.
    /// The FIN stops counting as the end of the stream, so the data is read
    /// and the records of its calls carry the conflict.
    fn report_data_after_fin(&mut self, fin: u64, out: &mut Vec<Delivery>) {
        self.fin = None;
        self.report_once(ConflictKind::DataAfterFin, fin, out);
    }

    /// Reports a segment with sequence number `seq` whose bytes the
    /// capture cannot read as the receiver does: one with the URG flag
    /// ([`ConflictKind::UrgentData`]) or one that came as IP fragments
    /// ([`ConflictKind::IpFragment`]). Each kind is reported once per
    /// stream, as a conflict at the segment's offset. A stream that has not
    /// started yet starts here, mid-stream, as in [`Reassembler::push`], so
    /// the first segment of a flow joined mid-stream is checked too.
    pub fn report_segment(&mut self, kind: ConflictKind, seq: u32, out: &mut Vec<Delivery>) {
        if !matches!(kind, ConflictKind::UrgentData | ConflictKind::IpFragment) {
            return;
        }
        self.start_at(seq, true);
        if self.was_reported(kind) {
            return;
        }
        let Some(offset) = self.offset_in_window(seq) else {
            return;
        };
        self.report_once(kind, offset, out);
    }

    /// Tells whether a `kind` conflict was reported on this stream.
    fn was_reported(&self, kind: ConflictKind) -> bool {
        self.reported_kinds & (1 << kind as u8) != 0
    }

    /// Reports a `kind` conflict at stream offset `offset` unless one was
    /// reported on this stream already.
    fn report_once(&mut self, kind: ConflictKind, offset: u64, out: &mut Vec<Delivery>) {
        if self.was_reported(kind) {
            return;
        }
        self.reported_kinds |= 1 << kind as u8;
        self.stats.conflicts += 1;
        out.push(Delivery::Conflict { offset, kind });
    }

    /// Tells whether a RST with sequence number `seq` from this stream's
    /// sender would reset the connection. Linux resets only on a RST whose
    /// sequence number is exactly the next one it expects, and sends a
    /// challenge ACK for any other (RFC 5961, section 3.2). That is the end
    /// of the sender's data, or one past its FIN. A stream not started yet
    /// takes any RST, because there is nothing to compare with.
    pub fn accepts_reset(&self, seq: u32) -> bool {
        let Some(origin) = self.origin else {
            return true;
        };
        let expected = [Some(self.next.max(self.data_end)), self.fin.map(|fin| fin + 1)];
        expected.into_iter().flatten().any(|offset| origin.wrapping_add(offset as u32) == seq)
    }

    /// Delivers everything buffered, declaring each hole a gap. Used when
    /// the connection is reset, expires or is evicted.
    pub fn flush(&mut self, out: &mut Vec<Delivery>) {
        while self.skip_hole(out) {}
    }

    /// Declares the hole before the first buffered piece a gap and delivers
    /// what then became contiguous. Returns false when nothing is buffered.
    pub fn skip_hole(&mut self, out: &mut Vec<Delivery>) -> bool {
        let Some(&first) = self.pieces.keys().next() else {
            return false;
        };
        self.declare_gap(first.saturating_sub(self.next), out);
        self.deliver_ready(out);
        true
    }

    /// Converts `seq` to a stream offset, or returns `None` (and counts it)
    /// when it lies too far ahead to be believed. Offsets before the stream
    /// start map to 0.
    fn offset_in_window(&mut self, seq: u32) -> Option<u64> {
        self.signed_offset(seq).map(|offset| offset.max(0) as u64)
    }

    /// Converts `seq` to a stream offset that is negative before the stream
    /// start, or returns `None` (and counts it) when it lies too far ahead
    /// to be believed.
    fn signed_offset(&mut self, seq: u32) -> Option<i64> {
        let origin = self.origin?;
        let next_seq = origin.wrapping_add(self.next as u32);
        let delta = i64::from(seq.wrapping_sub(next_seq) as i32);
        if delta > MAX_WINDOW as i64 {
            self.stats.out_of_window += 1;
            return None;
        }
        Some(self.next as i64 + delta)
    }

    /// Inserts `piece` at stream offset `start`, keeping only the parts no
    /// earlier copy covered.
    fn insert(&mut self, start: u64, piece: Piece) {
        let end = start + piece.len();
        let limit = self.fin.map_or(end, |fin| end.min(fin));
        let mut cursor = start.max(self.next);
        let mut fresh = Vec::new();

        if let Some((&key, before)) = self.pieces.range(..cursor).next_back() {
            cursor = cursor.max(key + before.len());
        }
        if cursor < limit {
            for (&key, existing) in self.pieces.range(cursor..limit) {
                if key > cursor {
                    fresh.push((cursor, key));
                }
                cursor = cursor.max(key + existing.len());
            }
        }
        if cursor < limit {
            fresh.push((cursor, limit));
        }

        let mut inserted = 0;
        for (from, to) in fresh {
            let part = piece.slice(from - start, to - start);
            self.buffered_bytes += part.buffered_bytes();
            inserted += to - from;
            self.pieces.insert(from, part);
        }
        if let Piece::Data { .. } = piece {
            self.stats.duplicate_bytes += (limit.max(start) - start).saturating_sub(inserted);
        }
    }

    /// Checks `bytes` at stream offset `start` against the copies seen
    /// earlier: delivered bytes not acknowledged yet, and buffered ones.
    /// Returns how the check failed, or `None` when it passed.
    fn check_copy(&self, start: u64, bytes: &Bytes) -> Option<ConflictKind> {
        let end = start + bytes.len() as u64;
        let differs = |at: u64, seen: &[u8]| {
            let from = at.max(start);
            let to = (at + seen.len() as u64).min(end);
            from < to && seen[(from - at) as usize..(to - at) as usize] != bytes[(from - start) as usize..(to - start) as usize]
        };
        if start < self.next {
            // Kept pieces are in offset order and do not overlap.
            let first = self.unacked.partition_point(|(at, seen)| at + seen.len() as u64 <= start);
            let mut overlapping = self.unacked.range(first..).take_while(|(at, _)| *at < end);
            if overlapping.any(|(at, seen)| differs(*at, seen)) {
                return Some(ConflictKind::Differs);
            }
        }
        let earlier = self.pieces.range(..start).next_back();
        let buffered_differs = earlier.into_iter().chain(self.pieces.range(start..end)).any(|(&at, piece)| match piece {
            Piece::Data { bytes: seen, .. } => differs(at, seen),
            Piece::Lost { .. } => false,
        });
        if buffered_differs {
            return Some(ConflictKind::Differs);
        }
        // A client could send more than the bound in copies the kernel
        // drops, to push its first copy out before the real one comes, so
        // a copy that cannot be checked fails too.
        (start < self.unverified_end && end > self.acked).then_some(ConflictKind::Unverifiable)
    }

    /// Keeps delivered `bytes` at stream offset `at` until the peer
    /// acknowledges them, dropping the oldest beyond the buffer bound.
    fn keep_unacked(&mut self, at: u64, bytes: Bytes) {
        self.unacked_bytes += bytes.len();
        self.unacked.push_back((at, bytes));
        while self.unacked_bytes > self.max_buffered_bytes && self.drop_oldest_kept() {}
    }

    /// Drops the oldest kept bytes before the peer acknowledged them, so
    /// later copies of them count as uncheckable. Returns false when none
    /// are kept.
    fn drop_oldest_kept(&mut self) -> bool {
        let Some((at, oldest)) = self.unacked.pop_front() else {
            return false;
        };
        self.unacked_bytes -= oldest.len();
        self.stats.unverified_bytes += oldest.len() as u64;
        self.unverified_end = self.unverified_end.max(at + oldest.len() as u64);
        true
    }

    /// Drops kept bytes before stream offset `acked`.
    fn forget_acked(&mut self, acked: u64) {
        self.acked = self.acked.max(acked);
        while let Some((at, bytes)) = self.unacked.front() {
            let end = at + bytes.len() as u64;
            if end > acked {
                if *at < acked {
                    let cut = (acked - at) as usize;
                    let rest = bytes.slice(cut..);
                    self.unacked_bytes -= cut;
                    self.unacked[0] = (acked, rest);
                }
                return;
            }
            self.unacked_bytes -= bytes.len();
            self.unacked.pop_front();
        }
    }

    /// Delivers the pieces that start at the next expected byte.
    fn deliver_ready(&mut self, out: &mut Vec<Delivery>) {
        while let Some(entry) = self.pieces.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            let piece = entry.remove();
            self.buffered_bytes -= piece.buffered_bytes();
            self.next += piece.len();
            match piece {
                Piece::Data {
                    bytes,
                    timestamp_ns,
                } => {
                    self.stats.delivered_bytes += bytes.len() as u64;
                    self.keep_unacked(self.next - bytes.len() as u64, bytes.clone());
                    out.push(Delivery::Data {
                        bytes,
                        timestamp_ns,
                    });
                }
                Piece::Lost { len } => self.record_gap(len, out),
            }
        }
    }

    /// Declares every byte before stream offset `end` that is not buffered
    /// lost, delivering the buffered pieces in between.
    fn declare_lost_until(&mut self, end: u64, out: &mut Vec<Delivery>) {
        self.deliver_ready(out);
        while self.next < end {
            let hole_end = self
                .pieces
                .keys()
                .next()
                .map_or(end, |&first| first.min(end));
            self.declare_gap(hole_end - self.next, out);
            self.deliver_ready(out);
        }
    }

    fn declare_gap(&mut self, missing_bytes: u64, out: &mut Vec<Delivery>) {
        self.next += missing_bytes;
        self.record_gap(missing_bytes, out);
    }

    /// Emits a gap, merging it with a gap emitted just before.
    fn record_gap(&mut self, missing_bytes: u64, out: &mut Vec<Delivery>) {
        if missing_bytes == 0 {
            return;
        }
        self.stats.gap_bytes += missing_bytes;
        if let Some(Delivery::Gap {
            missing_bytes: previous,
        }) = out.last_mut()
        {
            *previous += missing_bytes;
            return;
        }
        self.stats.gaps += 1;
        out.push(Delivery::Gap { missing_bytes });
    }

    /// Gives up on holes, oldest first, while the buffer exceeds its bounds.
    fn enforce_bounds(&mut self, out: &mut Vec<Delivery>) {
        while self.buffered_bytes > self.max_buffered_bytes || self.pieces.len() > MAX_PIECES {
            if !self.skip_hole(out) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ISN: u32 = 1000;

    fn started(max_buffered_bytes: usize) -> Reassembler {
        let mut stream = Reassembler::new(max_buffered_bytes);
        stream.start_after_syn(ISN);
        stream
    }

    /// Sequence number of stream offset `offset` after a SYN with `isn`.
    fn seq(isn: u32, offset: usize) -> u32 {
        isn.wrapping_add(1).wrapping_add(offset as u32)
    }

    fn push(stream: &mut Reassembler, offset: usize, data: &[u8], out: &mut Vec<Delivery>) {
        let len = data.len() as u32;
        stream.push(seq(ISN, offset), Bytes::copy_from_slice(data), len, 0, out);
    }

    fn data_of(out: &[Delivery]) -> Vec<u8> {
        out.iter()
            .flat_map(|d| match d {
                Delivery::Data { bytes, .. } => bytes.to_vec(),
                Delivery::Gap { .. } | Delivery::Conflict { .. } => Vec::new(),
            })
            .collect()
    }

    fn gaps_of(out: &[Delivery]) -> Vec<u64> {
        out.iter()
            .filter_map(|d| match d {
                Delivery::Gap { missing_bytes } => Some(*missing_bytes),
                Delivery::Data { .. } | Delivery::Conflict { .. } => None,
            })
            .collect()
    }

    #[test]
    fn in_order_segments_are_delivered_at_once() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"GET / ", &mut out);
        push(&mut stream, 6, b"HTTP/1.1", &mut out);
        assert_eq!(data_of(&out), b"GET / HTTP/1.1");
        assert_eq!(stream.buffered_bytes(), 0);
        assert!(!stream.is_mid_stream());
    }

    #[test]
    fn out_of_order_segment_waits_for_hole() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 3, b"def", &mut out);
        assert!(out.is_empty());
        assert_eq!(stream.buffered_bytes(), 3);
        push(&mut stream, 0, b"abc", &mut out);
        assert_eq!(data_of(&out), b"abcdef");
        assert_eq!(stream.buffered_bytes(), 0);
    }

    #[test]
    fn retransmission_is_trimmed() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abcdef", &mut out);
        push(&mut stream, 2, b"cdefgh", &mut out);
        assert_eq!(data_of(&out), b"abcdefgh");
        assert_eq!(stream.stats().duplicate_bytes, 4);
    }

    #[test]
    fn overlapping_copy_loses_to_first() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 2, b"CD", &mut out);
        push(&mut stream, 0, b"abcdef", &mut out);
        assert_eq!(data_of(&out), b"abCDef");
    }

    #[test]
    fn sequence_number_wraps_around() {
        let isn = u32::MAX - 2;
        let mut stream = Reassembler::new(1024);
        stream.start_after_syn(isn);
        let mut out = Vec::new();
        stream.push(seq(isn, 4), Bytes::from_static(b"efgh"), 4, 0, &mut out);
        stream.push(seq(isn, 0), Bytes::from_static(b"abcd"), 4, 0, &mut out);
        assert_eq!(seq(isn, 4), 2);
        assert_eq!(data_of(&out), b"abcdefgh");
    }

    fn conflict_kinds(out: &[Delivery]) -> Vec<ConflictKind> {
        out.iter()
            .filter_map(|d| match d {
                Delivery::Conflict { kind, .. } => Some(*kind),
                Delivery::Data { .. } | Delivery::Gap { .. } => None,
            })
            .collect()
    }

    fn conflicts_of(out: &[Delivery]) -> Vec<u64> {
        out.iter()
            .filter_map(|d| match d {
                Delivery::Conflict { offset, .. } => Some(*offset),
                Delivery::Data { .. } | Delivery::Gap { .. } => None,
            })
            .collect()
    }

    #[test]
    fn differing_copy_of_delivered_bytes_conflicts() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abcdef", &mut out);
        push(&mut stream, 2, b"cdXf", &mut out);
        assert_eq!(data_of(&out), b"abcdef", "the first copy is kept");
        assert_eq!(conflicts_of(&out), vec![2]);
        assert_eq!(conflict_kinds(&out), vec![ConflictKind::Differs]);
        assert_eq!(stream.stats().conflicts, 1);
    }

    #[test]
    fn same_copy_does_not_conflict() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 4, b"efgh", &mut out);
        push(&mut stream, 0, b"abcdef", &mut out);
        push(&mut stream, 0, b"abcdefgh", &mut out);
        assert_eq!(data_of(&out), b"abcdefgh");
        assert!(conflicts_of(&out).is_empty());
    }

    #[test]
    fn differing_copy_of_buffered_bytes_conflicts() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 4, b"EFGH", &mut out);
        push(&mut stream, 0, b"abcdefgh", &mut out);
        assert_eq!(data_of(&out), b"abcdEFGH");
        assert_eq!(conflicts_of(&out), vec![0]);
        assert_eq!(conflict_kinds(&out), vec![ConflictKind::Differs]);
    }

    #[test]
    fn acknowledged_bytes_are_not_compared() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abcdef", &mut out);
        stream.ack(seq(ISN, 4), &mut out);
        push(&mut stream, 0, b"XXXXef", &mut out);
        assert!(conflicts_of(&out).is_empty(), "the peer took the first 4 bytes");
        push(&mut stream, 0, b"abcdXX", &mut out);
        assert_eq!(conflicts_of(&out), vec![0], "bytes 4 and 5 are still kept");
    }

    #[test]
    fn kept_bytes_are_bounded() {
        let mut stream = started(8);
        let mut out = Vec::new();
        for offset in (0..64).step_by(4) {
            push(&mut stream, offset, b"abcd", &mut out);
        }
        assert!(stream.unacked_bytes <= 8, "{}", stream.unacked_bytes);
        assert_eq!(stream.stats().unverified_bytes, 56);
        assert!(conflicts_of(&out).is_empty());

        // The first copy of these bytes was dropped unacknowledged, so a
        // second copy cannot be checked and counts as a conflict.
        push(&mut stream, 0, b"abcd", &mut out);
        assert_eq!(conflicts_of(&out), vec![0]);
        assert_eq!(conflict_kinds(&out), vec![ConflictKind::Unverifiable]);
    }

    #[test]
    fn retransmission_beyond_bound_conflicts() {
        // The receiver drops bytes 0 to 3 after the capture saw them, so its
        // cumulative acknowledgement stays at 0 while more than the bound
        // follows. The sender's equal retransmission cannot be compared.
        let mut stream = started(8);
        let mut out = Vec::new();
        for offset in (0..16).step_by(4) {
            push(&mut stream, offset, b"abcd", &mut out);
        }
        stream.ack(seq(ISN, 0), &mut out);
        push(&mut stream, 0, b"abcd", &mut out);
        assert_eq!(conflicts_of(&out), vec![0]);
        assert_eq!(conflict_kinds(&out), vec![ConflictKind::Unverifiable]);
    }

    #[test]
    fn copy_after_shed_conflicts() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abcdefgh", &mut out);
        assert!(stream.shed(&mut out));
        // A tail loss probe resends the newest segment, whose kept copy the
        // total bound made the stream drop.
        push(&mut stream, 4, b"efgh", &mut out);
        assert_eq!(conflicts_of(&out), vec![4]);
        assert_eq!(conflict_kinds(&out), vec![ConflictKind::Unverifiable]);
    }

    #[test]
    fn kept_bytes_beyond_four_gib() {
        let mut stream = started(8);
        let mut out = Vec::new();
        // Advance the stream past offset 2^32 with lost bytes.
        let step: u64 = (1 << 30) - 1;
        let mut offset: u64 = 0;
        while offset < (1u64 << 32) + 100 {
            stream.push(seq(ISN, offset as usize), Bytes::new(), step as u32, 0, &mut out);
            offset += step;
        }
        assert_eq!(stream.next, offset);
        out.clear();
        for i in 0..4u64 {
            stream.push(seq(ISN, (offset + i * 4) as usize), Bytes::from_static(b"abcd"), 4, 0, &mut out);
        }
        assert_eq!(stream.unverified_end, offset + 8);
        stream.push(seq(ISN, offset as usize), Bytes::from_static(b"abcd"), 4, 0, &mut out);
        assert_eq!(conflicts_of(&out), vec![offset]);
        out.clear();
        stream.ack(seq(ISN, (offset + 8) as usize), &mut out);
        assert_eq!(stream.acked, offset + 8);
        stream.push(seq(ISN, offset as usize), Bytes::from_static(b"abcd"), 4, 0, &mut out);
        stream.push(seq(ISN, (offset + 8) as usize), Bytes::from_static(b"abcd"), 4, 0, &mut out);
        assert!(conflicts_of(&out).is_empty(), "{out:?}");
        // An older acknowledgement does not move `acked` back.
        stream.ack(seq(ISN, 5), &mut out);
        assert_eq!(stream.acked, offset + 8);
    }

    #[test]
    fn acknowledged_dropped_bytes_are_not_conflicts() {
        let mut stream = started(8);
        let mut out = Vec::new();
        for offset in (0..64).step_by(4) {
            push(&mut stream, offset, b"abcd", &mut out);
        }
        stream.ack(seq(ISN, 56), &mut out);
        push(&mut stream, 0, b"XXXX", &mut out);
        assert!(conflicts_of(&out).is_empty(), "the peer acknowledged them");
        push(&mut stream, 56, b"abcd", &mut out);
        assert!(conflicts_of(&out).is_empty(), "bytes 56 to 63 are still kept and equal");
    }

    #[test]
    fn segment_before_stream_start_is_dropped() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        stream.push(ISN.wrapping_sub(100), Bytes::from_static(b"fake"), 4, 0, &mut out);
        assert!(out.is_empty());
        assert_eq!(stream.buffered_bytes(), 0);
        push(&mut stream, 0, b"real", &mut out);
        assert_eq!(data_of(&out), b"real");
    }

    #[test]
    fn segment_across_stream_start_is_trimmed() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        stream.push(seq(ISN, 0).wrapping_sub(2), Bytes::from_static(b"xxabc"), 5, 0, &mut out);
        assert_eq!(data_of(&out), b"abc");
        assert_eq!(stream.stats().duplicate_bytes, 2);
    }

    #[test]
    fn truncated_segment_across_stream_start_keeps_lost_tail() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        stream.push(seq(ISN, 0).wrapping_sub(2), Bytes::from_static(b"xxa"), 6, 0, &mut out);
        push(&mut stream, 4, b"e", &mut out);
        assert_eq!(data_of(&out), b"ae");
        assert_eq!(gaps_of(&out), vec![3]);
    }

    #[test]
    fn ack_beyond_hole_declares_gap() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"ab", &mut out);
        push(&mut stream, 5, b"fg", &mut out);
        stream.ack(seq(ISN, 7), &mut out);
        assert_eq!(gaps_of(&out), vec![3]);
        assert_eq!(data_of(&out), b"abfg");
    }

    #[test]
    fn ack_beyond_all_data_declares_trailing_gap() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"ab", &mut out);
        stream.ack(seq(ISN, 10), &mut out);
        assert_eq!(gaps_of(&out), vec![8]);
        push(&mut stream, 2, b"late", &mut out);
        assert_eq!(data_of(&out), b"ab");
    }

    #[test]
    fn old_ack_changes_nothing() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abcd", &mut out);
        stream.ack(seq(ISN, 2), &mut out);
        stream.ack(ISN, &mut out);
        assert!(gaps_of(&out).is_empty());
    }

    #[test]
    fn ack_of_fin_is_not_a_gap() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abcd", &mut out);
        stream.fin(seq(ISN, 4), &mut out);
        stream.ack(seq(ISN, 5), &mut out);
        assert!(gaps_of(&out).is_empty());
        assert!(stream.is_finished());
    }

    #[test]
    fn buffer_bound_declares_gap() {
        let mut stream = started(4);
        let mut out = Vec::new();
        push(&mut stream, 10, b"abc", &mut out);
        assert!(out.is_empty());
        push(&mut stream, 13, b"de", &mut out);
        assert_eq!(gaps_of(&out), vec![10]);
        assert_eq!(data_of(&out), b"abcde");
        assert_eq!(stream.buffered_bytes(), 0);
    }

    #[test]
    fn piece_count_bound_declares_gap() {
        let mut stream = started(usize::MAX);
        let mut out = Vec::new();
        for i in 0..=MAX_PIECES {
            push(&mut stream, 1 + 2 * i, b"x", &mut out);
        }
        assert_eq!(gaps_of(&out).first(), Some(&1));
        assert!(stream.pieces.len() <= MAX_PIECES);
    }

    #[test]
    fn fin_hole_becomes_gap_when_acknowledged() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"ab", &mut out);
        push(&mut stream, 4, b"ef", &mut out);
        stream.fin(seq(ISN, 6), &mut out);
        assert!(gaps_of(&out).is_empty(), "a FIN alone must not give up a hole");
        assert!(!stream.is_finished());

        stream.ack(seq(ISN, 7), &mut out);
        assert_eq!(gaps_of(&out), vec![2]);
        assert_eq!(data_of(&out), b"abef");
        assert!(stream.is_finished());
    }

    /// The capture lost the FIN's record and saw the receiver's
    /// acknowledgement of it, then a retransmitted FIN. The FIN comes
    /// after every byte the sender sent, so it is not data after a FIN.
    #[test]
    fn fin_after_its_acknowledgement_is_accepted() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abc", &mut out);
        stream.ack(seq(ISN, 4), &mut out);
        stream.fin(seq(ISN, 3), &mut out);
        assert!(conflicts_of(&out).is_empty(), "{out:?}");
        assert_eq!(stream.stats().conflicts, 0);
        assert!(stream.is_finished());
    }

    /// A FIN before the stream start is a stale segment of an earlier
    /// connection on the same ports, which the receiver's kernel drops as
    /// out of its window, as [`Reassembler::push`] drops such data.
    #[test]
    fn fin_before_stream_start_is_ignored() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abc", &mut out);
        stream.fin(ISN.wrapping_sub(1000), &mut out);
        assert!(conflicts_of(&out).is_empty(), "{out:?}");
        assert!(!stream.is_finished());

        stream.fin(seq(ISN, 3), &mut out);
        assert!(stream.is_finished());
    }

    /// A FIN the receiver's kernel dropped, then the real data of the hole
    /// before it: the data is delivered, not taken for a duplicate.
    #[test]
    fn crafted_fin_keeps_hole_open() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"ab", &mut out);
        stream.fin(seq(ISN, 4), &mut out);
        push(&mut stream, 2, b"cd", &mut out);
        assert_eq!(data_of(&out), b"abcd");
        assert!(gaps_of(&out).is_empty());
        assert!(conflicts_of(&out).is_empty());
    }

    #[test]
    fn data_after_fin_is_read_and_reported() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abc", &mut out);
        stream.fin(seq(ISN, 3), &mut out);
        push(&mut stream, 3, b"def", &mut out);
        push(&mut stream, 6, b"ghi", &mut out);
        assert_eq!(data_of(&out), b"abcdefghi");
        assert_eq!(conflicts_of(&out), vec![3], "reported once, at the FIN");
        assert_eq!(conflict_kinds(&out), vec![ConflictKind::DataAfterFin]);
        assert_eq!(stream.stats().conflicts, 1);
        assert!(!stream.is_finished());
    }

    #[test]
    fn fin_before_delivered_data_is_ignored() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abcdef", &mut out);
        stream.fin(seq(ISN, 3), &mut out);
        assert_eq!(conflicts_of(&out), vec![3]);
        assert_eq!(conflict_kinds(&out), vec![ConflictKind::DataAfterFin]);
        assert!(!stream.is_finished());

        // The real FIN still ends the stream, and is not reported again.
        stream.fin(seq(ISN, 6), &mut out);
        assert!(stream.is_finished());
        assert_eq!(stream.stats().conflicts, 1);
    }

    #[test]
    fn fin_before_buffered_data_is_ignored() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 4, b"ef", &mut out);
        stream.fin(seq(ISN, 2), &mut out);
        assert_eq!(conflicts_of(&out), vec![2]);
        assert_eq!(stream.buffered_bytes(), 2);

        push(&mut stream, 0, b"abcd", &mut out);
        assert_eq!(data_of(&out), b"abcdef");
    }

    #[test]
    fn retransmitted_fin_is_not_a_conflict() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abcd", &mut out);
        stream.fin(seq(ISN, 4), &mut out);
        push(&mut stream, 2, b"cd", &mut out);
        stream.fin(seq(ISN, 4), &mut out);
        assert!(conflicts_of(&out).is_empty());
        assert!(stream.is_finished());
    }

    #[test]
    fn unreadable_segment_kinds_reported_once() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 0, b"abc", &mut out);
        stream.report_segment(ConflictKind::UrgentData, seq(ISN, 3), &mut out);
        stream.report_segment(ConflictKind::UrgentData, seq(ISN, 6), &mut out);
        stream.report_segment(ConflictKind::IpFragment, seq(ISN, 6), &mut out);
        assert_eq!(conflicts_of(&out), vec![3, 6]);
        assert_eq!(conflict_kinds(&out), vec![ConflictKind::UrgentData, ConflictKind::IpFragment]);
        assert_eq!(stream.stats().conflicts, 2);
    }

    #[test]
    fn urgent_starts_stream() {
        let mut stream = Reassembler::new(1024);
        let mut out = Vec::new();
        stream.report_segment(ConflictKind::UrgentData, seq(ISN, 0), &mut out);
        assert_eq!(conflicts_of(&out), vec![0]);
        assert_eq!(conflict_kinds(&out), vec![ConflictKind::UrgentData]);
        assert!(stream.is_mid_stream());

        push(&mut stream, 0, b"abc", &mut out);
        assert_eq!(data_of(&out), b"abc");
    }

    #[test]
    fn flush_declares_every_hole() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        push(&mut stream, 2, b"cd", &mut out);
        push(&mut stream, 6, b"gh", &mut out);
        stream.flush(&mut out);
        assert_eq!(gaps_of(&out), vec![2, 2]);
        assert_eq!(data_of(&out), b"cdgh");
        assert_eq!(stream.buffered_bytes(), 0);
    }

    #[test]
    fn truncated_segment_delivers_capture_then_gap() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        stream.push(seq(ISN, 0), Bytes::from_static(b"abc"), 10, 0, &mut out);
        push(&mut stream, 10, b"k", &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(gaps_of(&out), vec![7]);
        assert_eq!(data_of(&out), b"abck");
    }

    #[test]
    fn mid_stream_start_is_flagged() {
        let mut stream = Reassembler::new(1024);
        let mut out = Vec::new();
        stream.push(77, Bytes::from_static(b"xyz"), 3, 5, &mut out);
        assert!(stream.is_mid_stream());
        assert_eq!(
            out,
            vec![Delivery::Data {
                bytes: Bytes::from_static(b"xyz"),
                timestamp_ns: 5
            }]
        );
    }

    #[test]
    fn segment_beyond_window_is_ignored() {
        let mut stream = started(usize::MAX);
        let mut out = Vec::new();
        push(&mut stream, (MAX_WINDOW + 1) as usize, b"far", &mut out);
        stream.ack(seq(ISN, (MAX_WINDOW + 1) as usize), &mut out);
        assert!(out.is_empty());
        assert_eq!(stream.buffered_bytes(), 0);
        assert_eq!(stream.stats().out_of_window, 2);
    }

    #[test]
    fn delivery_keeps_segment_timestamp() {
        let mut stream = started(1024);
        let mut out = Vec::new();
        stream.push(seq(ISN, 1), Bytes::from_static(b"b"), 1, 20, &mut out);
        stream.push(seq(ISN, 0), Bytes::from_static(b"a"), 1, 30, &mut out);
        let stamps: Vec<u64> = out
            .iter()
            .map(|d| match d {
                Delivery::Data { timestamp_ns, .. } => *timestamp_ns,
                Delivery::Gap { .. } | Delivery::Conflict { .. } => 0,
            })
            .collect();
        assert_eq!(stamps, vec![30, 20]);
    }

    /// Splits `len` bytes into consecutive `(offset, len)` ranges at `cuts`.
    fn ranges(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % len.max(1)).collect();
        points.extend([0, len]);
        points.sort_unstable();
        points.dedup();
        points.windows(2).map(|w| (w[0], w[1] - w[0])).collect()
    }

    /// Reorders `items` by the sort keys in `keys` (a random permutation).
    fn shuffled<T: Clone>(items: &[T], keys: &[u32]) -> Vec<T> {
        let mut keyed: Vec<(u32, usize)> = (0..items.len())
            .map(|i| (keys.get(i).copied().unwrap_or(0), i))
            .collect();
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, i)| items[i].clone()).collect()
    }

    fn push_range(
        stream: &mut Reassembler,
        isn: u32,
        data: &[u8],
        (offset, len): (usize, usize),
        out: &mut Vec<Delivery>,
    ) {
        let bytes = Bytes::copy_from_slice(&data[offset..offset + len]);
        stream.push(seq(isn, offset), bytes, len as u32, 0, out);
    }

    proptest! {
        #[test]
        fn reordered_duplicated_overlapping_segments_deliver_same_bytes(
            data in proptest::collection::vec(any::<u8>(), 1..3000),
            isn in prop_oneof![any::<u32>(), (0u32..4000).prop_map(|d| u32::MAX - d)],
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            extra in proptest::collection::vec((any::<usize>(), 1usize..500), 0..20),
            keys in proptest::collection::vec(any::<u32>(), 60),
        ) {
            let mut segments = ranges(data.len(), &cuts);
            for (start, len) in extra {
                let start = start % data.len();
                segments.push((start, len.min(data.len() - start)));
            }
            let mut stream = Reassembler::new(usize::MAX);
            stream.start_after_syn(isn);
            let mut out = Vec::new();
            for range in shuffled(&segments, &keys) {
                push_range(&mut stream, isn, &data, range, &mut out);
            }
            prop_assert_eq!(gaps_of(&out), Vec::<u64>::new());
            prop_assert_eq!(data_of(&out), data);
            prop_assert_eq!(stream.buffered_bytes(), 0);
        }

        #[test]
        fn dropped_segments_become_gaps_of_their_size(
            data in proptest::collection::vec(any::<u8>(), 1..3000),
            isn in prop_oneof![any::<u32>(), (0u32..4000).prop_map(|d| u32::MAX - d)],
            cuts in proptest::collection::vec(any::<usize>(), 1..40),
            dropped in proptest::collection::vec(any::<bool>(), 41),
            keys in proptest::collection::vec(any::<u32>(), 41),
            max_buffered in prop_oneof![Just(usize::MAX), 1usize..2000],
        ) {
            let segments = ranges(data.len(), &cuts);
            let mut kept = Vec::new();
            let mut expected = Vec::new();
            let mut dropped_bytes = 0;
            for (i, &range) in segments.iter().enumerate() {
                if dropped[i] {
                    dropped_bytes += range.1 as u64;
                } else {
                    kept.push(range);
                    expected.extend_from_slice(&data[range.0..range.0 + range.1]);
                }
            }
            let mut stream = Reassembler::new(max_buffered);
            stream.start_after_syn(isn);
            let mut out = Vec::new();
            let kept = if max_buffered == usize::MAX { shuffled(&kept, &keys) } else { kept };
            for range in kept {
                push_range(&mut stream, isn, &data, range, &mut out);
            }
            stream.fin(seq(isn, data.len()), &mut out);
            // The receiver's acknowledgement of the FIN gives up the holes.
            stream.ack(seq(isn, data.len() + 1), &mut out);
            prop_assert_eq!(gaps_of(&out).iter().sum::<u64>(), dropped_bytes);
            prop_assert_eq!(data_of(&out), expected);
            prop_assert!(stream.is_finished());
        }
    }
}
