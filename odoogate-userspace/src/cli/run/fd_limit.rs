//! The open-file limit of the daemon.
//!
//! Every client connection in enforce mode takes a file descriptor, and a
//! second one while its request goes to Odoo. systemd starts services with
//! a soft limit of 1024 and a much higher hard limit, so the daemon raises
//! its soft limit to the hard one at start, as servers that hold many
//! sockets do.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::config::{Config, Mode};

/// File descriptors the daemon uses besides client and upstream
/// connections: eBPF maps and programs, the audit and control sockets,
/// state files, and the runtime's own.
const RESERVED_FDS: u64 = 256;

/// Ceiling of `RLIMIT_NOFILE` when its hard limit is unlimited, where the
/// kernel does not read `/proc/sys/fs/nr_open`.
const NR_OPEN_FALLBACK: u64 = 1 << 20;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, and warns when the
/// result is below what `proxy.max_connections` needs in enforce mode.
/// Failures are logged: the daemon still runs with the limit it has.
pub fn raise(config: &Config) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "Failed to read the open-file limit (RLIMIT_NOFILE)");
            return;
        }
    };
    let target = match hard {
        nix::libc::RLIM_INFINITY => nr_open().unwrap_or(NR_OPEN_FALLBACK),
        hard => hard,
    };
    let limit = if soft < target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = target, "Raised the open-file limit (RLIMIT_NOFILE)");
                target
            }
            Err(error) => {
                tracing::warn!(%error, soft, target, "Failed to raise the open-file limit (RLIMIT_NOFILE)");
                soft
            }
        }
    } else {
        soft
    };

    if config.policy.mode == Mode::Enforce {
        let max_connections = config.proxy.max_connections as u64;
        let needed = max_connections.saturating_mul(2).saturating_add(RESERVED_FDS);
        if needed > limit {
            tracing::warn!(
                limit,
                needed,
                max_connections,
                "The open-file limit is below what proxy.max_connections needs: new connections may fail to be \
                 accepted or to reach Odoo; raise LimitNOFILE or lower proxy.max_connections"
            );
        }
    }
}

/// Returns the kernel's ceiling of `RLIMIT_NOFILE`.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}
