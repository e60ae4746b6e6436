//! `[metrics]`: the Prometheus endpoint, off unless `listen` is set.
//!
//! ```toml
//! [metrics]
//! listen = "127.0.0.1:9469"
//! ```

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::error::Problem;

/// `[metrics]`: where odoogate serves `GET /metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `listen`: the address of the HTTP endpoint. `None` (the default)
    /// serves no metrics. The endpoint has no authentication, so keep it
    /// on a loopback or otherwise private address.
    pub listen: Option<SocketAddr>,
}

/// `[metrics]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

/// Checks `[metrics]`.
pub(super) fn build(raw: RawMetrics) -> Result<MetricsConfig, Problem> {
    let listen = raw.listen.as_ref().map(super::proxy::socket_address).transpose()?;
    Ok(MetricsConfig { listen })
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, parse};

    const HEAD: &str = "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n\n[policy]\nmode = \"observe\"\nunidentified = \"allow\"\n";

    #[test]
    fn metrics_off_by_default() {
        let config = parse(HEAD, "gate.toml").unwrap();
        assert_eq!(config.metrics.listen, None);
    }

    #[test]
    fn metrics_listen_is_read() {
        let text = format!("{HEAD}\n[metrics]\nlisten = \"127.0.0.1:9469\"\n");
        let config = parse(&text, "gate.toml").unwrap();
        assert_eq!(config.metrics.listen, Some("127.0.0.1:9469".parse().unwrap()));
    }

    #[test]
    fn metrics_listen_rejects_bad_address() {
        for listen in ["localhost", "127.0.0.1:0", "127.0.0.1"] {
            let text = format!("{HEAD}\n[metrics]\nlisten = \"{listen}\"\n");
            let Err(ConfigError::Invalid(error)) = parse(&text, "gate.toml") else {
                panic!("{listen:?} was accepted");
            };
            let message = error.to_string();
            assert!(message.contains("gate.toml:10:"), "{message}");
            assert!(message.contains("metrics.listen"), "{message}");
            assert!(message.contains("expected an address and a port"), "{message}");
        }
    }

    #[test]
    fn metrics_rejects_unknown_key() {
        let text = format!("{HEAD}\n[metrics]\nport = 9469\n");
        assert!(parse(&text, "gate.toml").is_err());
    }
}
