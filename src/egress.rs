//! The egress guard: where the bridge may send a request that a tenant can steer.
//!
//! Owns the one rule for every outbound URL a tenant (or a tenant's secret) can influence —
//! connector base URLs, token endpoints, post-call webhook targets, MCP servers, inbound-rule
//! callbacks: the host must be a public address. Loopback, private, carrier-grade NAT,
//! link-local, unique-local, unspecified, multicast, documentation, reserved and IPv4-mapped /
//! -translated forms are refused. The check runs twice:
//! - on the URL before a request is sent ([`EgressPolicy::check_url`]): the scheme, and a host
//!   written as an IP literal (the `url` crate has already normalised decimal, octal and hex IPv4
//!   forms such as `http://2130706433/` to `127.0.0.1`);
//! - at connect time, in the DNS resolver the HTTP client uses ([`EgressPolicy::apply`]): every
//!   address a name resolves to is checked, so a name that resolves (or re-resolves: DNS
//!   rebinding) to an internal address is refused at the moment of connecting.
//!
//! Hosts the operator trusts (a self-hosted Cal.com on the LAN, a test's loopback mock) are
//! allowed only through an explicit allow-list (`CALLBRIDGE_EGRESS_ALLOW`); such hosts may also
//! use plain `http`. Everything else must be `https`.
//!
//! It must not log or return internal detail to tenants: [`EgressError`]'s display says
//! "refused by egress policy" with the host, never what answered there.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The URL's scheme is not allowed for this host (`https` only, `http` for allow-listed hosts).
    #[error("refused by egress policy: {host} must use https")]
    Scheme { host: String },
    /// The host is, or resolves only to, an internal address.
    #[error("refused by egress policy: {host} is not a public address")]
    Internal { host: String },
    /// The URL has no host, or a host that is not a network name.
    #[error("refused by egress policy: the URL has no usable host")]
    NoHost,
    /// The allow-list setting could not be parsed.
    #[error("CALLBRIDGE_EGRESS_ALLOW: {0}")]
    AllowList(String),
}

/// One allow-list entry: a host name (any port), a host name with a port, an address or a network.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowEntry {
    Host { name: String, port: Option<u16> },
    Net(IpNet),
}

/// The egress rule, cheap to clone. [`EgressPolicy::default`] allows public addresses only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Arc<Vec<AllowEntry>>,
}

impl fmt::Debug for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressPolicy")
            .field("allow", &self.allow_list_display())
            .finish()
    }
}

impl EgressPolicy {
    /// Public addresses only, `https` only.
    pub fn strict() -> Self {
        Self::default()
    }

