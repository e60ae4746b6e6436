//! The Odoo-like upstream: a Python server (standard library only) that
//! answers Odoo's RPC surfaces like Odoo 19, used by `odoogate demo` and the
//! end-to-end tests. It is written in Python on purpose: it decodes requests
//! with the same parsers Odoo uses (`xmlrpc.client.loads` on expat, `json`),
//! independently of odoogate's own decoders.

use anyhow::Context as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

/// The server's source, embedded so the binary is self-contained.
pub const SCRIPT: &str = include_str!("odoo_like.py");

/// Python code that runs the script read from stdin the way `python3
/// odoo_like.py` runs the file: as the `__main__` module, with `argv[0]`
/// (the program name in `--help`) and traceback file names `odoo_like.py`.
/// For `-c`, Python puts the working directory first on `sys.path`, where a
/// file run puts the script's directory. The bootstrap removes it, so that a
/// module in the working directory cannot shadow a standard one.
const BOOTSTRAP: &str = r#"import sys
if sys.path and sys.path[0] == "":
    del sys.path[0]
sys.argv[0] = "odoo_like.py"
exec(compile(sys.stdin.buffer.read(), "odoo_like.py", "exec"))
"#;

/// Writes the server script into `directory` and returns its path.
pub fn write_script(directory: &Path) -> anyhow::Result<PathBuf> {
    let path = directory.join("odoo_like.py");
    std::fs::write(&path, SCRIPT).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}

/// Runs the server in the foreground with `args` (`--listen`, `--api-key`, …).
/// The script goes to Python on stdin, so no file is written that a killed
/// process could leave behind.
pub fn run_foreground(args: &[String]) -> anyhow::Result<ExitCode> {
    let mut command = command(args);
    end_with_parent(&mut command);
    let mut child = start(&mut command)?;
    let status = child.wait().context("failed to wait for python3")?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Makes the kernel send SIGTERM to the child of `command` when this
/// process ends. Otherwise a SIGTERM or SIGKILL to `odoogate odoo-like`
/// would end only odoogate and leave Python listening on the port.
fn end_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (prctl, getppid); it allocates
    // nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from)?;
            // The parent may have ended before the prctl took effect.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(std::io::Error::from(nix::errno::Errno::ESRCH));
            }
            Ok(())
        });
    }
}

/// Returns the `python3` command that runs the server with `args` once
/// [`start`] gives it the script.
fn command(args: &[String]) -> Command {
    let mut command = Command::new("python3");
    command.arg("-c").arg(BOOTSTRAP).args(args).stdin(Stdio::piped());
    command
}

