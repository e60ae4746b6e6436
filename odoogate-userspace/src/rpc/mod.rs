//! Decoders for Odoo's RPC surfaces: one module per surface, each turning a
//! framed [`HttpRequest`](crate::http::HttpRequest) into a [`Call`] and a
//! framed response into an [`Outcome`].

pub mod call;
pub mod json2;
pub mod jsonrpc;
pub mod response;
pub mod value;
pub mod web;
pub mod xmlrpc;

pub use call::{Call, CallKind, Credential, CredentialSlot, DecodeError, Outcome, Protocol};
