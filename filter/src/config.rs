//! The plugin configuration: JSON as Envoy passes it (or as Kong JSON-encodes it), parsed and
//! validated once in `on_configure`. Unknown fields are refused so a typo cannot silently turn a
//! setting off; every error names the field.

use serde::Deserialize;
use tollgate_protocol::Snapshot;

use crate::catalog::Catalog;
use crate::error::ConfigError;

/// Largest plugin configuration accepted, in bytes (an inline snapshot of ~100k applications fits).
pub const MAX_CONFIG_BYTES: usize = 64 * 1024 * 1024;
/// Longest header or query parameter name we accept in configuration.
const MAX_NAME_BYTES: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    credentials: RawCredentials,
    #[serde(default)]
    upstream_headers: RawUpstreamHeaders,
    #[serde(default = "yes")]
    strip_credentials: bool,
    #[serde(default)]
    fail_mode: FailMode,
    #[serde(default)]
    quota_headers: QuotaHeaders,
    #[serde(default = "yes")]
    stats: bool,
    snapshot: Option<Snapshot>,
    service_id: Option<String>,
    control_plane: Option<RawControlPlane>,
    /// Native shell: the counter namespace (see [`Config::shared_data_id`]).
    shared_data_id: Option<String>,
}

/// The fields that choose a configuration's counter namespace, read before the whole
/// configuration is applied (the native shell needs the store to apply it); every other field is
/// skipped unread.
#[derive(Deserialize)]
struct RawNamespace {
    service_id: Option<String>,
    shared_data_id: Option<String>,
}

/// The namespace a configuration without `shared_data_id` gets in standalone mode: every
/// standalone stanza of a process shares counters, as every wasm stanza with one `vm_id` does.
pub const STANDALONE_SHARED_DATA_ID: &str = "standalone";
/// Longest `shared_data_id` accepted (as long as a `service_id`).
const MAX_SHARED_DATA_ID_BYTES: usize = 256;

fn resolve_shared_data_id(explicit: Option<String>, service_id: Option<&str>) -> String {
    explicit.unwrap_or_else(|| service_id.unwrap_or(STANDALONE_SHARED_DATA_ID).to_string())
}

