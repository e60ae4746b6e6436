//! Finding the next message after a gap or a malformed head: the scanner
//! skips bytes up to a line that looks like a request line
//! (`METHOD SP target SP HTTP/1.x`) or a status line (`HTTP/1.x SP 3DIGIT`).

use super::head::Role;

/// The result of scanning a piece of input.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// All input was used and no start line completed.
    NeedMore,
    /// A start line ends at input index `end` (after its LF). `line` contains
    /// the whole line, including bytes from earlier input, to be parsed as
    /// the start of the next head.
    Found { end: usize, line: Vec<u8> },
}

/// Scans for the next start line, counting the bytes it skips.
#[derive(Debug)]
pub(super) struct Resync {
    role: Role,
    /// The current candidate line, from its first byte.
    line: Vec<u8>,
    /// Whether the current line cannot be a start line, or began before the
    /// scan, so its bytes are skipped up to the next LF.
    discarding: bool,
    max_line: usize,
    skipped: u64,
}

impl Resync {
    /// Starts a scan that has already skipped `skipped` bytes. When
    /// `at_line_start` is false the bytes up to the next LF are skipped.
    pub fn new(role: Role, max_line: usize, skipped: u64, at_line_start: bool) -> Self {
        Self {
            role,
            line: Vec::new(),
            discarding: !at_line_start,
            max_line,
            skipped,
        }
    }

    /// Bytes skipped so far, the current candidate line included.
    pub fn skipped(&self) -> u64 {
        self.skipped + self.line.len() as u64
    }

    /// Restarts the candidate line after a gap in the input: the bytes of
    /// the broken line count as skipped.
    pub fn restart_after_gap(&mut self) {
        self.skipped += self.line.len() as u64;
        self.line.clear();
        self.discarding = false;
    }

    pub fn scan(&mut self, input: &[u8]) -> Scan {
        let mut position = 0;
        while position < input.len() {
            let rest = &input[position..];
            let lf = rest.iter().position(|&b| b == b'\n');
            let chunk = &rest[..lf.map_or(rest.len(), |i| i + 1)];
            position += chunk.len();

            if self.discarding {
                self.skipped += chunk.len() as u64;
            } else {
                self.line.extend_from_slice(chunk);
                if !self.could_start(lf.is_some()) {
                    self.skipped += self.line.len() as u64;
                    self.line.clear();
                    self.discarding = lf.is_none();
                }
            }

            if lf.is_some() {
                self.discarding = false;
                if !self.line.is_empty() {
                    return Scan::Found {
                        end: position,
                        line: std::mem::take(&mut self.line),
                    };
                }
            }
        }
        Scan::NeedMore
    }

    /// Returns whether the candidate line may be, or (once `complete`) is, a
    /// start line of this role.
    fn could_start(&self, complete: bool) -> bool {
        if self.line.len() > self.max_line {
            return false;
        }
        let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !complete {
            return match self.role {
                Role::Request => line.first().is_some_and(u8::is_ascii_uppercase),
                Role::Response => b"HTTP/".starts_with(&line[..line.len().min(5)]),
            };
        }
        match self.role {
            Role::Request => is_request_line(line),
            Role::Response => is_status_line(line),
        }
    }
}

fn is_request_line(line: &[u8]) -> bool {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && method.iter().all(u8::is_ascii_uppercase)
        && !target.is_empty()
        && target.iter().all(|&b| b > b' ' && b != 0x7f)
        && is_version(version)
}

fn is_status_line(line: &[u8]) -> bool {
    line.len() >= 12
        && is_version(&line[..8])
        && line[8] == b' '
        && line[9..12].iter().all(u8::is_ascii_digit)
        && line.get(12).is_none_or(|&b| b == b' ')
}

fn is_version(text: &[u8]) -> bool {
    text == b"HTTP/1.1" || text == b"HTTP/1.0"
}
