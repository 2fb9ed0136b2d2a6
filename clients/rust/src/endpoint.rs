//! [`Endpoint`]: where a [`Client`](super::Client) connects and over which
//! transport (docs/protocol.md §1, §1.1, §1.2), parsed from `HOST:PORT`,
//! `tls://HOST:PORT`, `ws://HOST[:PORT][/PATH]` or `wss://HOST[:PORT][/PATH]`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use super::ClientError;

/// The transport of an [`Endpoint`] (docs/protocol.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// One JSON-RPC message per `\n`-terminated line over plain TCP
    /// (`HOST:PORT` or `tcp://HOST:PORT`).
    Tcp,
    /// The same lines inside TLS 1.2 or 1.3 (`tls://HOST:PORT`, docs/protocol.md §1.2).
    Tls,
    /// One JSON-RPC message per WebSocket text message (`ws://…`, RFC 6455,
    /// docs/protocol.md §1.1).
    Ws,
    /// WebSocket inside TLS (`wss://…`, docs/protocol.md §1.1–§1.2).
    Wss,
}

impl Transport {
    /// The URL scheme: `tcp`, `tls`, `ws` or `wss`.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// Whether the transport runs inside TLS (`tls://`, `wss://`).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// Whether the transport is WebSocket (`ws://`, `wss://`).
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    /// The port a URL of this scheme means when it names none: 80 for `ws`,
    /// 443 for `wss` (RFC 6455 §3); `None` for `tcp` and `tls`, which must
    /// name one.
    fn default_port(self) -> Option<u16> {
        match self {
            Self::Ws => Some(80),
            Self::Wss => Some(443),
            Self::Tcp | Self::Tls => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme())
    }
}

/// A parsed server address: transport, host, port and (WebSocket only) the
/// request path.
///
/// Parsed with [`str::parse`] from one of these forms (the scheme is
/// case-insensitive):
///
/// | form | transport |
/// |---|---|
/// | `HOST:PORT`, `tcp://HOST:PORT` | [`Transport::Tcp`] |
/// | `tls://HOST:PORT` | [`Transport::Tls`] |
/// | `ws://HOST[:PORT][/PATH][?QUERY]` | [`Transport::Ws`] (port 80 by default) |
/// | `wss://HOST[:PORT][/PATH][?QUERY]` | [`Transport::Wss`] (port 443 by default) |
///
/// `HOST` is a name, an IPv4 address or a bracketed IPv6 address
/// (`[::1]:7777`). The server accepts the WebSocket upgrade on any path
/// (docs/protocol.md §1.1); the path defaults to `/`.
///
/// ```
/// use portcullis_client::{Endpoint, Transport};
///
/// let endpoint: Endpoint = "wss://play.example.com:7778/game".parse()?;
/// assert_eq!(endpoint.transport(), Transport::Wss);
/// assert_eq!((endpoint.host(), endpoint.port(), endpoint.path()), ("play.example.com", 7778, "/game"));
/// assert_eq!("127.0.0.1:7777".parse::<Endpoint>()?.transport(), Transport::Tcp);
/// assert!("http://127.0.0.1:7778/".parse::<Endpoint>().is_err());
/// # Ok::<(), portcullis_client::ClientError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// How to speak to the server.
    transport: Transport,
    /// The host without IPv6 brackets: what is resolved, and the TLS server name.
    host: String,
    /// The TCP port.
    port: u16,
    /// The WebSocket request target (path and query, starting with `/`); `/` for lines.
    path: String,
}

