//! Web routes opened with an integration's web session.
//!
//! An integration that authenticates through `/web/session/authenticate`
//! gets a session cookie with the rights of the Odoo user behind it, which
//! is the shared user when odoogate swapped a scoped token for the service
//! credential. RPC routes carrying that cookie are decided call by call,
//! but the web client's other routes (`/web/content`, `/web/export/xlsx`,
//! report downloads) run no RPC call odoogate could check. So such a
//! request is denied unless the integration's `web_routes` lists its path.
//! Static files, asset bundles and logging out are always allowed, since
//! they give nothing the user's rights protect.

use std::sync::LazyLock;

use crate::config::Integration;
use crate::policy::glob::Glob;

/// Paths of a session that are allowed whatever `web_routes` lists:
/// static files of any module, asset bundles, and logging out.
static ALWAYS_ALLOWED: LazyLock<[Glob; 3]> = LazyLock::new(|| {
    ["/*/static/**", "/web/assets/**", "/web/session/logout"].map(|pattern| Glob::path(pattern).expect("a valid glob"))
});

/// Checks `path` (the request target without its query) against the web
/// routes of `integration`, the integration whose session the request
/// carries. Returns the reason for a denial.
pub fn check(integration: &Integration, path: &str) -> Result<(), String> {
    let name = &integration.name;
    if !is_plain(path) {
        return Err(format!(
            "the path of a request on {name}'s web session has percent-escapes, empty or dot segments, \
             which odoogate does not match against web_routes"
        ));
    }
    if ALWAYS_ALLOWED.iter().any(|glob| glob.matches(path)) {
        return Ok(());
    }
    if integration.web_routes.iter().any(|glob| glob.matches(path)) {
        return Ok(());
    }
    Err(format!("{path} is not in {name}.web_routes, and a web session opens only RPC calls and the routes listed there"))
}

/// Tells whether `path` is one that every session may open, static files,
/// asset bundles or the logout, read as [`check`] reads it.
pub fn is_always_allowed(path: &str) -> bool {
    is_plain(path) && ALWAYS_ALLOWED.iter().any(|glob| glob.matches(path))
}

/// Tells whether a path reads the same however a server normalizes it: no
/// percent-escape, no empty, `.` or `..` segment. Werkzeug decodes escapes
/// before routing, so `/web/%63ontent` reaches `/web/content`.
fn is_plain(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !path.contains('%') && (rest.is_empty() || rest.split('/').all(|segment| !matches!(segment, "" | "." | "..")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Match;

    fn integration(routes: &[&str]) -> Integration {
        Integration {
            name: "portal".to_owned(),
            matcher: Match { token: true, ..Match::default() },
            rules: Vec::new(),
            enabled: true,
            rate: None,
            web_routes: routes.iter().map(|route| Glob::path(route).unwrap()).collect(),
        }
    }

    #[test]
    fn unlisted_route_is_denied() {
        let reason = check(&integration(&[]), "/web/content/ir.attachment/5/datas").unwrap_err();
        assert_eq!(
            reason,
            "/web/content/ir.attachment/5/datas is not in portal.web_routes, and a web session opens only RPC calls \
             and the routes listed there"
        );
    }

    #[test]
    fn listed_route_is_allowed() {
        let portal = integration(&["/web/content/**", "/report/pdf/sale.report_saleorder/*"]);
        assert!(check(&portal, "/web/content/ir.attachment/5/datas").is_ok());
        assert!(check(&portal, "/report/pdf/sale.report_saleorder/7").is_ok());
        assert!(check(&portal, "/report/pdf/account.report_invoice/7").is_err());
    }

    #[test]
    fn static_files_and_logout_are_allowed() {
        let portal = integration(&[]);
        assert!(check(&portal, "/web/static/src/img/logo.png").is_ok());
        assert!(check(&portal, "/sale/static/description/icon.png").is_ok());
        assert!(check(&portal, "/web/assets/1/web.assets_web.min.js").is_ok());
        assert!(check(&portal, "/web/session/logout").is_ok());
        assert!(check(&portal, "/web/session/logout/more").is_err());
    }

    #[test]
    fn escaped_and_dot_paths_are_denied() {
        let portal = integration(&["/web/content/**"]);
        for path in [
            "/web/%63ontent/1",
            "/web/static/../content/1",
            "/web/content/./1",
            "/web//content/1",
            "web/content/1",
            "/web/static/%2e%2e/export/xlsx",
        ] {
            assert!(check(&portal, path).is_err(), "{path}");
        }
    }
}
