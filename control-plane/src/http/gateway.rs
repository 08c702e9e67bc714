//! What gateways call: the snapshot of a service and usage reports (`domain/gateway`,
//! `domain/metering`). Authenticated with gateway tokens, which can do nothing else. The
//! handlers check the caller's scope, call the domain, and encode: the snapshot as JSON or the
//! compact binary form, cached per version, with its version as the ETag (304 on a match).

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use tollgate_protocol::{UsageAck, UsageReport};

use crate::domain::gateway::encoded::Encoding;
use crate::domain::gateway::{self, snapshot, watch, GatewayCaller};
use crate::domain::metering;
use crate::domain::DomainError;
use crate::secrets::sha256_hex;
use crate::state::AppState;
use crate::telemetry::{self, ReportOutcome, SnapshotAnswer, SnapshotEncoding};
use crate::web::error::{ApiError, ApiResult};
use crate::web::extract::{ApiQuery, RawBody};

/// Gateway authentication: `Authorization: Bearer <gateway token>`.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(|t| sha256_hex(t.trim()));
    let Some(digest) = token else {
        return ApiError::Unauthorized("send Authorization: Bearer <gateway token>".into())
            .into_response();
    };
    match gateway::authenticate(&state.pool, &digest).await {
        Ok(Some(caller)) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Ok(None) => {
            ApiError::Unauthorized("unknown or revoked gateway token".into()).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The snapshot of a service: JSON, or the compact binary form when `Accept` names it. 304 while
/// `If-None-Match` holds the current version; with `Prefer: wait=<s>` that 304 is held until the
/// version moves or the wait runs out (a long poll: see `domain::gateway::watch`).
#[utoipa::path(
    get,
    path = "/gateway/v1/services/{id}/snapshot",
    tag = "gateway",
    params(
        ("id" = String, Path, description = "The service"),
        ("If-None-Match" = Option<String>, Header, description = "The version the gateway holds, quoted"),
        ("Prefer" = Option<String>, Header, description = "`wait=<seconds>` (RFC 7240): while If-None-Match holds the current version, hold the request until the version moves (answered at once, 200) or the wait runs out (304); at most 20 s"),
        ("Accept" = Option<String>, Header, description = "`application/vnd.tollgate.snapshot.v2` (records with app keys) or `.v1` for the compact binary form; the newest named is answered")
    ),
    responses(
        (status = 200, description = "The snapshot; its version is the ETag",
            headers(("etag" = String, description = "The quoted version"), ("preference-applied" = String, description = "`wait=<seconds>` when the request asked to wait")),
            content(
                (schema::GatewaySnapshot = "application/json"),
                (Vec<u8> = "application/vnd.tollgate.snapshot.v1"),
                (Vec<u8> = "application/vnd.tollgate.snapshot.v2")
            )),
        (status = 304, description = "Unchanged since the version in If-None-Match",
            headers(("etag" = String, description = "The quoted version"), ("preference-applied" = String, description = "`wait=<seconds>` when the request asked to wait"))),
        (status = 401, description = "No or an unknown gateway token", body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "The token is not scoped to the service", body = crate::http::api_doc::ErrorBody),
        (status = 404, description = "No such service", body = crate::http::api_doc::ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = crate::http::api_doc::ErrorBody)
    ),
    security(("gateway_token" = []))
)]
pub async fn snapshot(
    State(s): State<AppState>,
    Extension(caller): Extension<GatewayCaller>,
    Path(service_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.check_service(&s.pool, &service_id).await?;
    let mut version = snapshot::version(&s.pool).await?;
    let held = headers.get("if-none-match").and_then(|v| v.to_str().ok());
    let requested = watch::requested_wait(
        headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    // Past MAX_HELD_REQUESTS held at once, the wait is not honored (answered at once, without
    // Preference-Applied: the gateway polls at its interval).
    let place = requested.and_then(|_| s.versions.try_hold());
    let wait = requested.filter(|_| place.is_some());
    let mut was_held = false;
    if let Some(wait) = wait {
        if held == Some(format!("\"{version}\"").as_str()) {
            was_held = true;
            let _holding = telemetry::get().snapshot_held();
            version = s
                .versions
                .wait_past(&s.pool, &version, tokio::time::Instant::now() + wait)
                .await?;
        }
    }
    // RFC 7240: say that the wait was honored (and how long it may be), so a gateway can tell a
    // control plane that holds from one that answers at once.
    let applied = wait.and_then(|w| HeaderValue::from_str(&format!("wait={}", w.as_secs())).ok());
    let etag = format!("\"{version}\"");
    if held == Some(etag.as_str()) {
        telemetry::get().snapshot_request(SnapshotAnswer::NotModified, was_held);
        let mut r = (StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response();
        if let Some(v) = applied {
            r.headers_mut().insert("preference-applied", v);
        }
        return Ok(r);
    }
    // The newest compact encoding the gateway asks for (the Tollgate filter does), else JSON.
    let encoding = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .and_then(tollgate_protocol::binary::Format::accepted)
        .map_or(Encoding::Json, Encoding::Binary);
    let body = s
        .snapshots
        .encoded(&s.pool, &service_id, &version, encoding)
        .await?;
    telemetry::get().snapshot_request(SnapshotAnswer::Full, was_held);
    if let Some(revision) = version.split('.').next().and_then(|r| r.parse().ok()) {
        telemetry::get().snapshot_revision(revision);
    }
    telemetry::get().snapshot_served(
        match encoding {
            Encoding::Binary(_) => SnapshotEncoding::Binary,
            Encoding::Json => SnapshotEncoding::Json,
        },
        body.len(),
    );
    let mut r = (StatusCode::OK, Bytes::clone(&body)).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(encoding.media_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert("etag", v);
    }
    if let Some(v) = applied {
        r.headers_mut().insert("preference-applied", v);
    }
    Ok(r)
}

/// Records a usage report exactly once: a retried `(gateway, sequence)` is acknowledged as a
/// duplicate and adds nothing; a refused report (4xx) records nothing.
#[utoipa::path(
    post,
    path = "/gateway/v1/services/{id}/usage",
    tag = "gateway",
    params(("id" = String, Path, description = "The service")),
    request_body = schema::UsageReport,
    responses(
        (status = 200, description = "Recorded, or a duplicate", body = schema::UsageAck),
        (status = 400, description = "Not a usage report (`invalid_json`)", body = crate::http::api_doc::ErrorBody),
        (status = 401, description = "No or an unknown gateway token", body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "The token is not scoped to the service", body = crate::http::api_doc::ErrorBody),
        (status = 404, description = "No such service", body = crate::http::api_doc::ErrorBody),
        (status = 413, description = "The body is over the size limit", body = crate::http::api_doc::ErrorBody),
        (status = 422, description = "Out of bounds (`invalid_gateway`, `too_many_entries`, `invalid_bucket`, `invalid_delta`, `counter_delta_too_large`, `counter_overflow`, `application_out_of_scope`, ...); nothing was recorded", body = crate::http::api_doc::ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = crate::http::api_doc::ErrorBody)
    ),
    security(("gateway_token" = []))
)]
pub async fn usage(
    State(s): State<AppState>,
    Extension(caller): Extension<GatewayCaller>,
    Path(service_id): Path<String>,
    RawBody(body): RawBody,
) -> ApiResult<Json<UsageAck>> {
    caller.check_service(&s.pool, &service_id).await?;
    let report: UsageReport = match crate::web::extract::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            telemetry::get().usage_report(ReportOutcome::Refused, 0, 0);
            return Err(e);
        }
    };
    let recorded = metering::reports::record(&s.pool, &caller, &service_id, &report).await;
    let (outcome, accepted, ignored) = match &recorded {
        Ok(ack) if ack.duplicate => (ReportOutcome::Duplicate, 0, 0),
        Ok(ack) => (ReportOutcome::Recorded, ack.accepted, ack.ignored),
        Err(DomainError::Unavailable(_) | DomainError::Internal(_)) => {
            (ReportOutcome::Failed, 0, 0)
        }
        Err(_) => (ReportOutcome::Refused, 0, 0),
    };
    telemetry::get().usage_report(outcome, accepted, ignored);
    Ok(Json(recorded?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalUsageParams {
    /// The asking gateway instance: its own usage is left out.
    instance: String,
}

/// `GET /gateway/v1/services/{id}/global_usage?instance=<id>`: usage admitted by all *other*
/// instances in the current window of every period the service's plans limit. A gateway adds it to
/// its own counts, so a quota holds across gateways within (instances x rate x (flush + poll)).
#[utoipa::path(
    get,
    path = "/gateway/v1/services/{id}/global_usage",
    tag = "gateway",
    params(
        ("id" = String, Path, description = "The service"),
        ("instance" = String, Query, description = "The asking gateway instance: its own usage is left out")
    ),
    responses(
        (status = 200, description = "Usage of all other instances in the current windows", body = schema::GlobalUsage),
        (status = 400, description = "No `instance` or an unknown parameter", body = crate::http::api_doc::ErrorBody),
        (status = 401, description = "No or an unknown gateway token", body = crate::http::api_doc::ErrorBody),
        (status = 403, description = "The token is not scoped to the service", body = crate::http::api_doc::ErrorBody),
        (status = 404, description = "No such service", body = crate::http::api_doc::ErrorBody),
        (status = 503, description = "The database is unavailable; retry", body = crate::http::api_doc::ErrorBody)
    ),
    security(("gateway_token" = []))
)]
pub async fn global_usage(
    State(s): State<AppState>,
    Extension(caller): Extension<GatewayCaller>,
    Path(service_id): Path<String>,
    ApiQuery(p): ApiQuery<GlobalUsageParams>,
) -> ApiResult<Json<tollgate_protocol::GlobalUsage>> {
    caller.check_service(&s.pool, &service_id).await?;
    Ok(Json(
        metering::global_usage::of_others(&s.pool, &caller, &service_id, &p.instance).await?,
    ))
}

