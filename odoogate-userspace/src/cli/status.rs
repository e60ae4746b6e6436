//! `odoogate status`: prints the running daemon's state from its control
//! socket.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde_json::Value;

use super::control_socket::{self, DaemonArgs};
use crate::control::ControlRequest;

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// Print the daemon's JSON response as it is.
    #[arg(long)]
    json: bool,
}

/// Exits 1 with a message when the daemon is not running.
pub fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let response = control_socket::send(&args.daemon, ControlRequest::Status)?;
    if response["ok"] != true {
        let error = response["error"].as_str().unwrap_or("no error message");
        anyhow::bail!("the daemon could not report its status: {error}");
    }
    if args.json {
        println!("{response}");
    } else {
        print!("{}", render(&response));
    }
    Ok(ExitCode::SUCCESS)
}

/// Renders a status object as indented `key: value` lines, in the
/// daemon's order, leaving out the `ok` flag.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(fields) = status {
        for (key, value) in fields.iter().filter(|(key, _)| key.as_str() != "ok") {
            render_field(&mut out, 0, key, value);
        }
    }
    out
}

fn render_field(out: &mut String, depth: usize, key: &str, value: &Value) {
    let indent = "  ".repeat(depth);
    match value {
        Value::Object(fields) if fields.is_empty() => {
            let _ = writeln!(out, "{indent}{key}: none");
        }
        Value::Object(fields) => {
            let _ = writeln!(out, "{indent}{key}:");
            for (key, value) in fields {
                render_field(out, depth + 1, key, value);
            }
        }
        Value::Array(items) if items.iter().all(|item| !item.is_object()) => {
            let items: Vec<String> = items.iter().map(scalar).collect();
            let shown = if items.is_empty() { "none".to_owned() } else { items.join(", ") };
            let _ = writeln!(out, "{indent}{key}: {shown}");
        }
        Value::Array(items) => {
            let _ = writeln!(out, "{indent}{key}:");
            for (index, item) in items.iter().enumerate() {
                render_field(out, depth + 1, &format!("[{index}]"), item);
            }
        }
        scalar_value => {
            let _ = writeln!(out, "{indent}{key}: {}", scalar(scalar_value));
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "unknown".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_nests_objects_and_lists() {
        let status = serde_json::json!({
            "ok": true,
            "mode": "observe",
            "integrations": { "crm": { "allow": 3, "would_deny": 1 } },
            "attachments": ["tcx ingress lo", "tcx egress lo"],
            "grants": [],
        });
        assert_eq!(
            render(&status),
            "mode: observe\nintegrations:\n  crm:\n    allow: 3\n    would_deny: 1\nattachments: tcx ingress lo, tcx egress lo\ngrants: none\n"
        );
    }
}
