//! Which hosts a server without keys answers for: its `Host` and a browser's `Origin` checked,
//! so a web page can reach it neither by DNS rebinding nor by a cross-site request.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Uri, header};

use super::error::ApiError;

/// The names every server answers for: the loopback ones.
const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The host names a server answers for, without ports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts {
    /// Any host (`*` was given).
    any: bool,
    /// The names beyond the loopback ones, lowercase.
    names: Vec<String>,
}

impl Hosts {
    /// These hosts and `more` (`NAME`, `NAME:PORT` or an origin, `SCHEME://NAME[:PORT]`; `*`
    /// allows any). A name that is not a host's is logged and left out.
    pub(crate) fn with(mut self, more: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        for name in more {
            let name = name.as_ref().trim();
            let bare = name.split_once("://").map_or(name, |(_, rest)| rest).trim_end_matches('/');
            if name == "*" {
                self.any = true;
            } else if let Some(host) = host_of(bare) {
                self.names.push(host);
            } else {
                tracing::warn!(name, "not a host name: left out of the allowed hosts");
            }
        }
        self
    }

    /// These hosts and the address a server listens on.
    pub(crate) fn with_address(self, address: SocketAddr) -> Self {
        let literal = match address.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        self.with([literal])
    }

    /// Refuses a request whose `Host` (or, without one, the URI's authority) is not one of
    /// these hosts, or whose `Origin` names another host (`Origin: null` included).
    pub(crate) fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
        if self.any {
            return Ok(());
        }
        let host = match headers.get(header::HOST) {
            Some(value) => value.to_str().ok().and_then(host_of),
            None => uri.authority().and_then(|authority| host_of(authority.as_str())),
        };
        if !host.is_some_and(|host| self.allows(&host)) {
            return Err(ApiError::foreign_host("Host"));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host =
                origin.to_str().ok().and_then(|origin| origin.split_once("://")).and_then(|(_, rest)| host_of(rest));
            if !host.is_some_and(|host| self.allows(&host)) {
                return Err(ApiError::foreign_host("Origin"));
            }
        }
        Ok(())
    }

    fn allows(&self, host: &str) -> bool {
        LOOPBACK.contains(&host) || self.names.iter().any(|name| name == host)
    }
}

/// The host of `HOST[:PORT]` (an IPv6 address in brackets), lowercase, without a trailing dot;
/// `None` when it is not one.
fn host_of(authority: &str) -> Option<String> {
    let host = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let port = &authority[end + 1..];
        (port.is_empty() || is_port(port.strip_prefix(':')?)).then_some(&authority[..=end])?
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let valid = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    valid.then_some(host)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(hosts: &Hosts, host: &str, origin: Option<&str>) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        hosts.check(&headers, &Uri::from_static("/")).is_ok()
    }

    #[test]
    fn loopback_names_and_the_listening_address_are_allowed() {
        let hosts = Hosts::default().with_address("192.168.1.5:8080".parse().unwrap());
        for host in
            ["localhost", "localhost:8080", "127.0.0.1:1", "[::1]:8080", "[::1]", "192.168.1.5:8080", "LocalHost."]
        {
            assert!(check(&hosts, host, None), "{host}");
        }
        for host in ["192.168.1.6", "evil.example", "localhost.evil.example", "localhost:x", "[::1]x", ""] {
            assert!(!check(&hosts, host, None), "{host}");
        }
        assert!(check(&hosts, "localhost", Some("http://192.168.1.5:3000")));
        assert!(!check(&hosts, "localhost", Some("https://evil.example")));
        assert!(!check(&hosts, "localhost", Some("null")));
        let v6 = Hosts::default().with_address("[fd00::1]:80".parse().unwrap());
        assert!(check(&v6, "[fd00::1]", None) && !check(&v6, "[fd00::2]", None));
    }

    #[test]
    fn more_names_and_any() {
        let hosts =
            Hosts::default().with(["Chat.Internal:8443", " api.example.com ", "https://App.Example.com/", "a b"]);
        assert!(check(&hosts, "chat.internal", Some("https://api.example.com")));
        assert!(check(&hosts, "app.example.com:443", None));
        assert!(!check(&hosts, "example.com", None));
        assert_eq!(hosts.names.len(), 3, "a name that is not a host's is left out");
        assert!(check(&Hosts::default().with(["*"]), "anything.example", Some("null")));
    }
}