/// The gateway API's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(snapshot, usage, global_usage),
    components(schemas(
        schema::GatewaySnapshot,
        schema::GatewayPlan,
        schema::GatewayCreditPrice,
        schema::GatewayWallet,
        schema::GlobalCreditEntry,
        schema::GatewayLimit,
        schema::GatewayPeriod,
        schema::GatewayApplication,
        schema::GatewayMetric,
        schema::GatewayMappingRule,
        schema::UsageReport,
        schema::UsageEntry,
        schema::UsageAck,
        schema::GlobalUsage,
        schema::GlobalUsageEntry
    ))
)]
pub struct GatewayApi;

/// Schemas of the wire types of `tollgate-protocol` (shared with the wasm filter, which carries
/// no OpenAPI dependency): the same fields, names and optionality, checked against the real
/// types' JSON by the test below. Prefixed where an admin API schema has the same name.
#[allow(dead_code)] // schemas only: the handlers use the protocol types
mod schema {
    use utoipa::ToSchema;

    /// What a gateway enforces for one service; `version` is also the ETag.
    #[derive(ToSchema)]
    pub struct GatewaySnapshot {
        pub version: Option<String>,
        pub plans: Vec<GatewayPlan>,
        pub applications: Vec<GatewayApplication>,
        pub metrics: Vec<GatewayMetric>,
        pub mapping_rules: Vec<GatewayMappingRule>,
        /// Prepaid wallets the gateway enforces (absent when none).
        pub wallets: Option<Vec<GatewayWallet>>,
        /// The developer portal's wallet page, linked from a 402 `insufficient_credit`.
        pub top_up_url: Option<String>,
    }

