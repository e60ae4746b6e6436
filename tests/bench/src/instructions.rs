//! Instructions per proxied call in enforce mode, counted with valgrind's
//! callgrind. Unlike rates and latencies they do not depend on the load of
//! the machine, so two builds compare fairly on a busy machine.
//!
//! The daemon runs in listen mode under callgrind twice: once for
//! [`FEW_CALLS`] calls, once for [`FEW_CALLS`] + [`MEASURED_CALLS`], each
//! sent after the response to the one before on one kept-alive connection.
//! The difference divided by [`MEASURED_CALLS`] leaves out start-up and
//! shutdown. It counts the user-space instructions of every thread of the
//! daemon, the proxy's workers and the audit writer. The kernel's work in
//! system calls is not counted.

use anyhow::{Context as _, bail};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::lab::{self, DaemonMode, Lab};
use crate::load::Request;

/// Calls of the shorter run, which warm the daemon up as the longer one does.
pub const FEW_CALLS: u64 = 200;
/// Calls the count per call is taken over.
pub const MEASURED_CALLS: u64 = 1000;

/// Returns the instructions the daemon of `config` (listen mode) executes
/// per call of `request`.
pub fn per_call(lab: &Lab, config: &Path, request: &Request) -> anyhow::Result<u64> {
    let few = count(lab, config, request, FEW_CALLS)?;
    let many = count(lab, config, request, FEW_CALLS + MEASURED_CALLS)?;
    Ok(many.saturating_sub(few) / MEASURED_CALLS)
}

/// Runs the daemon under callgrind for `calls` calls and returns the
/// instructions it executed.
fn count(lab: &Lab, config: &Path, request: &Request, calls: u64) -> anyhow::Result<u64> {
    let log = config.with_file_name("odoogate-callgrind.log");
    let mut daemon = lab.start_odoogate_under_callgrind(config, DaemonMode::Listen, &log)?;
    send_calls(request, lab::LISTEN_PORT, calls)?;
    if !daemon.stop(Duration::from_secs(120))? {
        bail!("odoogate run under callgrind failed; see {}", log.display());
    }
    let text = std::fs::read_to_string(&log).with_context(|| format!("failed to read {}", log.display()))?;
    text.lines()
        .find_map(|line| line.split_once("Collected :").map(|(_, count)| count.trim().parse::<u64>()))
        .with_context(|| format!("callgrind printed no instruction count to {}", log.display()))?
        .context("callgrind printed an invalid instruction count")
}

/// Sends `request` `calls` times on one connection to `port`, each after
/// the response to the one before, and checks that every response is 200.
fn send_calls(request: &Request, port: u16, calls: u64) -> anyhow::Result<()> {
    let stream = TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("failed to connect to port {port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut message = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        request.path,
        request.content_type,
        request.body.len()
    )
    .into_bytes();
    message.extend_from_slice(&request.body);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    for call in 0..calls {
        writer.write_all(&message)?;
        let status = read_response(&mut reader).with_context(|| format!("failed to read the response to call {call}"))?;
        if status != 200 {
            bail!("call {call} got HTTP status {status}");
        }
    }
    Ok(())
}

/// Reads one response framed by `Content-Length` and returns its status.
fn read_response(reader: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split(' ').nth(1).and_then(|code| code.parse().ok()).with_context(|| format!("invalid status line {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the connection closed inside a response head");
        }
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some((name, value)) = field.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse::<u64>().context("invalid Content-Length")?);
        }
    }
    let length = length.context("the response has no Content-Length")?;
    let read = std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink())?;
    if read != length {
        bail!("the connection closed after {read} of {length} body bytes");
    }
    Ok(status)
}
