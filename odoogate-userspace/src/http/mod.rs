//! HTTP/1.x framing of reassembled byte streams, in both directions.
//!
//! `message` holds the framed request and response types; `framer` turns the
//! bytes of one direction of a flow into messages, flags the framings that
//! Odoo's server (werkzeug) could read differently, and resynchronises at
//! the next request or status line after a gap.

pub mod framer;
pub mod message;

pub use message::{FramingAnomaly, HeaderName, Headers, HttpRequest, HttpResponse, HttpVersion};