    /// A plan as the gateway sees it: only its limits (prices stay in the control plane).
    #[derive(ToSchema)]
    pub struct GatewayPlan {
        pub id: String,
        pub name: Option<String>,
        pub limits: Vec<GatewayLimit>,
        /// Prices of a prepaid-credit plan, nano-units per unit (absent for invoiced plans).
        pub credit_prices: Option<Vec<GatewayCreditPrice>>,
    }

    #[derive(ToSchema)]
    pub struct GatewayCreditPrice {
        pub metric: String,
        pub nano_per_unit: u64,
    }

    /// A prepaid wallet: what its applications may spend, in nano-units (10^-9) of its currency.
    #[derive(ToSchema)]
    pub struct GatewayWallet {
        pub id: String,
        pub limit_nano: u64,
        pub applications: Vec<String>,
    }

    #[derive(ToSchema)]
    pub struct GlobalCreditEntry {
        pub wallet: String,
        pub spent_nano: u64,
    }

    #[derive(ToSchema)]
    pub struct GatewayLimit {
        pub metric: String,
        pub period: GatewayPeriod,
        pub value: u64,
    }

    /// Calendar-aligned UTC windows (weeks start on Monday).
    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum GatewayPeriod {
        Minute,
        Hour,
        Day,
        Week,
        Month,
        Year,
        Eternity,
    }

    #[derive(ToSchema)]
    pub struct GatewayApplication {
        pub id: String,
        pub plan: String,
        /// `live` or `suspended`.
        #[schema(pattern = "^(live|suspended)$")]
        pub state: String,
        /// `admin` or `non_payment` (the filter then answers 402).
        #[schema(pattern = "^(admin|non_payment)$")]
        pub state_reason: Option<String>,
        /// Lowercase hex SHA-256 of each live key.
        pub key_sha256: Vec<String>,
        /// 3scale's `app_id`, presented with one of the app keys.
        pub app_id: Option<String>,
        /// Lowercase hex SHA-256 of each app key (only with an `app_id`; absent when none).
        #[schema(required = false)]
        pub app_key_sha256: Vec<String>,
    }

    #[derive(ToSchema)]
    pub struct GatewayMetric {
        pub name: String,
        pub parent: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct GatewayMappingRule {
        /// An HTTP method, or `ANY`.
        pub method: String,
        pub pattern: String,
        pub metric: String,
        pub delta: u64,
        pub last: Option<bool>,
    }

