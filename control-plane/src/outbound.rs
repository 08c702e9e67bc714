//! The one rule for every URL Tollgate itself calls out to (payment provider `api_base`, and any
//! future outbound URL): `https` to a public host only. Plain `http` and loopback hosts are allowed
//! only when the operator opts in with `TOLLGATE_ALLOW_LOOPBACK_URLS=true` (test set-ups pointing
//! at local fakes), read once at start-up; private, link-local, unspecified and other non-public
//! addresses are always refused. The error carries no URL (it may be shown to developers).
//!
//! The rule holds where the connection is made, not only where the URL is saved: every outbound
//! HTTP client is built by [`http_client`], whose DNS resolver ([`GuardedResolver`]) keeps only
//! the addresses the rule allows, so a public-looking name that resolves (or later re-resolves,
//! DNS rebinding) to 127.0.0.1, 10.x, 169.254.169.254, fd00::/8 or `::ffff:10.0.0.1` is refused
//! before any connection. Redirects are not followed (a redirect to a literal address would skip
//! the resolver). Invoice email (`TOLLGATE_SMTP_URL`) is not covered: the operator sets it in the
//! environment, no API can change it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// The environment variable of the loopback opt-in.
pub const ALLOW_LOOPBACK_ENV: &str = "TOLLGATE_ALLOW_LOOPBACK_URLS";

static ALLOW_LOOPBACK: OnceLock<bool> = OnceLock::new();

/// Reads [`ALLOW_LOOPBACK_ENV`] (called once at start-up; later calls change nothing).
pub fn init_from_env() -> bool {
    *ALLOW_LOOPBACK.get_or_init(|| {
        std::env::var(ALLOW_LOOPBACK_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("true"))
    })
}

fn loopback_allowed() -> bool {
    init_from_env()
}

fn v4_public(ip: Ipv4Addr) -> bool {
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        // 100.64.0.0/10 (carrier-grade NAT) and 0.0.0.0/8
        || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
        || ip.octets()[0] == 0
        // 192.0.0.0/24 (IETF protocol assignments), 198.18.0.0/15 (benchmarking, often used
        // inside networks), 240.0.0.0/4 (reserved)
        || (ip.octets()[..3] == [192, 0, 0])
        || (ip.octets()[0] == 198 && (ip.octets()[1] & 0xfe) == 18)
        || ip.octets()[0] >= 240)
}

fn v6_public(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_public(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address: judge that one.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return v4_public(Ipv4Addr::new(a, b, c, d));
    }
    // 6to4 (2002::/16) carries an IPv4 address in its second and third segments, and an
    // IPv4-compatible address (::a.b.c.d, deprecated) in its last two: judge that one too.
    if s[0] == 0x2002 {
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return v4_public(Ipv4Addr::new(a, b, c, d));
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return v4_public(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
        || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
}

/// Whether a connection to `ip` is allowed: a public address, or loopback when opted in.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    let loopback = match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if loopback {
        allow_loopback
    } else {
        is_public(ip)
    }
}

/// Why a name was not resolved: every address it has is one the rule refuses (or it has none).
/// The text names no host (it may reach a developer); the log line beside it does.
#[derive(Debug)]
pub struct NoAllowedAddress;

impl std::fmt::Display for NoAllowedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the host resolves to no public address (loopback, private, link-local and unique-local addresses are refused; loopback only with {ALLOW_LOOPBACK_ENV}=true)"
        )
    }
}

impl std::error::Error for NoAllowedAddress {}

/// The DNS resolver of every outbound client: the system resolver, then only the addresses
/// [`address_allowed`] keeps; none left is an error and no connection is attempted.
#[derive(Clone, Copy, Debug)]
pub struct GuardedResolver {
    pub allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = found
                .filter(|a| address_allowed(a.ip(), allow_loopback))
                .collect();
            if kept.is_empty() {
                tracing::warn!(host, "outbound connection refused: {NoAllowedAddress}");
                return Err(Box::new(NoAllowedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A transport error as text that may reach a developer: its causes (the resolver's refusal is
/// one), never the URL.
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A client builder for outbound calls under the process's rule: the guarded resolver, no
/// redirects. Every client that calls a configurable URL starts from this.
pub fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_loopback: loopback_allowed(),
        }))
        .redirect(reqwest::redirect::Policy::none())
}

/// Whether Tollgate may send requests (and credentials) to `url`, under `allow_loopback`.
pub fn check_with(url: &str, allow_loopback: bool) -> Result<(), &'static str> {
    const REFUSED: &str = "an https URL of a public host";
    let u = reqwest::Url::parse(url).map_err(|_| REFUSED)?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(REFUSED);
    }
    let host = u.host_str().ok_or(REFUSED)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => true,
        Ok(ip) if !is_public(ip) => return Err(REFUSED),
        Ok(_) => false,
        Err(_) => {
            let d = bare.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    };
    match (u.scheme(), loopback) {
        (_, true) if !allow_loopback => Err(REFUSED),
        ("https", _) => Ok(()),
        ("http", true) => Ok(()),
        _ => Err(REFUSED),
    }
}

