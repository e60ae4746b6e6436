//! odoogate: attributes every Odoo RPC call to an integration, decides on it
//! by that integration's scopes, and writes one audit record per call.
//!
//! The modules follow the data flow of the observe path:
//!
//! ```text
//! capture (eBPF, ring buffer, flows, reassembly) -> http (framing)
//!   -> rpc (decoders) -> identity -> policy (pure decide) -> audit
//! ```
//!
//! `pipeline` joins the stages, `cli` is the command line, and `upstream` and
//! `demo` are the Odoo-like server and the self-contained demonstration.

pub mod audit;
pub mod capture;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
pub mod grant;
pub mod http;
pub mod identity;
pub mod json_text;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod preflight;
pub mod proxy;
pub mod rpc;
#[doc(hidden)]
pub mod scratch;
pub mod secret;
pub mod state_file;
pub mod steer;
pub mod token;
pub mod upstream;
