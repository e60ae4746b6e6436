//! `odoogate-bench`: the enforce, observe and memory benchmarks of
//! `odoogate run`, and the fast upstream they use. `cargo xtask bench`
//! installs wrk and nginx, builds this and the daemon, runs it as root and
//! puts each section it writes into docs/benchmarks.md.

mod enforce;
mod instructions;
mod lab;
mod load;
mod memory;
mod observe;
mod report;
mod upstream;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Benchmarks of odoogate run in enforce and observe mode, and their fast upstream")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Serve one canned response to every request, with keep-alive.
    Upstream {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// A captured response (`NNN-resp.http`) to send.
        #[arg(long)]
        response: PathBuf,
        /// File written once the socket listens.
        #[arg(long)]
        ready_file: PathBuf,
        /// Close every connection after its first response, as Odoo does.
        #[arg(long)]
        close_after_response: bool,
    },
    /// Run a benchmark in a network namespace of its own (needs root) and
    /// write its Markdown section to `--out`.
    Run {
        suite: Suite,
        /// The odoogate binary to measure (a release build).
        #[arg(long)]
        odoogate: PathBuf,
        /// The workspace root, for tests/fixtures/odoo19-captures.
        #[arg(long)]
        workspace: PathBuf,
        /// Markdown file to write the section to.
        #[arg(long)]
        out: PathBuf,
        /// Seconds of each measured wrk run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Suite {
    Enforce,
    /// Only the enforce suite's instructions per call, a quick comparison
    /// of two builds; keeps callgrind's profiles when
    /// `ODOOGATE_BENCH_PROFILES` names a directory.
    Instructions,
    Observe,
    Memory,
}

/// One captured call the benchmarks send and the response the upstream
/// gives to it.
pub struct Case {
    pub name: &'static str,
    pub request: PathBuf,
    pub response: PathBuf,
}

/// Settings shared by the suites.
pub struct Settings {
    pub duration: Duration,
    pub wrk_version: String,
    pub nginx_version: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Task::Upstream { listen, response, ready_file, close_after_response } => {
            upstream::serve(listen, &response, &ready_file, close_after_response)
        }
        Task::Run { suite, odoogate, workspace, out, seconds } => {
            let cases = cases(&workspace);
            let settings = Settings {
                duration: Duration::from_secs(seconds),
                wrk_version: version_of("wrk", &["-v"]),
                nginx_version: version_of("nginx", &["-v"]),
            };
            let lab = lab::Lab::create(&odoogate)?;
            let section = match suite {
                Suite::Enforce => enforce::run(&lab, &cases, &settings)?,
                Suite::Instructions => enforce::count_instructions(&lab, &cases)?,
                Suite::Observe => observe::run(&lab, &cases, &settings)?,
                Suite::Memory => memory::run(&lab, &cases, &settings)?,
            };
            std::fs::write(&out, section).with_context(|| format!("failed to write {}", out.display()))?;
            Ok(())
        }
    }
}

/// Returns the two calls the benchmarks send, a `search_read` and a
/// `create` of `res.partner` by Python's xmlrpc.client, with Odoo 19's
/// responses.
fn cases(workspace: &Path) -> Vec<Case> {
    let captures = workspace.join("tests/fixtures/odoo19-captures/xmlrpc_stdlib");
    [("search_read", "003"), ("create", "006")]
        .into_iter()
        .map(|(name, number)| Case {
            name,
            request: captures.join(format!("{number}-req.http")),
            response: captures.join(format!("{number}-resp.http")),
        })
        .collect()
}

/// The first line with a version number that `program ARGS` prints on
/// stdout or stderr (wrk and nginx print theirs differently).
fn version_of(program: &str, args: &[&str]) -> String {
    let Ok(output) = Command::new(program).args(args).output() else {
        return "unknown".to_owned();
    };
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    text.lines()
        .find_map(|line| line.split([' ', '/']).find(|word| word.starts_with(|c: char| c.is_ascii_digit()) && word.contains('.')))
        .unwrap_or("unknown")
        .to_owned()
}
