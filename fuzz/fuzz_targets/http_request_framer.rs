//! The request framer on arbitrary bytes, fed in arbitrary pieces.
//!
//! Checks: no panic, every body within the limit, and, when no gap is
//! injected, the same events whatever the split, since TCP may cut a
//! stream anywhere.

#![no_main]

use libfuzzer_sys::fuzz_target;
use odoogate::http::framer::{FramerEvent, FramerLimits, RequestFramer};

const LIMITS: FramerLimits = FramerLimits { max_header_bytes: 4096, max_body_bytes: 2048 };

/// The input layout. Byte 0 seeds the piece lengths (0 feeds the stream
/// whole). Byte 1 injects a gap of `7 * byte` bytes after piece `byte`
/// (0 for none). The rest is the stream. A captured message with
/// the header bytes in front is a seed.
struct Input<'a> {
    stream: &'a [u8],
    split_seed: u8,
    gap: Option<(u8, u16)>,
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let [split_seed, gap, stream @ ..] = data else {
            return None;
        };
        let gap = (*gap != 0).then(|| (*gap, u16::from(*gap) * 7));
        Some(Self { stream, split_seed: *split_seed, gap })
    }

    /// Returns the piece lengths: a small linear congruential sequence, so
    /// one seed byte gives varied cuts.
    fn piece_lengths(&self) -> impl Iterator<Item = usize> {
        let mut state = u32::from(self.split_seed);
        std::iter::from_fn(move || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            Some(1 + (state >> 16) as usize % 300)
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let split = frame_in_pieces(&input);
    check_bodies(&split);
    if input.gap.is_none() {
        let mut whole = Vec::new();
        let mut framer = RequestFramer::new(LIMITS);
        framer.push(input.stream, 0, &mut whole);
        framer.finish(&mut whole);
        assert_eq!(format!("{whole:?}"), format!("{split:?}"), "events depend on the split");
    }
    boundary_walk(input.stream);
});

fn frame_in_pieces(input: &Input) -> Vec<FramerEvent> {
    let mut events = Vec::new();
    let mut framer = RequestFramer::new(LIMITS);
    let mut rest = input.stream;
    let mut lengths = input.piece_lengths();
    let mut piece = 0u8;
    while !rest.is_empty() {
        let length = if input.split_seed == 0 { rest.len() } else { lengths.next().unwrap_or(1).min(rest.len()) };
        framer.push(&rest[..length], 0, &mut events);
        rest = &rest[length..];
        if let Some((after, missing)) = input.gap
            && after == piece
        {
            framer.gap(u64::from(missing), &mut events);
        }
        piece = piece.wrapping_add(1);
    }
    framer.finish(&mut events);
    events
}

fn check_bodies(events: &[FramerEvent]) {
    for event in events {
        if let FramerEvent::Request(request) = event {
            assert!(request.body.len() <= LIMITS.max_body_bytes, "body beyond the limit");
        }
    }
}

/// Feeds the stream through `push_to_boundary`, as the inline proxy does.
fn boundary_walk(stream: &[u8]) {
    let mut events = Vec::new();
    let mut framer = RequestFramer::new(LIMITS);
    let mut rest = stream;
    while !rest.is_empty() {
        let used = framer.push_to_boundary(rest, 0, &mut events);
        assert!(used <= rest.len(), "push_to_boundary used more bytes than it was given");
        if used == 0 {
            break;
        }
        let _ = framer.open_request();
        rest = &rest[used..];
    }
    framer.finish(&mut events);
}