/// [`check_with`] under the process's setting.
pub fn check(url: &str) -> Result<(), &'static str> {
    check_with(url, loopback_allowed())
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::{address_allowed, check_with, GuardedResolver};
    use reqwest::dns::Resolve;
    use std::net::IpAddr;
    use std::str::FromStr;

    #[test]
    fn resolved_addresses_follow_the_rule() {
        for (ip, off, on) in [
            ("93.184.216.34", true, true),
            ("2606:2800:220:1:248:1893:25c8:1946", true, true),
            ("127.0.0.1", false, true),
            ("127.3.4.5", false, true),
            ("::1", false, true),
            ("::ffff:127.0.0.1", false, true),
            ("10.1.2.3", false, false),
            ("172.16.0.1", false, false),
            ("192.168.0.1", false, false),
            ("169.254.169.254", false, false),
            ("100.64.0.1", false, false),
            ("0.0.0.0", false, false),
            ("::", false, false),
            ("fd00::1", false, false),
            ("fe80::1", false, false),
            ("fec0::1", false, false),
            ("::ffff:10.0.0.1", false, false),
            ("::ffff:169.254.169.254", false, false),
            ("64:ff9b::a00:1", false, false),
            ("64:ff9b::5db8:d822", true, true),
            ("192.0.0.8", false, false),
            ("198.18.0.1", false, false),
            ("198.19.255.1", false, false),
            ("198.20.0.1", true, true),
            ("240.0.0.1", false, false),
            ("255.255.255.254", false, false),
            ("2002:a00:1::", false, false),
            ("2002:a9fe:a9fe::1", false, false),
            ("2002:5db8:d822::1", true, true),
            ("::a00:1", false, false),
            ("::a9fe:a9fe", false, false),
        ] {
            let ip = IpAddr::from_str(ip).unwrap();
            assert_eq!(address_allowed(ip, false), off, "{ip} without the opt-in");
            assert_eq!(address_allowed(ip, true), on, "{ip} with the opt-in");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_without_the_opt_in() {
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let refused = GuardedResolver {
            allow_loopback: false,
        }
        .resolve(name)
        .await;
        let Err(e) = refused else {
            panic!("localhost resolved without the opt-in")
        };
        assert!(
            e.to_string().contains("resolves to no public address"),
            "{e}"
        );
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let allowed = GuardedResolver {
            allow_loopback: true,
        }
        .resolve(name)
        .await;
        assert!(allowed.is_ok_and(|mut a| a.all(|a| a.ip().is_loopback())));
    }

    #[test]
    fn only_https_to_public_hosts() {
        assert!(check_with("https://api.stripe.com/", false).is_ok());
        assert!(check_with("https://93.184.216.34/", false).is_ok());
        for bad in [
            "http://api.stripe.com/",
            "http://127.0.0.1:8420/",
            "https://127.0.0.1/",
            "https://localhost/",
            "https://10.0.0.1/",
            "https://192.168.1.1/",
            "https://172.16.0.1/",
            "https://169.254.169.254/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://0.0.0.0/",
            "https://user:pw@api.stripe.com/",
            "ftp://api.stripe.com/",
            "not a url",
        ] {
            assert!(check_with(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_only_with_the_opt_in() {
        assert!(check_with("http://127.0.0.1:8420/", true).is_ok());
        assert!(check_with("http://localhost:8420/", true).is_ok());
        assert!(check_with("http://[::1]:8420/", true).is_ok());
        assert!(check_with("http://10.0.0.1/", true).is_err());
        assert!(check_with("http://169.254.169.254/", true).is_err());
        assert!(check_with("http://api.stripe.com/", true).is_err());
    }
}