/// Spawns `command` and writes the script to its stdin, then closes it.
/// The bootstrap reads stdin to its end, so the script runs only once the
/// pipe is closed.
fn start(command: &mut Command) -> anyhow::Result<Child> {
    let mut child = command.spawn().context("failed to start python3: install Python 3")?;
    let mut stdin = child.stdin.take().context("python3 was started without a stdin pipe")?;
    if let Err(error) = stdin.write_all(SCRIPT.as_bytes()) {
        // Python exited before reading the whole script, so wait for it and
        // report both errors.
        drop(stdin);
        let status = child.wait().context("failed to wait for python3")?;
        anyhow::bail!("failed to give the server script to python3 on stdin ({error}); python3 exited with {status}");
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::ScratchDir;
    use std::io::Read as _;
    use std::time::{Duration, Instant};

    /// A server process, killed when the test ends, passing or not.
    struct Server(Child);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn help_names_script_and_options() {
        let output = start(command(&strings(&["--help"])).stdout(Stdio::piped())).unwrap().wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(help.starts_with("usage: odoo_like.py "), "{help}");
        assert!(help.contains("An HTTP server that answers Odoo's RPC surfaces the way Odoo 19 does."), "{help}");
        assert!(help.contains("--ready-file"), "{help}");
        assert!(help.contains("--keep-alive-timeout SECONDS"), "{help}");
    }

    #[test]
    fn working_directory_modules_are_not_imported() {
        let dir = ScratchDir::new("odoo-like-shadow");
        std::fs::write(dir.join("argparse.py"), "raise SystemExit('imported argparse from the working directory')\n").unwrap();
        let output = start(command(&strings(&["--help"])).current_dir(&*dir).stdout(Stdio::piped()).stderr(Stdio::piped()))
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert!(String::from_utf8_lossy(&output.stdout).starts_with("usage: odoo_like.py "), "{output:?}");
    }

    /// Starts the server on 127.0.0.1 and a port the system chooses, with
    /// `args` after `--listen` and `--ready-file`, and returns it with that
    /// port.
    fn start_on_any_port(dir: &ScratchDir, args: &[&str]) -> (Server, u16) {
        start_on_any_port_of(dir, "127.0.0.1", args)
    }

    /// Starts the server like [`start_on_any_port`], on `host`, such as
    /// `[::1]`.
    fn start_on_any_port_of(dir: &ScratchDir, host: &str, args: &[&str]) -> (Server, u16) {
        let ready_file = dir.join("ready");
        let ready_arg = ready_file.display().to_string();
        let listen = format!("{host}:0");
        let mut all_args = strings(&["--listen", &listen, "--ready-file", &ready_arg]);
        all_args.extend(strings(args));
        let server = Server(start(&mut command(&all_args)).unwrap());

        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                break text.parse::<u16>().unwrap();
            }
            assert!(Instant::now() < deadline, "the server wrote no ready file within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        (server, port)
    }

    /// Returns a JSON-RPC `common.version` request.
    fn version_request() -> String {
        let body = r#"{"jsonrpc": "2.0", "method": "call", "params": {"service": "common", "method": "version", "args": []}, "id": 1}"#;
        format!(
            "POST /jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// Reads one response framed by its `Content-Length` and returns its
    /// head and body.
    fn read_response(reader: &mut impl std::io::BufRead) -> (String, String) {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert_ne!(reader.read_line(&mut line).unwrap(), 0, "the connection closed within the head: {head}");
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .unwrap_or_else(|| panic!("no Content-Length in {head}"))
            .parse::<usize>()
            .unwrap();
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (head, String::from_utf8(body).unwrap())
    }

    #[test]
    fn server_answers_version_request() {
        let dir = ScratchDir::new("odoo-like-serve");
        let (_server, port) = start_on_any_port(&dir, &[]);
        let response = assert_answers_version(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());

        assert!(response.starts_with("HTTP/1."), "{response}");
        assert!(response.contains("\r\nConnection: close\r\n"), "{response}");
    }

    /// Sends a version request on `stream`, reads until the server closes,
    /// asserts that Odoo's version came back and returns the response.
    fn assert_answers_version(mut stream: std::net::TcpStream) -> String {
        stream.write_all(version_request().as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.contains(r#""server_version": "19.0""#), "{response}");
        response
    }

    #[test]
    fn server_listens_on_ipv6_address() {
        let dir = ScratchDir::new("odoo-like-ipv6");
        let (_server, port) = start_on_any_port_of(&dir, "[::1]", &[]);

        assert_answers_version(std::net::TcpStream::connect(("::1", port)).unwrap());
    }

    #[test]
    fn unspecified_ipv6_address_accepts_both_families() {
        let dir = ScratchDir::new("odoo-like-dual-stack");
        let (_server, port) = start_on_any_port_of(&dir, "[::]", &[]);

        assert_answers_version(std::net::TcpStream::connect(("::1", port)).unwrap());
        assert_answers_version(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }

    #[test]
    fn keep_alive_answers_twice_on_one_connection() {
        let dir = ScratchDir::new("odoo-like-keep-alive");
        let log = dir.join("requests.jsonl");
        let log_arg = log.display().to_string();
        let (_server, port) = start_on_any_port(&dir, &["--keep-alive", "--request-log", &log_arg]);
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());

        for attempt in 1..=2 {
            stream.write_all(version_request().as_bytes()).unwrap();
            let (head, body) = read_response(&mut reader);
            assert!(head.starts_with("HTTP/1.1 200 "), "response {attempt}: {head}");
            assert!(!head.to_ascii_lowercase().contains("connection: close"), "response {attempt}: {head}");
            assert!(body.contains(r#""server_version": "19.0""#), "response {attempt}: {body}");
        }

        let entries: Vec<serde_json::Value> =
            std::fs::read_to_string(&log).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(entries.len(), 2, "{entries:?}");
        for entry in &entries {
            assert_eq!(entry["connection"], 1, "both calls came on the first connection: {entries:?}");
        }
    }

    #[test]
    fn keep_alive_timeout_closes_idle_connection() {
        let dir = ScratchDir::new("odoo-like-keep-alive-timeout");
        let (_server, port) = start_on_any_port(&dir, &["--keep-alive", "--keep-alive-timeout", "0.2"]);
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());

        stream.write_all(version_request().as_bytes()).unwrap();
        let (head, _) = read_response(&mut reader);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let idle_since = Instant::now();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();

        assert!(rest.is_empty(), "bytes after the response: {rest:?}");
        assert!(idle_since.elapsed() >= Duration::from_millis(150), "closed after {:?}, before the timeout", idle_since.elapsed());
    }
}