    /// Parses the operator's allow-list: comma-separated host names (`cal.internal`), host names
    /// with a port (`localhost:8443`), addresses (`127.0.0.1`, `::1`) or networks (`10.0.0.0/8`).
    /// An empty string is the strict policy.
    pub fn from_allow_list(spec: &str) -> Result<Self, EgressError> {
        let mut allow = Vec::new();
        for raw in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            allow.push(parse_entry(raw)?);
        }
        Ok(Self {
            allow: Arc::new(allow),
        })
    }

    /// Allows the loopback network (`127.0.0.0/8` and `::1`) as well as public addresses: what the
    /// test suite sets, explicitly, to reach its mocks on 127.0.0.1.
    pub fn allow_loopback() -> Self {
        Self::from_allow_list("127.0.0.0/8,::1/128,localhost").expect("constant allow-list parses")
    }

    /// Whether the operator allowed anything beyond public addresses.
    pub fn is_strict(&self) -> bool {
        self.allow.is_empty()
    }

    /// The allow-list as configured, for `doctor` and logs.
    pub fn allow_list_display(&self) -> String {
        self.allow
            .iter()
            .map(|e| match e {
                AllowEntry::Host {
                    name,
                    port: Some(p),
                } => format!("{name}:{p}"),
                AllowEntry::Host { name, port: None } => name.clone(),
                AllowEntry::Net(net) => net.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Checks a URL before a request is sent to it: the scheme (`https`, or `http`/`https` for
    /// an allow-listed host; `wss`/`ws` likewise for WebSockets) and, for an IP-literal host, the
    /// address itself. A host name is checked again when it is resolved (see [`Self::apply`]).
    pub fn check_url(&self, url: &Url) -> Result<(), EgressError> {
        let host = url.host().ok_or(EgressError::NoHost)?;
        let port = url.port_or_known_default();
        let host_text = match &host {
            url::Host::Domain(d) => d.to_ascii_lowercase(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        let allowed_host = match &host {
            url::Host::Domain(d) => self.host_allowed(d, port),
            url::Host::Ipv4(ip) => self.ip_allowed(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => self.ip_allowed(IpAddr::V6(*ip)),
        };
        match url.scheme() {
            "https" | "wss" => {}
            "http" | "ws" if allowed_host => {}
            _ => return Err(EgressError::Scheme { host: host_text }),
        }
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal
            && !self.ip_permitted(ip)
        {
            return Err(EgressError::Internal { host: host_text });
        }
        Ok(())
    }

    /// Parses and checks a URL given as text (tenant input at write time).
    pub fn check_url_str(&self, url: &str) -> Result<Url, EgressError> {
        let parsed = Url::parse(url).map_err(|_| EgressError::NoHost)?;
        self.check_url(&parsed)?;
        Ok(parsed)
    }

    /// Whether a connection to this address may be made: a public address, or one the operator
    /// allowed.
    pub fn ip_permitted(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.ip_allowed(ip)
    }

    /// Puts the guard into an HTTP client: its DNS resolver checks every address at connect time,
    /// and no system proxy is used (a proxy would connect on our behalf, unchecked).
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder.no_proxy().dns_resolver(GuardedResolver {
            policy: self.clone(),
        })
    }

    /// The one way to start building an outbound HTTP client: TLS through ring (installed as the
    /// process's rustls provider unless the application chose one), the guard applied, and
    /// redirects off (a redirect would go somewhere nobody checked or configured).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        install_tls_provider();
        self.apply(reqwest::Client::builder())
            .redirect(reqwest::redirect::Policy::none())
    }

    /// Resolves `host:port` and keeps only permitted addresses (for clients that connect without
    /// reqwest, e.g. a WebSocket). Errors when none is left.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let named_allowed = self.host_allowed(host, Some(port));
        let resolved =
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| EgressError::Internal {
                    host: host.to_ascii_lowercase(),
                })?;
        let kept: Vec<SocketAddr> = resolved
            .filter(|a| named_allowed || self.ip_permitted(a.ip()))
            .collect();
        if kept.is_empty() {
            return Err(EgressError::Internal {
                host: host.to_ascii_lowercase(),
            });
        }
        Ok(kept)
    }

    fn host_allowed(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_end_matches('.');
        self.allow.iter().any(|e| match e {
            AllowEntry::Host { name, port: p } => {
                name.eq_ignore_ascii_case(host) && (p.is_none() || *p == port)
            }
            AllowEntry::Net(_) => false,
        })
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|e| match e {
            AllowEntry::Net(net) => net.contains(&ip),
            AllowEntry::Host { .. } => false,
        })
    }
}

fn parse_entry(raw: &str) -> Result<AllowEntry, EgressError> {
    if let Ok(net) = raw.parse::<IpNet>() {
        return Ok(AllowEntry::Net(net));
    }
    if let Ok(ip) = raw
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(AllowEntry::Net(IpNet::from(ip)));
    }
    let (name, port) = match raw.rsplit_once(':') {
        Some((name, port)) => {
            let port = port.parse::<u16>().map_err(|_| {
                EgressError::AllowList(format!("{raw:?}: the port is not a number"))
            })?;
            (name, Some(port))
        }
        None => (raw, None),
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid {
        return Err(EgressError::AllowList(format!(
            "{raw:?} is neither a host name, an address nor a network"
        )));
    }
    Ok(AllowEntry::Host {
        name: name.to_ascii_lowercase(),
        port,
    })
}

/// Whether an address is a public unicast address (globally routable, not reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let internal = ip.is_unspecified()
        || a == 0                                   // 0.0.0.0/8 "this network"
        || ip.is_loopback()                         // 127.0.0.0/8
        || ip.is_private()                          // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()                       // 169.254/16 (cloud metadata)
        || (a == 100 && (64..128).contains(&b))     // 100.64/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0)           // 192.0.0/24 protocol assignments
        || (a == 192 && b == 0 && c == 2)           // TEST-NET-1
        || (a == 198 && b == 51 && c == 100)        // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)         // TEST-NET-3
        || (a == 198 && (b == 18 || b == 19))       // 198.18/15 benchmarking
        || (a == 192 && b == 88 && c == 99)         // 6to4 relay anycast
        || ip.is_multicast()                        // 224/4
        || a >= 240; // 240/4 reserved, and the broadcast address
    !internal
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return false;
    }
    // IPv4-mapped (::ffff:0:0/96) and IPv4-compatible (::/96) forms: refused outright, whatever
    // the embedded address (no resolver returns them for a public host).
    if seg[0..5] == [0, 0, 0, 0, 0] && (seg[5] == 0xffff || seg[5] == 0) {
        return false;
    }
    // NAT64 (64:ff9b::/96, 64:ff9b:1::/48) reaches the embedded IPv4 address: judge that one.
    if seg[0] == 0x64 && seg[1] == 0xff9b {
        if seg[2..6] == [0, 0, 0, 0] {
            let [.., hi, lo] = seg;
            let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            return is_public_v4(v4);
        }
        return false;
    }
    let first = seg[0];
    let internal = (first & 0xfe00) == 0xfc00     // fc00::/7 unique local
        || (first & 0xffc0) == 0xfe80             // fe80::/10 link local
        || (first & 0xffc0) == 0xfec0             // fec0::/10 site local (deprecated)
        || first == 0x2002                        // 6to4: embeds an IPv4 address we cannot vouch for
        || (first == 0x2001 && seg[1] == 0)       // 2001::/32 Teredo
        || (first == 0x2001 && seg[1] == 0x0db8)  // documentation
        || (first == 0x0100 && seg[1..4] == [0, 0, 0]); // 100::/64 discard
    !internal
}