impl Endpoint {
    /// An endpoint from its parts, checked as [`str::parse`] checks them.
    ///
    /// # Errors
    /// [`ClientError::Address`] when `host` is empty or not a valid host, or
    /// `path` is given (not `/`) for a line transport or does not start with `/`.
    pub fn new(transport: Transport, host: &str, port: u16, path: &str) -> Result<Self, ClientError> {
        let shown = format!("{transport}://{host}:{port}{path}");
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if v6.parse::<Ipv6Addr>().is_ok() => v6,
            Some(_) => return Err(ClientError::Address(format!("invalid IPv6 address in {shown:?}"))),
            None => host,
        };
        let host = parse_host(host, &shown)?;
        check_path(transport, path, &shown)?;
        Ok(Self { transport, host, port, path: path.to_owned() })
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The host, without brackets for IPv6 (`::1`): what is resolved, and the
    /// name the TLS certificate must be valid for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The WebSocket request path with its query (`/` when none was given;
    /// always `/` for the line transports).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `HOST:PORT`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `ws://` or `wss://` URL sent in the upgrade request (WebSocket only).
    pub(crate) fn websocket_url(&self) -> String {
        format!("{}://{}{}", self.transport, self.authority(), self.path)
    }
}

impl fmt::Display for Endpoint {
    /// The canonical form: `HOST:PORT` for TCP, `tls://HOST:PORT`,
    /// `ws://HOST:PORT/PATH`, `wss://HOST:PORT/PATH`; it parses back to the
    /// same endpoint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::Tcp => f.write_str(&self.authority()),
            Transport::Tls => write!(f, "tls://{}", self.authority()),
            Transport::Ws | Transport::Wss => f.write_str(&self.websocket_url()),
        }
    }
}

/// The forms an address may take, for error messages.
const FORMS: &str = "HOST:PORT, tls://HOST:PORT, ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH]";

impl FromStr for Endpoint {
    type Err = ClientError;

    /// Parses the forms of the [`Endpoint`] table.
    ///
    /// # Errors
    /// [`ClientError::Address`] naming what is wrong: an unsupported scheme
    /// (`http://…`), a missing or invalid port, an empty or invalid host,
    /// user info (`user@host`), a fragment (`#…`, RFC 6455 §3), or a path on
    /// a line transport.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let input = text.trim();
        let bad = |why: &str| ClientError::Address(format!("{why} in {input:?}; expected {FORMS}"));
        if input.is_empty() {
            return Err(bad("empty address"));
        }
        let (transport, rest) = match input.split_once("://") {
            None => (Transport::Tcp, input),
            Some((scheme, rest)) => {
                let transport = match scheme.to_ascii_lowercase().as_str() {
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    "ws" => Transport::Ws,
                    "wss" => Transport::Wss,
                    _ => return Err(bad(&format!("unsupported scheme {scheme:?}"))),
                };
                (transport, rest)
            }
        };
        if rest.contains('#') {
            return Err(bad("a fragment (#...) is not allowed"));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("user info (user@host) is not supported"));
        }
        let (host, port) = split_authority(authority).map_err(|why| bad(&why))?;
        let port = match (port, transport.default_port()) {
            (Some(port), _) => port,
            (None, Some(default)) => default,
            (None, None) => return Err(bad("missing port")),
        };
        let host = parse_host(host, input)?;
        let path = match path {
            "" => "/".to_owned(),
            path if path.starts_with('?') => format!("/{path}"),
            path => path.to_owned(),
        };
        check_path(transport, &path, input)?;
        Ok(Self { transport, host, port, path })
    }
}

/// Splits `HOST[:PORT]` (`[V6][:PORT]` for IPv6) into the host without
/// brackets and the port, if any; `Err` says what is wrong.
fn split_authority(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err("an unclosed [ in the host".to_owned());
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {host:?}"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected {after:?} after the IPv6 host")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("an IPv6 host must be in brackets, e.g. [::1]:7777".to_owned());
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("invalid port {port:?} (1 to 65535)")),
            Ok(port) => Some(port),
        },
    };
    Ok((host, port))
}

/// Checks a host (brackets already removed): an IP address, or a DNS name of
/// letters, digits, `-`, `_` and `.`.
fn parse_host(host: &str, shown: &str) -> Result<String, ClientError> {
    let bad = |why: String| ClientError::Address(format!("{why} in {shown:?}; expected {FORMS}"));
    if host.is_empty() {
        return Err(bad("empty host".to_owned()));
    }
    if host.contains(':') {
        return match host.parse::<IpAddr>() {
            Ok(_) => Ok(host.to_owned()),
            Err(_) => Err(bad(format!("invalid IPv6 address {host:?}"))),
        };
    }
    let labels = host.strip_suffix('.').unwrap_or(host);
    let valid = labels
        .split('.')
        .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')));
    if valid { Ok(host.to_owned()) } else { Err(bad(format!("invalid host {host:?}"))) }
}