/// The counter namespace of the configuration `bytes` (see [`Config::shared_data_id`]), without
/// compiling its snapshot; `None` for a configuration [`Config::parse`] would refuse anyway.
pub fn shared_data_id(bytes: &[u8]) -> Option<String> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return None;
    }
    let raw: RawNamespace = serde_json::from_slice(bytes).ok()?;
    Some(resolve_shared_data_id(
        raw.shared_data_id,
        raw.service_id.as_deref(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControlPlane {
    cluster: Option<String>,
    upstream: Option<String>,
    #[serde(default = "default_authority")]
    authority: String,
    token: String,
    #[serde(default = "default_poll_ms")]
    poll_interval_ms: u32,
    #[serde(default = "default_interval_ms")]
    flush_interval_ms: u32,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u32,
    #[serde(default = "default_snapshot_wait_s")]
    snapshot_wait_s: u32,
    #[serde(default)]
    fail_mode: FailMode,
}

fn default_authority() -> String {
    "tollgate-control-plane".into()
}
/// Polls are cheap (an unchanged snapshot is a 304): 500 ms keeps a change under a second from
/// the API call to every worker.
fn default_poll_ms() -> u32 {
    500
}
fn default_interval_ms() -> u32 {
    1_000
}
fn default_timeout_ms() -> u32 {
    5_000
}
/// A snapshot poll asks the control plane to hold it this long while nothing changes
/// (`Prefer: wait`), so a change arrives as soon as it commits. 10 s stays under the 15 s route
/// timeout an Envoy in front of the control plane has by default.
fn default_snapshot_wait_s() -> u32 {
    10
}
/// Longest `snapshot_wait_s` accepted: the control plane holds a request at most this long.
pub const MAX_SNAPSHOT_WAIT_S: u32 = 20;

/// Shortest poll or flush interval accepted; keeps a misconfiguration from hammering the
/// control plane.
pub const MIN_INTERVAL_MS: u32 = 100;
/// Longest poll or flush interval accepted.
pub const MAX_INTERVAL_MS: u32 = 60_000;

/// Where the control plane is and how often to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    pub service_id: String,
    /// Envoy cluster name or Kong `host:port`: the `upstream` of `dispatch_http_call`.
    pub upstream: String,
    pub authority: String,
    pub token: String,
    pub poll_interval_ms: u32,
    pub flush_interval_ms: u32,
    pub timeout_ms: u32,
    /// How long a snapshot poll asks to be held while nothing changes (0: plain polling).
    pub snapshot_wait_s: u32,
    /// What requests get while no snapshot was ever received: `closed` 503, `open` forwarded uncounted.
    pub fail_mode: FailMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    #[serde(default = "default_key_header")]
    header: Option<String>,
    #[serde(default = "yes")]
    bearer: bool,
    #[serde(default = "default_key_query")]
    query: Option<String>,
    #[serde(default = "default_app_id")]
    app_id: RawPair,
    #[serde(default = "default_app_key")]
    app_key: RawPair,
}

impl Default for RawCredentials {
    fn default() -> Self {
        RawCredentials {
            header: default_key_header(),
            bearer: true,
            query: default_key_query(),
            app_id: default_app_id(),
            app_key: default_app_key(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    query: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamHeaders {
    #[serde(default = "default_app_header")]
    application: Option<String>,
    #[serde(default = "default_plan_header")]
    plan: Option<String>,
}

impl Default for RawUpstreamHeaders {
    fn default() -> Self {
        RawUpstreamHeaders {
            application: default_app_header(),
            plan: default_plan_header(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_key_header() -> Option<String> {
    Some("x-api-key".into())
}
fn default_key_query() -> Option<String> {
    Some("api_key".into())
}
fn default_app_id() -> RawPair {
    RawPair {
        header: Some("app-id".into()),
        query: Some("app_id".into()),
    }
}
fn default_app_key() -> RawPair {
    RawPair {
        header: Some("app-key".into()),
        query: Some("app_key".into()),
    }
}
fn default_app_header() -> Option<String> {
    Some("x-tollgate-application".into())
}
fn default_plan_header() -> Option<String> {
    Some("x-tollgate-plan".into())
}

/// What the filter does when it cannot decide (no snapshot yet, shared data failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Answer 503: never admit traffic that cannot be counted (the default: this is billing).
    #[default]
    Closed,
    /// Forward the request uncounted.
    Open,
}

/// Which quota headers decided responses carry. Each header is a host call (0.6–1 us under V8, a
/// fraction of that natively), so a latency-sensitive gateway can keep one family or none; the
/// default sends both. `Retry-After` on a 429 is always sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaHeaders {
    /// `RateLimit-Policy` / `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10) and
    /// `X-RateLimit-Limit` / `-Remaining` / `-Reset`.
    #[default]
    Both,
    /// `RateLimit-Policy` / `RateLimit` only.
    Draft,
    /// `X-RateLimit-Limit` / `-Remaining` / `-Reset` only.
    XRatelimit,
    None,
}

impl QuotaHeaders {
    pub fn draft(self) -> bool {
        matches!(self, QuotaHeaders::Both | QuotaHeaders::Draft)
    }

    pub fn x_ratelimit(self) -> bool {
        matches!(self, QuotaHeaders::Both | QuotaHeaders::XRatelimit)
    }
}

/// Where credentials are read from, in this order; `None` disables a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSources {
    pub header: Option<String>,
    pub bearer: bool,
    pub query: Option<String>,
    pub app_id_header: Option<String>,
    pub app_id_query: Option<String>,
    pub app_key_header: Option<String>,
    pub app_key_query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHeaders {
    pub application: Option<String>,
    pub plan: Option<String>,
}

#[derive(Debug)]
pub struct Config {
    pub credentials: CredentialSources,
    pub upstream_headers: UpstreamHeaders,
    /// Remove the credential (header or query parameter) before forwarding.
    pub strip_credentials: bool,
    pub fail_mode: FailMode,
    pub quota_headers: QuotaHeaders,
    /// Define and increment host stats. Kong's ngx_wasm_module before metrics support traps on
    /// `proxy_define_metric`, so the Kong example turns this off.
    pub stats: bool,
    /// Set in control-plane mode; `None` in standalone mode (the snapshot came inline).
    pub control_plane: Option<ControlPlane>,
    /// The native shell's counter namespace: configurations with the same id share counters,
    /// journals and snapshot records (the wasm shell's `vm_id` does this there, and ignores this
    /// field). Default: the `service_id` in control-plane mode, [`STANDALONE_SHARED_DATA_ID`]
    /// in standalone mode.
    pub shared_data_id: String,
}

impl Config {
    /// The settings, and the catalog when the snapshot came inline (standalone mode).
    pub fn parse(bytes: &[u8]) -> Result<(Config, Option<Catalog>), ConfigError> {
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::new(
                "",
                format!(
                    "configuration is {} bytes, the cap is {MAX_CONFIG_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            ConfigError::new(
                if field == "." { String::new() } else { field },
                e.into_inner().to_string(),
            )
        })?;
        let c = raw.credentials;
        let credentials = CredentialSources {
            header: name("credentials.header", c.header)?,
            bearer: c.bearer,
            query: name("credentials.query", c.query)?,
            app_id_header: name("credentials.app_id.header", c.app_id.header)?,
            app_id_query: name("credentials.app_id.query", c.app_id.query)?,
            app_key_header: name("credentials.app_key.header", c.app_key.header)?,
            app_key_query: name("credentials.app_key.query", c.app_key.query)?,
        };
        let pair_usable = |id: &Option<String>, key: &Option<String>| id.is_some() && key.is_some();
        if credentials.header.is_none()
            && !credentials.bearer
            && credentials.query.is_none()
            && !pair_usable(&credentials.app_id_header, &credentials.app_key_header)
            && !pair_usable(&credentials.app_id_query, &credentials.app_key_query)
        {
            return Err(ConfigError::new(
                "credentials",
                "every credential source is disabled",
            ));
        }
        let upstream_headers = UpstreamHeaders {
            application: name(
                "upstream_headers.application",
                raw.upstream_headers.application,
            )?,
            plan: name("upstream_headers.plan", raw.upstream_headers.plan)?,
        };
        if let Some(id) = &raw.shared_data_id {
            if id.is_empty()
                || id.len() > MAX_SHARED_DATA_ID_BYTES
                || !id.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(ConfigError::new(
                    "shared_data_id",
                    format!("1-{MAX_SHARED_DATA_ID_BYTES} visible ASCII characters"),
                ));
            }
        }
        let shared_data_id = resolve_shared_data_id(raw.shared_data_id, raw.service_id.as_deref());
        let (catalog, control_plane) = match (raw.snapshot, raw.service_id, raw.control_plane) {
            (Some(snapshot), None, None) => (Some(Catalog::compile(&snapshot, "snapshot")?), None),
            (None, Some(service_id), Some(cp)) => (None, Some(control_plane(service_id, cp)?)),
            (Some(_), _, _) => {
                return Err(ConfigError::new(
                    "snapshot",
                    "give either an inline snapshot (standalone) or service_id + control_plane, not both",
                ))
            }
            (None, None, _) => {
                return Err(ConfigError::new(
                    "snapshot",
                    "required: an inline snapshot (standalone) or service_id + control_plane",
                ))
            }
            (None, Some(_), None) => return Err(ConfigError::new("control_plane", "required with service_id")),
        };
        Ok((
            Config {
                credentials,
                upstream_headers,
                strip_credentials: raw.strip_credentials,
                fail_mode: raw.fail_mode,
                quota_headers: raw.quota_headers,
                stats: raw.stats,
                control_plane,
                shared_data_id,
            },
            catalog,
        ))
    }
}

fn control_plane(service_id: String, cp: RawControlPlane) -> Result<ControlPlane, ConfigError> {
    let visible = |field: &str, v: &str| {
        if v.is_empty() || v.len() > 256 || !v.bytes().all(|b| b.is_ascii_graphic()) {
            Err(ConfigError::new(field, "1-256 visible ASCII characters"))
        } else {
            Ok(())
        }
    };
    visible("service_id", &service_id)?;
    let upstream = match (cp.cluster, cp.upstream) {
        (Some(c), None) => c,
        (None, Some(u)) => u,
        _ => {
            return Err(ConfigError::new(
                "control_plane.cluster",
                "give exactly one of cluster (Envoy cluster name) or upstream (Kong host:port)",
            ))
        }
    };
    visible("control_plane.cluster", &upstream)?;
    visible("control_plane.authority", &cp.authority)?;
    visible("control_plane.token", &cp.token)?;
    for (field, v) in [
        ("control_plane.poll_interval_ms", cp.poll_interval_ms),
        ("control_plane.flush_interval_ms", cp.flush_interval_ms),
    ] {
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&v) {
            return Err(ConfigError::new(
                field,
                format!("{MIN_INTERVAL_MS}-{MAX_INTERVAL_MS} ms"),
            ));
        }
    }
    if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&cp.timeout_ms) {
        return Err(ConfigError::new(
            "control_plane.timeout_ms",
            format!("{MIN_INTERVAL_MS}-{MAX_INTERVAL_MS} ms"),
        ));
    }
    if cp.snapshot_wait_s > MAX_SNAPSHOT_WAIT_S {
        return Err(ConfigError::new(
            "control_plane.snapshot_wait_s",
            format!("0-{MAX_SNAPSHOT_WAIT_S} s"),
        ));
    }
    Ok(ControlPlane {
        service_id,
        upstream,
        authority: cp.authority,
        token: cp.token,
        poll_interval_ms: cp.poll_interval_ms,
        flush_interval_ms: cp.flush_interval_ms,
        timeout_ms: cp.timeout_ms,
        snapshot_wait_s: cp.snapshot_wait_s,
        fail_mode: cp.fail_mode,
    })
}

/// Validates a header or query parameter name; an empty string disables the source like `null`.
/// Header names are lowercased: that is how Envoy and Kong present them to the filter.
fn name(field: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() > MAX_NAME_BYTES {
        return Err(ConfigError::new(
            field,
            format!("longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    // RFC 9110 token characters: valid as a header name and safe as a query parameter name.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !v.bytes().all(token) {
        return Err(ConfigError::new(
            field,
            format!("{v:?} is not a valid header or parameter name"),
        ));
    }
    Ok(Some(v.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &str = r#""snapshot": {"plans": [{"id": "basic", "limits": []}], "applications": [], "metrics": [{"name": "hits"}], "mapping_rules": []}"#;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(format!("{{{extra}{SNAPSHOT}}}").as_bytes()).map(|(c, _)| c)
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.credentials.header.as_deref(), Some("x-api-key"));
        assert!(c.credentials.bearer);
        assert_eq!(c.credentials.query.as_deref(), Some("api_key"));
        assert_eq!(c.credentials.app_id_query.as_deref(), Some("app_id"));
        assert_eq!(
            c.upstream_headers.application.as_deref(),
            Some("x-tollgate-application")
        );
        assert!(c.strip_credentials);
        assert_eq!(c.fail_mode, FailMode::Closed);
        assert!(c.stats);
    }

    #[test]
    fn header_names_are_lowercased_and_null_disables() {
        let c = parse(r#""credentials": {"header": "X-Key", "query": null}, "#).unwrap();
        assert_eq!(c.credentials.header.as_deref(), Some("x-key"));
        assert_eq!(c.credentials.query, None);
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse(r#""credential": {}, "#).unwrap_err();
        assert!(e.message.contains("unknown field `credential`"), "{e}");
        let e = parse(r#""credentials": {"hedaer": "x"}, "#).unwrap_err();
        assert_eq!(e.field, "credentials.hedaer");
    }

    #[test]
    fn bad_types_name_the_path() {
        let e = Config::parse(
            br#"{"snapshot": {"plans": [{"id": "p", "limits": [{"metric": "hits", "period": "fortnight", "value": 1}]}]}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "snapshot.plans[0].limits[0].period");
    }

    #[test]
    fn invalid_header_name_and_missing_snapshot() {
        let e = parse(r#""credentials": {"header": "x key"}, "#).unwrap_err();
        assert_eq!(e.field, "credentials.header");
        let e = Config::parse(b"{}").unwrap_err();
        assert_eq!(e.field, "snapshot");
        assert!(parse("").unwrap().control_plane.is_none());
        let e = Config::parse(b"not json").unwrap_err();
        assert!(!e.message.is_empty());
    }

    #[test]
    fn all_sources_disabled_is_refused() {
        let e = parse(
            r#""credentials": {"header": null, "bearer": false, "query": null, "app_id": {}, "app_key": {}}, "#,
        )
        .unwrap_err();
        assert_eq!(e.field, "credentials");
    }

    #[test]
    fn shared_data_id_defaults_to_the_service_or_standalone() {
        let standalone = format!("{{{SNAPSHOT}}}");
        assert_eq!(parse("").unwrap().shared_data_id, "standalone");
        assert_eq!(
            shared_data_id(standalone.as_bytes()).as_deref(),
            Some("standalone")
        );
        let own = format!(r#"{{"shared_data_id": "edge-a", {SNAPSHOT}}}"#);
        assert_eq!(
            parse(r#""shared_data_id": "edge-a","#)
                .unwrap()
                .shared_data_id,
            "edge-a"
        );
        assert_eq!(shared_data_id(own.as_bytes()).as_deref(), Some("edge-a"));
        let cp = r#"{"service_id": "svc_1", "control_plane": {"cluster": "c", "token": "t"}}"#;
        assert_eq!(
            Config::parse(cp.as_bytes()).unwrap().0.shared_data_id,
            "svc_1"
        );
        assert_eq!(shared_data_id(cp.as_bytes()).as_deref(), Some("svc_1"));
        for bad in [r#""shared_data_id": "","#, r#""shared_data_id": "a b","#] {
            assert_eq!(parse(bad).unwrap_err().field, "shared_data_id");
        }
    }
}

#[cfg(test)]
mod control_plane_tests {
    use super::*;

    fn cp(json: &str) -> Result<ControlPlane, ConfigError> {
        Config::parse(json.as_bytes()).map(|(c, catalog)| {
            assert!(catalog.is_none());
            c.control_plane.unwrap()
        })
    }

    #[test]
    fn control_plane_mode_defaults() {
        let c = cp(r#"{"service_id": "svc_1", "control_plane": {"cluster": "tollgate", "token": "tgw_x"}}"#).unwrap();
        assert_eq!(c.upstream, "tollgate");
        assert_eq!(
            (c.poll_interval_ms, c.flush_interval_ms, c.timeout_ms),
            (500, 1_000, 5_000)
        );
        assert_eq!(c.snapshot_wait_s, 10);
        assert_eq!(c.fail_mode, FailMode::Closed);
        let k = cp(r#"{"service_id": "s", "control_plane": {"upstream": "127.0.0.1:8080", "token": "t", "fail_mode": "open"}}"#).unwrap();
        assert_eq!(
            (k.upstream.as_str(), k.fail_mode),
            ("127.0.0.1:8080", FailMode::Open)
        );
    }

    #[test]
    fn control_plane_mode_errors_name_the_field() {
        let field = |j: &str| cp(j).unwrap_err().field;
        assert_eq!(
            field(r#"{"service_id": "s", "control_plane": {"token": "t"}}"#),
            "control_plane.cluster"
        );
        assert_eq!(
            field(
                r#"{"service_id": "s", "control_plane": {"cluster": "c", "upstream": "u", "token": "t"}}"#
            ),
            "control_plane.cluster"
        );
        assert_eq!(
            field(r#"{"service_id": "s", "control_plane": {"cluster": "c"}}"#),
            "control_plane"
        );
        assert_eq!(
            field(
                r#"{"service_id": "s", "control_plane": {"cluster": "c", "token": "t", "poll_interval_ms": 5}}"#
            ),
            "control_plane.poll_interval_ms"
        );
        assert_eq!(
            field(
                r#"{"service_id": "s", "control_plane": {"cluster": "c", "token": "t", "snapshot_wait_s": 21}}"#
            ),
            "control_plane.snapshot_wait_s"
        );
        assert_eq!(field(r#"{"service_id": "s"}"#), "control_plane");
        assert_eq!(
            field(
                r#"{"snapshot": {}, "service_id": "s", "control_plane": {"cluster": "c", "token": "t"}}"#
            ),
            "snapshot"
        );
    }
}