/// The DNS resolver the guarded HTTP client connects through.
struct GuardedResolver {
    policy: EgressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // reqwest asks for the name only; the port is set by the connector afterwards, so an
            // allow-list entry with a port was already matched by `check_url`.
            let named_allowed = policy.host_allowed(&host, None)
                || policy.allow.iter().any(|e| {
                    matches!(e, AllowEntry::Host { name, port: Some(_) }
                        if name.eq_ignore_ascii_case(host.trim_end_matches('.')))
                });
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = resolved
                .filter(|a| named_allowed || policy.ip_permitted(a.ip()))
                .collect();
            if kept.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> =
                    Box::new(EgressError::Internal { host });
                return Err(err);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// reqwest is built without a bundled crypto provider so that ring (already used by the rest of
/// the crate) serves TLS; installs it unless the application already chose one.
pub fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing this race to another thread installing a provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Whether a `reqwest` error was caused by the egress guard at connect time.
pub fn is_egress_refusal(err: &reqwest::Error) -> bool {
    refusal_in(err).is_some()
}

/// The guard's refusal behind a `reqwest` error (raised by its resolver at connect time), if any.
pub fn refusal_in(err: &reqwest::Error) -> Option<EgressError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<EgressError>() {
            return Some(refusal.clone());
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &EgressPolicy, url: &str) -> bool {
        policy.check_url(&Url::parse(url).unwrap()).is_err()
    }

    #[test]
    fn internal_literals_are_refused_in_every_spelling() {
        let strict = EgressPolicy::strict();
        for url in [
            "https://127.0.0.1/",
            "https://127.1.2.3:6379/",
            "https://2130706433/", // decimal 127.0.0.1
            "https://0x7f000001/", // hex
            "https://0177.0.0.1/", // octal
            "https://0.0.0.0/",
            "https://10.0.0.1/",
            "https://172.16.5.4/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://[::1]/",
            "https://[::]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:8.8.8.8]/",
            "https://[::127.0.0.1]/",
            "https://[fc00::1]/",
            "https://[fd12:3456::1]/",
            "https://[fe80::1]/",
            "https://[ff02::1]/",
            "https://[64:ff9b::a00:1]/", // NAT64 of 10.0.0.1
            "https://[2001:db8::1]/",
        ] {
            assert!(refused(&strict, url), "{url} must be refused");
        }
    }

    #[test]
    fn public_https_passes_and_plain_http_does_not() {
        let strict = EgressPolicy::strict();
        assert!(!refused(
            &strict,
            "https://api.hubapi.com/crm/v3/objects/contacts"
        ));
        assert!(!refused(&strict, "https://8.8.8.8/"));
        assert!(!refused(&strict, "https://[2606:4700::1111]/"));
        assert!(!refused(&strict, "https://[64:ff9b::808:808]/")); // NAT64 of 8.8.8.8
        assert!(refused(&strict, "http://api.hubapi.com/"));
        assert!(refused(&strict, "ftp://api.hubapi.com/"));
        assert!(refused(&strict, "file:///etc/passwd"));
        assert_eq!(
            strict.check_url_str("http://example.com/").unwrap_err(),
            EgressError::Scheme {
                host: "example.com".into()
            }
        );
    }

    #[test]
    fn the_allow_list_admits_exactly_what_it_names() {
        let policy = EgressPolicy::from_allow_list("127.0.0.1, cal.lan:8443, 10.1.0.0/16").unwrap();
        assert!(!refused(&policy, "http://127.0.0.1:9000/"));
        assert!(refused(&policy, "http://127.0.0.2:9000/"));
        assert!(!refused(&policy, "http://cal.lan:8443/"));
        assert!(refused(&policy, "http://cal.lan:8444/"));
        assert!(!refused(&policy, "https://10.1.2.3/"));
        assert!(refused(&policy, "https://10.2.0.1/"));
        assert!(!policy.is_strict());
        assert!(EgressPolicy::from_allow_list("").unwrap().is_strict());
        assert!(EgressPolicy::from_allow_list("bad host!").is_err());
        assert!(EgressPolicy::from_allow_list("host:port").is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
        // `localhost` passes the URL check (it is a name) and must be stopped by the resolver.
        let strict = EgressPolicy::strict();
        let url = Url::parse("https://localhost:1/").unwrap();
        assert!(strict.check_url(&url).is_ok());
        let client = strict.client_builder().build().unwrap();
        let err = client.get(url).send().await.unwrap_err();
        assert!(is_egress_refusal(&err), "{err:?}");
        assert!(strict.resolve("localhost", 80).await.is_err());
        let open = EgressPolicy::allow_loopback();
        assert!(!open.resolve("localhost", 80).await.unwrap().is_empty());
    }
}
