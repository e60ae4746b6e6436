//! Prints audit entries as a table for people or as JSON lines for tools.

use super::AuditEntry;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use std::io::{self, Write};

/// Maximum characters of one table cell. Longer values are cut to end with `…`.
const MAX_CELL_CHARS: usize = 48;

const HEADERS: [&str; 9] = [
    "TIME",
    "DECISION",
    "INTEGRATION",
    "IDENTITY",
    "PROTOCOL",
    "MODEL.METHOD",
    "OUTCOME",
    "LATENCY",
    "SOURCE",
];

/// Prints `entries` as an aligned table, times in the system's time zone.
///
/// Values come from the wire, so control characters are escaped and long
/// values cut, and a hostile value cannot move the terminal's cursor or
/// break the layout.
pub fn print_table(entries: &[AuditEntry], out: &mut impl Write) -> io::Result<()> {
    write_table(entries, out, &TimeZone::system())
}

/// Prints each entry's fields as one JSON object per line.
pub fn print_json(entries: &[AuditEntry], out: &mut impl Write) -> io::Result<()> {
    for entry in entries {
        serde_json::to_writer(&mut *out, &entry.fields)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub(super) fn write_table(
    entries: &[AuditEntry],
    out: &mut impl Write,
    tz: &TimeZone,
) -> io::Result<()> {
    let rows: Vec<[String; 9]> = entries.iter().map(|entry| row(entry, tz)).collect();

    let mut widths = HEADERS.map(|header| header.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    write_row(out, &HEADERS.map(str::to_owned), &widths)?;
    for row in &rows {
        write_row(out, row, &widths)?;
    }
    Ok(())
}

fn write_row(out: &mut impl Write, cells: &[String; 9], widths: &[usize; 9]) -> io::Result<()> {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            line.push_str(cell);
        } else {
            let padding = width - cell.chars().count();
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', padding + 2));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

fn row(entry: &AuditEntry, tz: &TimeZone) -> [String; 9] {
    let field = |name: &str| entry.field(name).unwrap_or_default();
    let or_dash = |value: &str| {
        if value.is_empty() {
            "-".to_owned()
        } else {
            value.to_owned()
        }
    };

    [
        local_time(entry, tz),
        or_dash(
            entry
                .field("ODOOGATE_DECISION")
                .or(entry.field("ODOOGATE_EVENT"))
                .unwrap_or_default(),
        ),
        or_dash(field("ODOOGATE_INTEGRATION")),
        or_dash(field("ODOOGATE_IDENTITY")),
        or_dash(field("ODOOGATE_PROTOCOL")),
        or_dash(&target(entry)),
        or_dash(&outcome(entry)),
        or_dash(
            &entry
                .field("ODOOGATE_LATENCY_US")
                .map(latency)
                .unwrap_or_default(),
        ),
        or_dash(&source(entry)),
    ]
    .map(|cell| clean_cell(&cell))
}

fn local_time(entry: &AuditEntry, tz: &TimeZone) -> String {
    match Timestamp::try_from(entry.timestamp) {
        Ok(timestamp) => timestamp
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// Returns `model.method`, the method alone for service calls without a
/// model (`common.login`), or the request path of an undecoded request.
fn target(entry: &AuditEntry) -> String {
    match (
        entry.field("ODOOGATE_MODEL"),
        entry.field("ODOOGATE_METHOD"),
    ) {
        (Some(model), Some(method)) => format!("{model}.{method}"),
        (Some(model), None) => model.to_owned(),
        (None, Some(method)) => method.to_owned(),
        (None, None) => entry.field("ODOOGATE_PATH").unwrap_or_default().to_owned(),
    }
}

/// Returns the call's outcome, or the error code of an error record, with
/// the number of events it stands for when more than one.
/// Returns Odoo's outcome, else the error code, else the HTTP status the
/// client got (`http:502` when odoogate responded because Odoo did not).
fn outcome(entry: &AuditEntry) -> String {
    let base = match entry.field("ODOOGATE_OUTCOME").or(entry.field("ODOOGATE_ERROR_CODE")) {
        Some(base) => base.to_owned(),
        None => entry.field("ODOOGATE_HTTP_STATUS").map(|status| format!("http:{status}")).unwrap_or_default(),
    };
    match entry.field("ODOOGATE_COUNT") {
        Some(count) if count != "1" => format!("{base} ×{count}").trim_start().to_owned(),
        _ => base,
    }
}

/// Formats microseconds as `850us`, `12.3ms` or `1.25s`.
fn latency(micros: &str) -> String {
    let Ok(micros) = micros.parse::<u64>() else {
        return micros.to_owned();
    };
    match micros {
        0..1_000 => format!("{micros}us"),
        1_000..1_000_000 => format!("{:.1}ms", micros as f64 / 1e3),
        _ => format!("{:.2}s", micros as f64 / 1e6),
    }
}

/// Returns the peer address and, for local clients, the command and pid or
/// the cgroup.
fn source(entry: &AuditEntry) -> String {
    let address = match (
        entry.field("ODOOGATE_SRC_IP"),
        entry.field("ODOOGATE_SRC_PORT"),
    ) {
        (Some(ip), Some(port)) if ip.contains(':') => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.to_owned(),
        (None, _) => String::new(),
    };
    let process = match (entry.field("ODOOGATE_COMM"), entry.field("ODOOGATE_PID")) {
        (Some(comm), Some(pid)) => format!("{comm}[{pid}]"),
        (Some(comm), None) => comm.to_owned(),
        (None, Some(pid)) => format!("[{pid}]"),
        (None, None) => entry
            .field("ODOOGATE_CGROUP")
            .unwrap_or_default()
            .to_owned(),
    };
    [address, process]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Escapes control characters and bidirectional text controls, which could
/// move the cursor or reorder what the terminal shows, and cuts the cell to
/// [`MAX_CELL_CHARS`].
fn clean_cell(value: &str) -> String {
    let mut cell = String::new();
    for c in value.chars() {
        if c.is_control() || is_bidi_control(c) {
            cell.extend(c.escape_default());
        } else {
            cell.push(c);
        }
    }
    if cell.chars().count() > MAX_CELL_CHARS {
        cell = cell.chars().take(MAX_CELL_CHARS - 1).chain(['…']).collect();
    }
    cell
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}