/// A path is only for WebSocket, and starts with `/`.
fn check_path(transport: Transport, path: &str, shown: &str) -> Result<(), ClientError> {
    let bad = |why: &str| ClientError::Address(format!("{why} in {shown:?}; expected {FORMS}"));
    if !path.starts_with('/') {
        return Err(bad("the path must start with /"));
    }
    if !transport.is_websocket() && path != "/" {
        return Err(bad(&format!("a path is only for ws:// and wss://, not {transport}://")));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad("the path has a space or a control character"));
    }
    Ok(())
}

/// What [`Client::connect`](super::Client::connect) accepts: an address text
/// in one of the [`Endpoint`] forms (`&str`, `String`), an [`Endpoint`], or a
/// socket address (plain TCP, as before TLS and WebSocket existed).
pub trait IntoEndpoint {
    /// The endpoint.
    ///
    /// # Errors
    /// [`ClientError::Address`] when a text does not parse.
    fn into_endpoint(self) -> Result<Endpoint, ClientError>;
}

impl IntoEndpoint for Endpoint {
    fn into_endpoint(self) -> Result<Endpoint, ClientError> {
        Ok(self)
    }
}

impl IntoEndpoint for &Endpoint {
    fn into_endpoint(self) -> Result<Endpoint, ClientError> {
        Ok(self.clone())
    }
}

impl IntoEndpoint for &str {
    fn into_endpoint(self) -> Result<Endpoint, ClientError> {
        self.parse()
    }
}

impl IntoEndpoint for String {
    fn into_endpoint(self) -> Result<Endpoint, ClientError> {
        self.parse()
    }
}

impl IntoEndpoint for &String {
    fn into_endpoint(self) -> Result<Endpoint, ClientError> {
        self.parse()
    }
}

impl IntoEndpoint for SocketAddr {
    fn into_endpoint(self) -> Result<Endpoint, ClientError> {
        Ok(Endpoint { transport: Transport::Tcp, host: self.ip().to_string(), port: self.port(), path: "/".to_owned() })
    }
}

impl IntoEndpoint for SocketAddrV4 {
    fn into_endpoint(self) -> Result<Endpoint, ClientError> {
        SocketAddr::V4(self).into_endpoint()
    }
}

impl IntoEndpoint for SocketAddrV6 {
    fn into_endpoint(self) -> Result<Endpoint, ClientError> {
        SocketAddr::V6(self).into_endpoint()
    }
}

