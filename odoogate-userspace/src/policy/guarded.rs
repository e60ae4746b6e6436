//! Guarded calls: calls that grant privileges or run code on the server.
//!
//! A guarded call is allowed only by a rule that names its model and its
//! method exactly, without a wildcard, so `models = ["*"], methods = ["*"]`
//! never allows one by accident. The list, with the reason for each entry:
//!
//! - Group membership fields (`groups_id`, `group_ids`, `sel_groups_*`,
//!   `in_group_*`) written by `create`, `write` or `web_save` on any model,
//!   nested ones (`user_ids.groups_id`) included, and by `copy` (its
//!   `default` values) and `load` (its column names, such as
//!   `groups_id/id`): groups decide every access right and record rule, so
//!   this is privilege escalation.
//! - `module_*` and `group_*` fields of `res.config.settings`, written or
//!   applied with `execute`/`set_values`: they install modules and change
//!   the groups of every user.
//! - `password` and `new_password` on `res.users` (also through `copy` and
//!   `load`): setting another user's password takes over that account.
//! - Record changes (`create`, `write`, `unlink`, `copy`, `web_save`,
//!   `load`, `name_create`) on:
//!   `res.groups` and `res.users.apikeys` (access rights and credentials);
//!   `ir.model.access` and `ir.rule` (the access control lists and record
//!   rules themselves); `ir.config_parameter` (system settings such as
//!   `web.base.url` and `auth_signup`, which change who can sign up and
//!   where links point); `ir.cron`, `ir.actions.server` and
//!   `base.automation` (they hold Python code the server runs);
//!   `ir.model` and `ir.model.fields` (custom fields carry compute code and
//!   change the schema); `ir.ui.view` (QWeb templates evaluate expressions
//!   when rendered); `mail.template` (its subject and body are rendered with
//!   expressions evaluated on the server, and it controls what mail goes
//!   out in the company's name).
//! - Methods that act at once: `ir.config_parameter.set_param`,
//!   `ir.actions.server.run`, `ir.cron.method_direct_trigger`.
//! - Module management, which installs or removes code: every `button_*`
//!   method of `ir.module.module`, its `module_uninstall`, `update_list`,
//!   `download` and `install_from_urls`, and the wizards
//!   `base.module.upgrade.upgrade_module`, `base.module.update.update_module`
//!   and `base.module.uninstall.action_uninstall`.
//! - Every `db` service management method (create, duplicate, drop, dump,
//!   restore, rename, change the master password, migrate), matched as
//!   model `db`: each one copies, destroys or replaces a whole database.
//!
//! NOTE: custom modules can add methods with the same effect (a method that
//! calls `sudo().write(...)` on one of these models); odoogate cannot see
//! that and only guards the calls above.

use crate::rpc::call::{Call, CallKind};

/// One entry of the guarded list. A pattern ending in `*` matches by
/// prefix, `*` alone matches anything.
#[derive(Debug)]
pub struct Guard {
    pub models: &'static [&'static str],
    pub methods: &'static [&'static str],
    /// Fields that make a call guarded; empty means any call of the
    /// methods. A written field matches when any of its `.`-separated
    /// parts does.
    pub fields: &'static [&'static str],
    /// Why the call is guarded, for the verdict's reason.
    pub why: &'static str,
}

/// Methods that change records.
const RECORD_CHANGES: &[&str] = &["create", "write", "unlink", "copy", "web_save", "load", "name_create"];

/// The guarded calls; the module documentation gives the reason of each.
pub const GUARDS: &[Guard] = &[
    Guard {
        models: &["res.config.settings"],
        methods: &["create", "write", "web_save", "execute", "set_values"],
        fields: &["module_*", "group_*"],
        why: "its module_* fields install modules and its group_* fields change group membership",
    },
    Guard {
        models: &["*"],
        methods: &["create", "write", "web_save", "copy", "load"],
        fields: &["groups_id", "group_ids", "sel_groups_*", "in_group_*"],
        why: "it changes group membership, which grants access rights",
    },
    Guard {
        models: &["res.users"],
        methods: &["create", "write", "web_save", "copy", "load"],
        fields: &["password", "new_password"],
        why: "it sets a user's password",
    },
    Guard {
        models: &["res.groups", "res.users.apikeys", "ir.model.access", "ir.rule"],
        methods: RECORD_CHANGES,
        fields: &[],
        why: "it changes access rights or credentials",
    },
    Guard {
        models: &["ir.config_parameter"],
        methods: RECORD_CHANGES,
        fields: &[],
        why: "it changes system settings",
    },
    Guard { models: &["ir.config_parameter"], methods: &["set_param"], fields: &[], why: "it changes system settings" },
    Guard {
        models: &["ir.cron", "ir.actions.server", "base.automation"],
        methods: RECORD_CHANGES,
        fields: &[],
        why: "it changes code the server runs",
    },
    Guard {
        models: &["ir.actions.server"],
        methods: &["run"],
        fields: &[],
        why: "it runs server action code",
    },
    Guard {
        models: &["ir.cron"],
        methods: &["method_direct_trigger"],
        fields: &[],
        why: "it runs a scheduled action's code now",
    },
    Guard {
        models: &["ir.model", "ir.model.fields"],
        methods: RECORD_CHANGES,
        fields: &[],
        why: "it changes the data model and its compute code",
    },
    Guard {
        models: &["ir.ui.view", "mail.template"],
        methods: RECORD_CHANGES,
        fields: &[],
        why: "it changes templates whose expressions the server evaluates",
    },
    Guard {
        models: &["ir.module.module"],
        methods: &["button_*", "module_uninstall", "update_list", "download", "install_from_urls"],
        fields: &[],
        why: "it installs, upgrades or removes modules",
    },
    Guard {
        models: &["base.module.upgrade"],
        methods: &["upgrade_module"],
        fields: &[],
        why: "it installs, upgrades or removes modules",
    },
    Guard {
        models: &["base.module.update"],
        methods: &["update_module"],
        fields: &[],
        why: "it installs, upgrades or removes modules",
    },
    Guard {
        models: &["base.module.uninstall"],
        methods: &["action_uninstall"],
        fields: &[],
        why: "it installs, upgrades or removes modules",
    },
];

