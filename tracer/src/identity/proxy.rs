//! Which peers may speak for the client: trusted-proxy CIDRs, and the original client
//! from a `Forwarded` or `X-Forwarded-For` chain.
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use crate::http::Headers;

/// Where a trusted chain says the request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedClient {
    Address {
        ip: IpAddr,
        port: Option<u16>,
    },
    /// The first untrusted hop is `unknown`, obfuscated (`_hidden`) or unparseable: the
    /// client is not knowable, and the proxy is not it.
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub struct ProxyTrust {
    trusted: Vec<IpNet>,
}

impl ProxyTrust {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client named by the forwarding headers of a request whose socket peer is
    /// trusted: the right-most hop not in the trusted list (or the left-most hop when all
    /// are). `Forwarded` (RFC 7239) wins over `X-Forwarded-For` when both are present,
    /// since a proxy that sets the standard header means it. None when neither is sent.
    pub fn forwarded_client(&self, headers: &Headers) -> Option<ForwardedClient> {
        let mut hops: Vec<&[u8]> = Vec::new();
        for value in headers.get_all("forwarded") {
            hops.extend(
                split_list(value).map(|element| forwarded_for(element).unwrap_or(b"unknown")),
            );
        }
        if hops.is_empty() {
            for value in headers.get_all("x-forwarded-for") {
                hops.extend(split_list(value));
            }
        }
        let mut leftmost = None;
        for hop in hops.iter().rev() {
            let Some((ip, port)) = parse_node(hop) else {
                return Some(ForwardedClient::Unknown);
            };
            if !self.is_trusted(ip) {
                return Some(ForwardedClient::Address { ip, port });
            }
            leftmost = Some(ForwardedClient::Address { ip, port });
        }
        leftmost
    }
}

/// Comma-separated list elements, trimmed, empty ones dropped.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
}

/// The `for=` node of one `Forwarded` element (`for=1.2.3.4;proto=http;by=...`).
fn forwarded_for(element: &[u8]) -> Option<&[u8]> {
    element.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (name, value) = (&pair[..eq], &pair[eq + 1..]);
        name.trim_ascii().eq_ignore_ascii_case(b"for").then(|| {
            let value = value.trim_ascii();
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value)
        })
    })
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:5678`.
fn parse_node(node: &[u8]) -> Option<(IpAddr, Option<u16>)> {
    let node = std::str::from_utf8(node).ok()?;
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some((canonical(ip), None));
    }
    let (host, port) = match node.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?.parse().ok()?),
            };
            (host.parse::<Ipv6Addr>().ok().map(IpAddr::V6)?, port)
        }
        None => {
            let (host, port) = node.rsplit_once(':')?;
            (host.parse::<IpAddr>().ok()?, Some(port.parse().ok()?))
        }
    };
    Some((canonical(host), port))
}

/// IPv4-mapped IPv6 addresses are compared and reported as IPv4, like socket peers.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Headers {
        crate::identity::test_support::head("/", list).headers
    }

    fn trust(nets: &[&str]) -> ProxyTrust {
        ProxyTrust::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn addr(ip: &str, port: Option<u16>) -> Option<ForwardedClient> {
        Some(ForwardedClient::Address {
            ip: ip.parse().unwrap(),
            port,
        })
    }

    #[test]
    fn right_most_untrusted_hop_is_the_client() {
        let t = trust(&["10.0.0.0/8", "127.0.0.0/8"]);
        let h = headers(&[("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.1.1.1")]);
        assert_eq!(t.forwarded_client(&h), addr("203.0.113.7", None));
        let h = headers(&[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-For", "203.0.113.7:4444, 10.0.0.2"),
        ]);
        assert_eq!(t.forwarded_client(&h), addr("203.0.113.7", Some(4444)));
        let h = headers(&[("X-Forwarded-For", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(t.forwarded_client(&h), addr("10.0.0.3", None));
        assert_eq!(t.forwarded_client(&headers(&[("Host", "x")])), None);
    }

    #[test]
    fn forwarded_header_wins_and_carries_ports() {
        let t = trust(&["10.0.0.0/8"]);
        let h = headers(&[
            ("X-Forwarded-For", "1.1.1.1"),
            (
                "Forwarded",
                r#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711";by=10.0.0.1"#,
            ),
        ]);
        assert_eq!(
            t.forwarded_client(&h),
            addr("2001:db8:cafe::17", Some(4711))
        );
        let h = headers(&[("Forwarded", "for=_hidden, for=10.0.0.5")]);
        assert_eq!(t.forwarded_client(&h), Some(ForwardedClient::Unknown));
        let h = headers(&[("Forwarded", "proto=https")]);
        assert_eq!(t.forwarded_client(&h), Some(ForwardedClient::Unknown));
    }

    #[test]
    fn mapped_addresses_match_ipv4_nets() {
        let t = trust(&["127.0.0.0/8"]);
        assert!(t.is_trusted("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!t.is_trusted("::1".parse().unwrap()));
        assert!(!ProxyTrust::default().is_trusted("127.0.0.1".parse().unwrap()));
    }
}