impl IntoEndpoint for (IpAddr, u16) {
    fn into_endpoint(self) -> Result<Endpoint, ClientError> {
        SocketAddr::from(self).into_endpoint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Endpoint {
        text.parse().unwrap_or_else(|error| panic!("{text:?} should parse: {error}"))
    }

    /// The error text of a bad address.
    fn error(text: &str) -> String {
        match text.parse::<Endpoint>() {
            Ok(endpoint) => panic!("{text:?} should not parse, got {endpoint:?}"),
            Err(ClientError::Address(message)) => message,
            Err(other) => panic!("{text:?}: expected an address error, got {other:?}"),
        }
    }

    fn parts(endpoint: &Endpoint) -> (Transport, &str, u16, &str) {
        (endpoint.transport(), endpoint.host(), endpoint.port(), endpoint.path())
    }

    #[test]
    fn line_transports() {
        assert_eq!(parts(&parse("127.0.0.1:7777")), (Transport::Tcp, "127.0.0.1", 7777, "/"));
        assert_eq!(parts(&parse("tcp://localhost:7777")), (Transport::Tcp, "localhost", 7777, "/"));
        assert_eq!(parts(&parse("tls://play.example.com:7777")), (Transport::Tls, "play.example.com", 7777, "/"));
        assert_eq!(parts(&parse("TLS://[::1]:7777")), (Transport::Tls, "::1", 7777, "/"));
        assert_eq!(parts(&parse("[::1]:7777")), (Transport::Tcp, "::1", 7777, "/"));
        assert_eq!(parts(&parse(" tls://h:1/ ")), (Transport::Tls, "h", 1, "/"));
    }

    #[test]
    fn websocket_urls() {
        assert_eq!(parts(&parse("ws://127.0.0.1:7778")), (Transport::Ws, "127.0.0.1", 7778, "/"));
        assert_eq!(parts(&parse("ws://127.0.0.1:7778/")), (Transport::Ws, "127.0.0.1", 7778, "/"));
        assert_eq!(parts(&parse("wss://h:7778/game?v=1")), (Transport::Wss, "h", 7778, "/game?v=1"));
        assert_eq!(parts(&parse("ws://h?v=1")), (Transport::Ws, "h", 80, "/?v=1"));
        assert_eq!(parts(&parse("wss://h")), (Transport::Wss, "h", 443, "/"));
        assert_eq!(parts(&parse("WS://[::1]/x")), (Transport::Ws, "::1", 80, "/x"));
    }

    #[test]
    fn display_parses_back() {
        for text in ["127.0.0.1:7777", "tls://h:1", "ws://h:80/", "wss://[::1]:443/a?b", "[::1]:9"] {
            let endpoint = parse(text);
            assert_eq!(endpoint.to_string(), text);
            assert_eq!(parse(&endpoint.to_string()), endpoint);
        }
        assert_eq!(parse("ws://h").to_string(), "ws://h:80/");
        assert_eq!(parse("tcp://h:5").to_string(), "h:5");
    }

    #[test]
    fn bad_schemes_are_clear_errors() {
        let message = error("http://127.0.0.1:7778/");
        assert!(message.contains("unsupported scheme \"http\""), "{message}");
        assert!(message.contains("ws://HOST"), "says what is expected: {message}");
        assert!(error("https://h/").contains("unsupported scheme \"https\""));
        assert!(error("udp://h:1").contains("unsupported scheme \"udp\""));
        assert!(error("://h:1").contains("unsupported scheme \"\""));
    }

    #[test]
    fn other_mistakes_are_named() {
        assert!(error("").contains("empty address"));
        assert!(error("localhost").contains("missing port"));
        assert!(error("tls://localhost").contains("missing port"));
        assert!(error("h:0").contains("invalid port \"0\""));
        assert!(error("h:70000").contains("invalid port \"70000\""));
        assert!(error("h:").contains("invalid port \"\""));
        assert!(error("ws://h:x/").contains("invalid port \"x\""));
        assert!(error(":7777").contains("empty host"));
        assert!(error("ws:///path").contains("empty host"));
        assert!(error("::1:7777").contains("brackets"));
        assert!(error("[::1:7777").contains("unclosed"));
        assert!(error("[nope]:1").contains("invalid IPv6"));
        assert!(error("ws://u:p@h/").contains("user info"));
        assert!(error("ws://h/#frag").contains("fragment"));
        assert!(error("tls://h:1/path").contains("only for ws://"));
        assert!(error("h:1/path").contains("only for ws://"));
        assert!(error("bad host:1").contains("invalid host"));
        assert!(error("a..b:1").contains("invalid host"));
        assert!(error("ws://h/a b").contains("space"));
    }

    #[test]
    fn socket_addresses_are_tcp() {
        let addr: SocketAddr = "[::1]:7777".parse().expect("socket address");
        let endpoint = addr.into_endpoint().expect("endpoint");
        assert_eq!(parts(&endpoint), (Transport::Tcp, "::1", 7777, "/"));
        assert_eq!(endpoint.to_string(), "[::1]:7777");
        assert!(Endpoint::new(Transport::Ws, "[::1]", 80, "/x").is_ok());
        assert!(Endpoint::new(Transport::Tls, "h", 1, "/x").is_err());
        assert!(Endpoint::new(Transport::Ws, "", 1, "/").is_err());
        assert!(Endpoint::new(Transport::Ws, "[nope]", 1, "/").is_err());
    }
}
