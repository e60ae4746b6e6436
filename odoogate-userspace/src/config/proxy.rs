//! `[proxy]`: the inline proxy of enforce mode.
//!
//! ```toml
//! [proxy]
//! listen = "127.0.0.1:8070"      # listen mode; leave out for sk_lookup steering
//! upstream = "127.0.0.1:8069"    # Odoo; default 127.0.0.1:<first odoo.ports>
//! max_request_bytes = 67108864
//! request_timeout_secs = 60
//! upstream_timeout_secs = 300
//! max_connections = 1024
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::Problem;

/// Default of `proxy.max_request_bytes`: 64 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Smallest `proxy.max_request_bytes`, so that any real RPC call fits.
pub const MIN_MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Default of `proxy.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// `[proxy]`: how enforce mode sits between clients and Odoo. Every key is
/// optional, and the section is ignored in observe mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `listen`: the address odoogate listens on in listen mode, where Odoo
    /// moves to another port (or clients use this one) and no eBPF is
    /// needed. When absent, enforce mode steers connections for Odoo's
    /// ports to its own listener with `sk_lookup`, and Odoo stays where it
    /// is.
    pub listen: Option<SocketAddr>,
    /// `upstream`: Odoo's address, which odoogate forwards allowed requests
    /// to. Default `127.0.0.1:<first odoo.ports>`.
    pub upstream: SocketAddr,
    /// `max_request_bytes`: the largest body of a request to an RPC surface,
    /// counted in wire bytes (chunk framing included). odoogate reads such
    /// a body whole before it decides, so a larger one is rejected with 413
    /// and never forwarded. Bodies of other routes (uploads, assets) stream
    /// through unbounded, as Odoo applies its own limit to them. Independent
    /// of `capture.max_body_bytes`, which bounds what the observe path keeps.
    /// At least 64 KiB; default 64 MiB.
    pub max_request_bytes: usize,
    /// `request_timeout_secs`: how long a client may take to send one
    /// request head and RPC body, and how long an idle keep-alive
    /// connection stays open. Default 60 seconds.
    pub request_timeout: Duration,
    /// `upstream_timeout_secs`: how long odoogate waits for Odoo to accept
    /// a connection, to start its response, and between two reads of a
    /// response body. Default 300 seconds, above Odoo's default
    /// `limit_time_real` of 120 seconds, so Odoo's own limit acts first.
    pub upstream_timeout: Duration,
    /// `max_connections`: client connections open at once. At the limit a
    /// new connection closes the longest-idle keep-alive connection, or gets
    /// 503 when none is idle. Each connection may hold one RPC body of up to
    /// `max_request_bytes` and two file descriptors. Default 1024.
    pub max_connections: usize,
}

impl ProxyConfig {
    /// Returns the defaults for Odoo listening on `odoo_port`.
    pub fn defaults(odoo_port: u16) -> Self {
        Self {
            listen: None,
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, odoo_port)),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            request_timeout: Duration::from_secs(60),
            upstream_timeout: Duration::from_secs(300),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// `[proxy]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub listen: Option<Spanned<String>>,
    pub upstream: Option<Spanned<String>>,
    pub max_request_bytes: Option<Spanned<usize>>,
    pub request_timeout_secs: Option<Spanned<u64>>,
    pub upstream_timeout_secs: Option<Spanned<u64>>,
    pub max_connections: Option<Spanned<usize>>,
}

/// Checks `[proxy]`; `odoo_port` is the first of `odoo.ports`.
pub(super) fn build(raw: RawProxy, odoo_port: u16) -> Result<ProxyConfig, Problem> {
    let RawProxy { listen, upstream, max_request_bytes, request_timeout_secs, upstream_timeout_secs, max_connections } = raw;
    let defaults = ProxyConfig::defaults(odoo_port);

    let listen_span = listen.as_ref().map(Spanned::span);
    let listen = listen.as_ref().map(socket_address).transpose()?;
    let upstream = upstream.as_ref().map(socket_address).transpose()?.unwrap_or(defaults.upstream);
    if let (Some(listen), Some(span)) = (listen, listen_span) {
        if listen == upstream {
            let message = format!(
                "listen and upstream are both {listen}: odoogate would forward to itself; \
                 move Odoo to another port and set upstream to it"
            );
            return Err(Problem::new(span, message));
        }
    }

    Ok(ProxyConfig {
        listen,
        upstream,
        max_request_bytes: max_request_bytes.map_or(Ok(defaults.max_request_bytes), request_size)?,
        request_timeout: request_timeout_secs.map_or(Ok(defaults.request_timeout), seconds)?,
        upstream_timeout: upstream_timeout_secs.map_or(Ok(defaults.upstream_timeout), seconds)?,
        max_connections: max_connections.map_or(Ok(defaults.max_connections), connection_count)?,
    })
}

pub(super) fn socket_address(text: &Spanned<String>) -> Result<SocketAddr, Problem> {
    let parsed = text.get_ref().trim().parse::<SocketAddr>().ok().filter(|address| address.port() != 0);
    parsed.ok_or_else(|| {
        let message = format!(
            "expected an address and a port from 1 to 65535 such as \"127.0.0.1:8070\" or \"[::1]:8070\", found {:?}",
            text.get_ref()
        );
        Problem::new(text.span(), message)
    })
}

fn request_size(value: Spanned<usize>) -> Result<usize, Problem> {
    let bytes = *value.get_ref();
    if bytes < MIN_MAX_REQUEST_BYTES {
        let message = format!("expected at least {MIN_MAX_REQUEST_BYTES} bytes, found {bytes}");
        return Err(Problem::new(value.span(), message));
    }
    Ok(bytes)
}