/// Returns the guard that covers `call` on `model.method`, if any. Every
/// database service call is guarded.
pub fn guard_of(call: &Call, model: &str, method: &str) -> Option<&'static str> {
    if call.kind == CallKind::Database {
        return Some("it manages whole databases");
    }
    GUARDS.iter().find(|guard| covers(guard, call, model, method)).map(|guard| guard.why)
}

fn covers(guard: &Guard, call: &Call, model: &str, method: &str) -> bool {
    // Cheapest test first: most calls match no guard's model, so their
    // fields are never looked at.
    if !guard.models.iter().any(|pattern| pattern_matches(pattern, model))
        || !guard.methods.iter().any(|pattern| pattern_matches(pattern, method))
    {
        return false;
    }
    guard.fields.is_empty()
        || call.fields.iter().any(|field| {
            // `.` separates nested x2many fields, `/` the parts of a `load`
            // column such as `groups_id/id`.
            field.split(['.', '/']).any(|part| guard.fields.iter().any(|pattern| pattern_matches(pattern, part)))
        })
}

fn pattern_matches(pattern: &str, text: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => pattern == text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::call::Protocol;

    fn call(model: &str, method: &str, fields: &[&str]) -> Call {
        let mut call = Call::new(Protocol::JsonRpc, CallKind::Model);
        call.model = Some(model.to_owned());
        call.method = Some(method.to_owned());
        call.fields = fields.iter().map(|f| (*f).to_owned()).collect();
        call
    }

    fn guarded(model: &str, method: &str, fields: &[&str]) -> bool {
        guard_of(&call(model, method, fields), model, method).is_some()
    }

    #[test]
    fn group_fields_are_guarded() {
        assert!(guarded("res.users", "write", &["name", "groups_id"]));
        assert!(guarded("res.users", "write", &["sel_groups_1_9_10"]));
        assert!(guarded("res.users", "create", &["in_group_7"]));
        assert!(guarded("res.partner", "write", &["user_ids", "user_ids.group_ids"]));
        assert!(!guarded("res.users", "write", &["name", "email"]));
        assert!(!guarded("res.users", "read", &["groups_id"]));
    }

    #[test]
    fn copy_and_load_cannot_set_groups_or_passwords() {
        assert!(guarded("res.users", "copy", &["groups_id"]));
        assert!(guarded("res.users", "copy", &["password"]));
        assert!(guarded("res.users", "load", &["login", "groups_id/id"]));
        assert!(guarded("res.users", "load", &["login", "password"]));
        assert!(!guarded("res.users", "copy", &["name"]));
    }

    #[test]
    fn settings_that_install_modules_are_guarded() {
        assert!(guarded("res.config.settings", "create", &["module_crm"]));
        assert!(guarded("res.config.settings", "execute", &["group_multi_currency"]));
        assert!(!guarded("res.config.settings", "create", &["company_name"]));
    }

    #[test]
    fn code_models_are_guarded() {
        assert!(guarded("ir.actions.server", "write", &["code"]));
        assert!(guarded("ir.actions.server", "run", &[]));
        assert!(guarded("ir.ui.view", "create", &["arch"]));
        assert!(guarded("ir.module.module", "button_immediate_install", &[]));
        assert!(guarded("ir.config_parameter", "set_param", &[]));
        assert!(!guarded("ir.ui.view", "read", &["arch"]));
        assert!(!guarded("ir.module.module", "search_read", &[]));
    }

    #[test]
    fn database_calls_are_guarded() {
        let mut drop = Call::new(Protocol::XmlRpc, CallKind::Database);
        drop.method = Some("drop".to_owned());
        assert!(guard_of(&drop, "db", "drop").is_some());
    }
}
