//! How the proxy opens its connections to Odoo.
//!
//! Listen mode connects straight to Odoo's address. Steered mode must open
//! its connections so that the `sk_lookup` program lets them through to
//! Odoo instead of steering them back to odoogate; that connector lives
//! with the steering code. Both share the request path through this trait.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Opens one connection to Odoo per forwarded request (Odoo's server
/// closes the connection after every response anyway).
pub trait UpstreamConnector: Send + Sync + 'static {
    /// Connects to Odoo. The caller bounds the wait with its own timeout.
    fn connect(&self) -> impl Future<Output = io::Result<TcpStream>> + Send;
}

/// Connects to a fixed address: listen mode, where odoogate is not steered
/// and its connections to Odoo need no bypass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectConnector {
    upstream: SocketAddr,
}

impl DirectConnector {
    pub fn new(upstream: SocketAddr) -> Self {
        Self { upstream }
    }
}

impl UpstreamConnector for DirectConnector {
    async fn connect(&self) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(self.upstream).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