    /// `(gateway, sequence)` is the report's idempotency id: a retry is counted once.
    #[derive(ToSchema)]
    pub struct UsageReport {
        pub gateway: String,
        pub instance: Option<String>,
        pub sequence: u64,
        pub entries: Vec<UsageEntry>,
    }

    #[derive(ToSchema)]
    pub struct UsageEntry {
        pub application: String,
        pub metric: String,
        /// Start of the UTC minute (Unix seconds, a multiple of 60).
        pub bucket_start: i64,
        pub delta: u64,
    }

    #[derive(ToSchema)]
    pub struct UsageAck {
        /// True when this `(gateway, sequence)` was already counted: nothing was added.
        pub duplicate: bool,
        pub accepted: u64,
        pub ignored: u64,
    }

    #[derive(ToSchema)]
    pub struct GlobalUsage {
        pub entries: Vec<GlobalUsageEntry>,
        pub credit: Option<Vec<GlobalCreditEntry>>,
    }

    #[derive(ToSchema)]
    pub struct GlobalUsageEntry {
        pub application: String,
        pub metric: String,
        pub period: GatewayPeriod,
        pub window_start: i64,
        pub value: u64,
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    /// Every field the protocol types serialize is in their schema, and nothing else is.
    #[test]
    fn the_schemas_name_the_protocol_types_fields() {
        use tollgate_protocol::*;
        let snapshot = Snapshot {
            version: Some("1.0".into()),
            plans: vec![Plan {
                id: "p".into(),
                name: Some("n".into()),
                limits: vec![Limit {
                    metric: "hits".into(),
                    period: Period::Minute,
                    value: 1,
                }],
                credit_prices: vec![CreditPrice {
                    metric: "hits".into(),
                    nano_per_unit: 10_000_000,
                }],
            }],
            applications: vec![Application {
                id: "a".into(),
                plan: "p".into(),
                state: ApplicationState::Suspended,
                state_reason: Some(SuspensionReason::NonPayment),
                key_sha256: vec!["k".into()],
                app_id: Some("x".into()),
                app_key_sha256: vec!["cd".repeat(32)],
            }],
            metrics: vec![Metric {
                name: "m".into(),
                parent: Some("hits".into()),
            }],
            mapping_rules: vec![MappingRule {
                method: "GET".into(),
                pattern: "/".into(),
                metric: "hits".into(),
                delta: 1,
                last: true,
            }],
            wallets: vec![Wallet {
                id: "w".into(),
                limit_nano: 1,
                applications: vec!["a".into()],
            }],
            top_up_url: Some("https://portal.example/wallet".into()),
        };
        let report = UsageReport {
            gateway: "g".into(),
            instance: Some("i".into()),
            sequence: 1,
            entries: vec![UsageEntry {
                application: "a".into(),
                metric: "hits".into(),
                bucket_start: 60,
                delta: 1,
            }],
        };
        let global = GlobalUsage {
            entries: vec![GlobalUsageEntry {
                application: "a".into(),
                metric: "hits".into(),
                period: Period::Hour,
                window_start: 0,
                value: 1,
            }],
            credit: vec![GlobalCreditEntry {
                wallet: "w".into(),
                spent_nano: 1,
            }],
        };
        let doc = serde_json::to_value(super::GatewayApi::openapi()).unwrap();
        let fields = |schema: &str| -> Vec<String> {
            let mut f: Vec<String> = doc["components"]["schemas"][schema]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("no schema {schema}"))
                .keys()
                .cloned()
                .collect();
            f.sort();
            f
        };
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let s = serde_json::to_value(&snapshot).unwrap();
        let r = serde_json::to_value(&report).unwrap();
        let g = serde_json::to_value(&global).unwrap();
        let ack = serde_json::to_value(UsageAck::default()).unwrap();
        for (schema, value) in [
            ("GatewaySnapshot", &s),
            ("GatewayPlan", &s["plans"][0]),
            ("GatewayLimit", &s["plans"][0]["limits"][0]),
            ("GatewayApplication", &s["applications"][0]),
            ("GatewayMetric", &s["metrics"][0]),
            ("GatewayMappingRule", &s["mapping_rules"][0]),
            ("UsageReport", &r),
            ("UsageEntry", &r["entries"][0]),
            ("GlobalUsage", &g),
            ("GlobalUsageEntry", &g["entries"][0]),
            ("GatewayCreditPrice", &s["plans"][0]["credit_prices"][0]),
            ("GatewayWallet", &s["wallets"][0]),
            ("GlobalCreditEntry", &g["credit"][0]),
            ("UsageAck", &ack),
        ] {
            assert_eq!(fields(schema), keys(value), "{schema}");
        }
    }
}
