//! The machine facts every benchmark section states.

use std::process::Command;

/// Kernel, CPU, core count, date and load average, read when created.
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    pub date: String,
    pub load_before: String,
}

impl Machine {
    pub fn read() -> Self {
        Self {
            kernel: command_output("uname", &["-r"]),
            cpu: cpu_model(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            load_before: load_average(),
        }
    }

    /// Formats the "How this was measured" list items, ending with the load
    /// average now.
    pub fn describe(&self, command: &str) -> String {
        format!(
            "- Command: `{command}` (as root)\n\
             - Machine: {cores} cores ({cpu}), kernel {kernel}\n\
             - Date: {date}\n\
             - Load average (1, 5, 15 min) at the start: {before}; at the end: {after}\n",
            cores = self.cores,
            cpu = self.cpu,
            kernel = self.kernel,
            date = self.date,
            before = self.load_before,
            after = load_average(),
        )
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| format!("unknown ({program} failed)"))
}

pub fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(", ")
}

fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, model)| model.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Formats microseconds for a table cell.
pub fn us(value: f64) -> String {
    format!("{value:.0}")
}

/// Formats a signed difference in microseconds.
pub fn signed_us(value: f64) -> String {
    format!("{value:+.0}")
}

/// Formats KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}
