//! The client address of a request, through trusted reverse proxies.
//!
//! A proxy appends the address it received the request from to
//! `Forwarded` (RFC 7239) or `X-Forwarded-For`. Only entries added by
//! trusted proxies can be believed, so the list is read from the right:
//! trusted proxies are skipped and the first other address is the client.
//! Anything left of it was written by the client and could be forged.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::http::message::Headers;

/// Most list entries read from the right, which bounds the work on a header
/// stuffed with addresses; real proxy chains are a handful long.
const MAX_HOPS: usize = 32;

/// The header a trusted proxy writes the client address into.
///
/// Only one header may be believed: a proxy that appends to one passes the
/// other through from the client untouched, so reading both lets a client
/// pick its own address. nginx (`proxy_add_x_forwarded_for`), HAProxy
/// (`option forwardfor`) and Apache's mod_proxy append `X-Forwarded-For`
/// by default, which is why it is the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…`.
    Forwarded,
}

/// Returns the client address of a request that arrived from `peer`.
///
/// From an untrusted peer, the headers are ignored and the peer is the
/// client. From a trusted one, the `header` chosen is read from the right.
/// When it names no usable address (for example `for=unknown` or an
/// obfuscated `for=_hidden`), the peer is the client.
pub fn client_ip(peer: IpAddr, headers: &Headers, trusted: &[IpNet], header: ForwardedHeader) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }

    let hops = match header {
        ForwardedHeader::XForwardedFor => {
            let values: Vec<&[u8]> = headers.get_all("x-forwarded-for").map(|value| value.as_ref()).collect();
            values.iter().flat_map(|value| split_list(value)).map(parse_node).collect::<Vec<_>>()
        }
        ForwardedHeader::Forwarded => {
            let values: Vec<&[u8]> = headers.get_all("forwarded").map(|value| value.as_ref()).collect();
            values.iter().flat_map(|value| split_list(value)).map(forwarded_for).collect::<Vec<_>>()
        }
    };

    rightmost_untrusted(&hops, trusted).unwrap_or(peer)
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// Walks the hops from the right and returns the first one that is not a
/// trusted proxy. An unusable hop ends the walk: what lies left of it
/// cannot be tied to a trusted writer. When every hop is trusted, the
/// leftmost one is the client.
fn rightmost_untrusted(hops: &[Option<IpAddr>], trusted: &[IpNet]) -> Option<IpAddr> {
    let mut last_trusted = None;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let ip = (*hop)?.to_canonical();
        if !is_trusted(ip, trusted) {
            return Some(ip);
        }
        last_trusted = Some(ip);
    }
    if hops.len() > MAX_HOPS {
        return None;
    }
    last_trusted
}

/// Splits a comma-separated header value, keeping commas inside quoted
/// strings, and drops empty elements (RFC 9110 section 5.6.1).
fn split_list(value: &[u8]) -> Vec<&[u8]> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (index, &byte) in value.iter().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                items.push(&value[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items.into_iter().map(<[u8]>::trim_ascii).filter(|item| !item.is_empty()).collect()
}

/// Returns the address of the `for` parameter of one `Forwarded` element
/// (`for=192.0.2.60;proto=http`, `for="[2001:db8::1]:4711"`). `None` when the
/// element has no usable `for`.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(element).ok()?;
    let value = text.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value.trim())
    })?;
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    parse_node(value.as_bytes())
}

/// Parses a node: an address, optionally with a port, IPv6 in brackets when
/// a port follows (`192.0.2.43`, `192.0.2.43:47011`, `[2001:db8::17]:4711`,
/// `2001:db8::17`).
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(node).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let bracketed = text.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<IpAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn headers(fields: &[(&str, &str)]) -> Headers {
        Headers(fields.iter().map(|(n, v)| ((*n).into(), Bytes::copy_from_slice(v.as_bytes()))).collect())
    }

    fn trusted() -> Vec<IpNet> {
        vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()]
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        let h = headers(&[("X-Forwarded-For", "198.51.100.7"), ("Forwarded", "for=198.51.100.8")]);
        assert_eq!(client_ip(ip("203.0.113.5"), &h, &trusted(), ForwardedHeader::XForwardedFor), ip("203.0.113.5"));
    }

    #[test]
    fn xff_takes_rightmost_untrusted() {
        let h = headers(&[("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::XForwardedFor), ip("198.51.100.7"));
    }

    #[test]
    fn xff_fields_join_in_order() {
        let h = headers(&[("X-Forwarded-For", "6.6.6.6"), ("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::XForwardedFor), ip("198.51.100.7"));
    }

    #[test]
    fn all_trusted_hops_give_leftmost() {
        let h = headers(&[("X-Forwarded-For", "10.0.0.9, 10.0.0.8")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::XForwardedFor), ip("10.0.0.9"));
    }

    #[test]
    fn only_the_chosen_header_counts() {
        let h = headers(&[("X-Forwarded-For", "198.51.100.9"), ("Forwarded", "for=198.51.100.7;proto=https")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::Forwarded), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::XForwardedFor), ip("198.51.100.9"));
    }

    #[test]
    fn client_forwarded_header_cannot_spoof_through_xff_proxy() {
        // nginx appends X-Forwarded-For and passes the client's Forwarded on.
        let h = headers(&[("Forwarded", "for=127.0.0.2"), ("X-Forwarded-For", "198.51.100.9")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::default()), ip("198.51.100.9"));
    }

    #[test]
    fn forwarded_quoted_ipv6_with_port() {
        let h = headers(&[("Forwarded", "for=6.6.6.6, For=\"[2001:db8:cafe::17]:4711\"")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::Forwarded), ip("2001:db8:cafe::17"));
    }

    #[test]
    fn forwarded_ipv4_with_port() {
        let h = headers(&[("Forwarded", "proto=http;for=\"192.0.2.43:47011\"")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::Forwarded), ip("192.0.2.43"));
    }

    #[test]
    fn forwarded_unknown_falls_back_to_peer() {
        let h = headers(&[("Forwarded", "for=198.51.100.7, for=unknown"), ("X-Forwarded-For", "6.6.6.6")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::Forwarded), ip("127.0.0.1"));
    }

    #[test]
    fn forwarded_quoted_comma_stays_in_element() {
        let h = headers(&[("Forwarded", "for=198.51.100.7;by=\"a,b\"")]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::Forwarded), ip("198.51.100.7"));
    }

    #[test]
    fn mapped_ipv4_peer_is_canonical() {
        let h = headers(&[("X-Forwarded-For", "198.51.100.7")]);
        assert_eq!(client_ip(ip("::ffff:127.0.0.1"), &h, &trusted(), ForwardedHeader::XForwardedFor), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("::ffff:203.0.113.5"), &h, &trusted(), ForwardedHeader::XForwardedFor), ip("203.0.113.5"));
    }

    #[test]
    fn too_many_trusted_hops_fall_back_to_peer() {
        let chain = vec!["10.0.0.1"; MAX_HOPS + 1].join(", ");
        let h = headers(&[("X-Forwarded-For", chain.as_str())]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &trusted(), ForwardedHeader::XForwardedFor), ip("127.0.0.1"));
    }

    #[test]
    fn no_headers_from_trusted_peer_gives_peer() {
        assert_eq!(client_ip(ip("127.0.0.1"), &Headers::default(), &trusted(), ForwardedHeader::XForwardedFor), ip("127.0.0.1"));
    }
}
