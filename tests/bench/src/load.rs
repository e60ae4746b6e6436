//! Load from wrk (Debian's package), driven by a Lua script that posts a
//! captured RPC body and prints wrk's own latency percentiles as JSON.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The marker in front of the JSON line the Lua script prints.
const RESULT_MARKER: &str = "BENCH_RESULT ";

/// One RPC request to send: its path, content type and body.
#[derive(Clone, Debug)]
pub struct Request {
    pub name: &'static str,
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Request {
    /// Reads a captured request (`NNN-req.http`) and replaces the
    /// `PASSWORD_PLACEHOLDER` credential with `credential`.
    pub fn from_capture(name: &'static str, capture: &Path, credential: &str) -> anyhow::Result<Self> {
        let bytes = std::fs::read(capture).with_context(|| format!("failed to read {}", capture.display()))?;
        let split = bytes.windows(4).position(|window| window == b"\r\n\r\n").context("the captured request has no end of head")?;
        let head = std::str::from_utf8(&bytes[..split])?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next().context("empty capture")?;
        let path = request_line.split(' ').nth(1).context("no target in the request line")?.to_owned();
        let content_type = lines
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map_or("text/xml".to_owned(), |(_, value)| value.trim().to_owned());
        let body = String::from_utf8(bytes[split + 4..].to_vec())?;
        if !body.contains("PASSWORD_PLACEHOLDER") {
            bail!("{} carries no PASSWORD_PLACEHOLDER to replace", capture.display());
        }
        let body = body.replace("PASSWORD_PLACEHOLDER", credential).into_bytes();
        Ok(Self { name, path, content_type, body })
    }
}

/// The load pattern of one wrk run.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// About `rate` calls/s: each of `rate / 100` connections waits 10 ms
    /// after each response, so the rate achieved is a little lower (by the
    /// latency share of each 10 ms cycle).
    Paced { rate: u32 },
    /// As fast as `connections` connections go, one request in flight each.
    Max { connections: u32 },
}

impl Load {
    fn connections(self) -> u32 {
        match self {
            Load::Paced { rate } => (rate / 100).max(1),
            Load::Max { connections } => connections,
        }
    }

    fn delay_ms(self) -> u32 {
        match self {
            Load::Paced { .. } => 10,
            Load::Max { .. } => 0,
        }
    }
}

/// The measurements of one wrk run.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub requests: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Connect, read, write and timeout errors and non-2xx/3xx responses.
    pub errors: u64,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

/// Runs wrk from this process's network namespace against `port` on
/// 127.0.0.1 for `duration`.
pub fn run(workdir: &Path, request: &Request, port: u16, load: Load, duration: Duration) -> anyhow::Result<Outcome> {
    let script = write_script(workdir, request)?;
    let connections = load.connections();
    let threads = connections.min(2);
    let output = Command::new("wrk")
        .arg(format!("--threads={threads}"))
        .arg(format!("--connections={connections}"))
        .arg(format!("--duration={}s", duration.as_secs().max(1)))
        .arg("--timeout=10s")
        .arg("--script")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}{}", request.path))
        .env("BENCH_DELAY_MS", load.delay_ms().to_string())
        .output()
        .context("failed to run wrk (install Debian's wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed: {}\n{stdout}{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(RESULT_MARKER))
        .with_context(|| format!("wrk printed no result line:\n{stdout}"))?;
    let json: serde_json::Value = serde_json::from_str(line).context("wrk's result line is not JSON")?;
    let number = |key: &str| json[key].as_f64().with_context(|| format!("wrk's result has no {key}"));
    Ok(Outcome {
        requests: number("requests")? as u64,
        seconds: number("duration_us")? / 1e6,
        p50_us: number("p50_us")?,
        p90_us: number("p90_us")?,
        p99_us: number("p99_us")?,
        max_us: number("max_us")?,
        errors: number("errors")? as u64,
    })
}

/// Writes the Lua script for `request`: its body is read from a file next
/// to the script, and `BENCH_DELAY_MS` paces each connection.
fn write_script(workdir: &Path, request: &Request) -> anyhow::Result<PathBuf> {
    let body_path = workdir.join(format!("{}.body", request.name));
    std::fs::write(&body_path, &request.body)?;
    let script_path = workdir.join(format!("{}.lua", request.name));
    let script = format!(
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
local file = assert(io.open("{body}", "rb"))
wrk.body = file:read("*a")
file:close()

local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.status + errors.timeout
  io.write(string.format(
    '{marker}{{"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"errors":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, failed))
end
"#,
        content_type = request.content_type,
        body = body_path.display(),
        marker = RESULT_MARKER,
    );
    std::fs::write(&script_path, script)?;
    Ok(script_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_credential_is_replaced() {
        let directory = std::env::temp_dir().join(format!("odoogate-bench-load-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let capture = directory.join("001-req.http");
        std::fs::write(
            &capture,
            "POST /xmlrpc/2/object HTTP/1.1\r\nContent-Type: text/xml\r\nContent-Length: 54\r\n\r\n<value><string>PASSWORD_PLACEHOLDER</string></value>",
        )
        .unwrap();

        let request = Request::from_capture("case", &capture, "odg_token").unwrap();
        std::fs::remove_dir_all(&directory).unwrap();

        assert_eq!(request.path, "/xmlrpc/2/object");
        assert_eq!(request.content_type, "text/xml");
        assert_eq!(request.body, b"<value><string>odg_token</string></value>");
    }

    #[test]
    fn paced_load_spreads_connections() {
        assert_eq!(Load::Paced { rate: 1000 }.connections(), 10);
        assert_eq!(Load::Paced { rate: 5500 }.connections(), 55);
        assert_eq!(Load::Paced { rate: 1000 }.delay_ms(), 10);
        assert_eq!(Load::Max { connections: 32 }.delay_ms(), 0);
    }
}
