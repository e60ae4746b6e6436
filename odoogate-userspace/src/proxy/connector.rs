//! How the proxy opens its connections to Odoo.
//!
//! Listen mode connects straight to Odoo's address. Steered mode must open
//! its connections so that the `sk_lookup` program lets them through to
//! Odoo instead of steering them back to odoogate; that connector lives
//! with the steering code. Both share the request path through this trait.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::steer::Steering;

/// Opens new connections to Odoo. Connections that Odoo keeps open go
/// back to the proxy's pool, so this runs only when the pool has none.
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

/// Connects from a local port that the `sk_lookup` steering lets through
/// to Odoo, so odoogate's own connections are not steered back to itself.
#[derive(Clone, Debug)]
pub struct SteeredConnector {
    steering: Arc<Steering>,
    upstream: SocketAddr,
}

impl SteeredConnector {
    pub fn new(steering: Arc<Steering>, upstream: SocketAddr) -> Self {
        Self { steering, upstream }
    }
}

impl UpstreamConnector for SteeredConnector {
    async fn connect(&self) -> io::Result<TcpStream> {
        let (socket, lease) = self.steering.upstream_socket(self.upstream).map_err(io::Error::other)?;
        let stream = socket.connect(self.upstream).await?;
        // The sk_lookup program runs only when a SYN looks up a listening
        // socket, so an established connection no longer needs its bypass
        // and the port is released at once rather than when it closes.
        drop(lease);
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
