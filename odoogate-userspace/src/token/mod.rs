//! Scoped tokens: odoogate-issued secrets that each stand for one
//! integration, and the service credential that replaces them on the way
//! to Odoo.
//!
//! - [`format`]: the token text (`odg_` prefix, base62, checksum).
//! - [`store`]: the token store file, verification and the CLI operations.
//! - [`credentials`]: the real Odoo credential odoogate forwards in place of
//!   a token.
//! - [`rewrite`]: the request sent upstream with the token swapped out.

pub mod credentials;
pub mod format;
pub mod rewrite;
pub mod store;

pub use credentials::{CredentialsError, ServiceCredentials};
pub use rewrite::{RewriteError, edit_json_body, edit_xml_fields, rewrite_request, rewrite_request_with_headers};
pub use store::{TokenCheck, TokenError, TokenRecord, TokenState, TokenStore};