fn connection_count(value: Spanned<usize>) -> Result<usize, Problem> {
    match *value.get_ref() {
        0 => Err(Problem::new(value.span(), "expected at least 1 (connections), found 0")),
        count => Ok(count),
    }
}

/// Maximum proxy timeout: 7 days. Far longer than any RPC call or idle
/// keep-alive connection, and short enough to add to the clock: a deadline
/// some 10^19 seconds away does not fit in it.
const MAX_TIMEOUT_SECS: u64 = 7 * 86_400;

pub(super) fn seconds(value: Spanned<u64>) -> Result<Duration, Problem> {
    match *value.get_ref() {
        0 => Err(Problem::new(value.span(), "expected at least 1 (seconds), found 0")),
        secs if secs > MAX_TIMEOUT_SECS => {
            Err(Problem::new(value.span(), format!("expected at most {MAX_TIMEOUT_SECS} (seconds, 7 days), found {secs}")))
        }
        secs => Ok(Duration::from_secs(secs)),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, InvalidConfig, parse};

    use super::*;

    const HEAD: &str = "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n\n[policy]\nmode = \"enforce\"\nunidentified = \"deny\"\n";

    fn invalid(text: &str) -> InvalidConfig {
        match parse(text, "gate.toml") {
            Err(ConfigError::Invalid(error)) => *error,
            Err(other) => panic!("expected an invalid-config error, got {other}"),
            Ok(config) => panic!("expected an error, got {:?}", config.proxy),
        }
    }

    #[test]
    fn defaults_follow_first_odoo_port() {
        let text = HEAD.replace("[8069]", "[8071, 8069]");
        let proxy = parse(&text, "gate.toml").unwrap().proxy;
        assert_eq!(proxy, ProxyConfig::defaults(8071));
        assert_eq!(proxy.upstream, "127.0.0.1:8071".parse().unwrap());
        assert_eq!(proxy.listen, None);
    }

    #[test]
    fn full_section_parses() {
        let text = format!(
            "{HEAD}\n[proxy]\nlisten = \"[::1]:8070\"\nupstream = \"127.0.0.1:18069\"\nmax_request_bytes = 1048576\n\
             request_timeout_secs = 5\nupstream_timeout_secs = 9\nmax_connections = 3000\n"
        );
        let proxy = parse(&text, "gate.toml").unwrap().proxy;
        assert_eq!(proxy.listen, Some("[::1]:8070".parse().unwrap()));
        assert_eq!(proxy.upstream, "127.0.0.1:18069".parse().unwrap());
        assert_eq!(proxy.max_request_bytes, 1_048_576);
        assert_eq!(proxy.request_timeout, Duration::from_secs(5));
        assert_eq!(proxy.upstream_timeout, Duration::from_secs(9));
        assert_eq!(proxy.max_connections, 3000);
    }

    #[test]
    fn listen_on_upstream_is_rejected() {
        let error = invalid(&format!("{HEAD}\n[proxy]\nlisten = \"127.0.0.1:8069\"\n"));
        assert_eq!((error.line, error.key.as_str()), (10, "proxy.listen"));
        assert!(error.message.contains("forward to itself"), "{error}");
    }

    #[test]
    fn address_without_port_is_rejected() {
        let error = invalid(&format!("{HEAD}\n[proxy]\nupstream = \"127.0.0.1\"\n"));
        assert_eq!((error.line, error.key.as_str()), (10, "proxy.upstream"));
        assert!(error.message.contains("expected an address and a port"), "{error}");

        let error = invalid(&format!("{HEAD}\n[proxy]\nlisten = \"127.0.0.1:0\"\n"));
        assert_eq!(error.key, "proxy.listen");
    }

    #[test]
    fn small_request_limit_is_rejected() {
        let error = invalid(&format!("{HEAD}\n[proxy]\nmax_request_bytes = 1000\n"));
        assert_eq!(error.key, "proxy.max_request_bytes");
        assert!(error.message.contains("at least 65536 bytes"), "{error}");
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let error = invalid(&format!("{HEAD}\n[proxy]\nupstream_timeout_secs = 0\n"));
        assert_eq!(error.key, "proxy.upstream_timeout_secs");
    }

    /// A timeout whose deadline does not fit in the clock would end every
    /// connection's task with a panic, so the loader rejects it.
    #[test]
    fn timeout_beyond_seven_days_is_rejected() {
        let error = invalid(&format!("{HEAD}\n[proxy]\nrequest_timeout_secs = 18446744073709551615\n"));
        assert_eq!(error.key, "proxy.request_timeout_secs");
        assert!(error.message.contains("at most 604800 (seconds, 7 days), found 18446744073709551615"), "{error}");
        let seven_days = parse(&format!("{HEAD}\n[proxy]\nupstream_timeout_secs = 604800\n"), "gate.toml").unwrap();
        assert_eq!(seven_days.proxy.upstream_timeout, Duration::from_secs(604_800));
    }

    #[test]
    fn zero_connections_rejected() {
        let error = invalid(&format!("{HEAD}\n[proxy]\nmax_connections = 0\n"));
        assert_eq!((error.line, error.key.as_str()), (10, "proxy.max_connections"));
        assert!(error.message.contains("at least 1"), "{error}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let error = invalid(&format!("{HEAD}\n[proxy]\nport = 8070\n"));
        assert!(error.message.contains("unknown field"), "{error}");
    }
}
