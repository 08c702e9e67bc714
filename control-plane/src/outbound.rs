//! The one rule for every URL Tollgate itself calls out to (payment provider `api_base`, and any
//! future outbound URL): `https` to a public host only. Plain `http` and loopback hosts are allowed
//! only when the operator opts in with `TOLLGATE_ALLOW_LOOPBACK_URLS=true` (test set-ups pointing
//! at local fakes), read once at start-up; private, link-local, unspecified and other non-public
//! addresses are always refused. The error carries no URL (it may be shown to developers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

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
        || ip.octets()[0] == 0)
}

fn v6_public(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_public(v4);
    }
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80) // link-local
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
    use super::check_with;

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
