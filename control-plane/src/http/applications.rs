//! Applications (an account on a plan) and their API keys.
//!
//! A key is 192 random bits, shown exactly once (in the response that creates it) and stored as
//! SHA-256. An application holds at most [`MAX_ACTIVE_KEYS`] active keys. Rotating a key creates
//! a new one and lets the old one keep working for a grace period (default
//! [`DEFAULT_ROTATION_GRACE_SECS`], at most [`MAX_ROTATION_GRACE_SECS`]) so clients can switch
//! without an outage; keys in their grace period do not count against that limit, but every live
//! key (active or in grace) counts against [`MAX_LIVE_KEYS`], a hard cap well below the filter's
//! per-application bound ([`tollgate_rules::names::MAX_KEYS_PER_APPLICATION`]), and an
//! application is rotated at most [`crate::rate_limit::MAX_ROTATIONS_PER_APPLICATION_PER_HOUR`]
//! times an hour. Every writer (admin API, CLI, admin and developer portals) goes through
//! [`insert_key`] and [`rotate`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::accounts::fetch_account;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, JsonBody};
use super::list::{page, Page};
use super::plans::{copy_plan, fetch_plan};
use super::AppState;
use crate::domain::catalog::check_name;
use crate::secrets::{key_prefix, new_api_key, new_id, sha256_hex};
use crate::store::{now, Pool, Tx};

pub const MAX_ACTIVE_KEYS: i64 = 5;
/// Most live keys (active plus in their grace period) an application holds at once.
pub const MAX_LIVE_KEYS: i64 = 10;
const _: () = assert!(
    MAX_LIVE_KEYS as usize * 3 / 2 <= tollgate_rules::names::MAX_KEYS_PER_APPLICATION,
    "the live-key cap must stay well below the filter's per-application bound"
);
pub const DEFAULT_ROTATION_GRACE_SECS: i64 = 24 * 3600;
pub const MAX_ROTATION_GRACE_SECS: i64 = 30 * 24 * 3600;
/// Longest application description.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;

/// (id, account_id, plan_id, name, description, state, state_reason, created_at, updated_at)
type AppRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
);

const APP_SELECT: &str =
    "SELECT id, account_id, plan_id, name, description, state, state_reason, created_at, updated_at FROM applications";

async fn fetch_app(pool: &Pool, id: &str) -> ApiResult<AppRow> {
    sqlx::query_as(&format!("{APP_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ApiError::not_found("application", id))
}

/// (id, prefix, created_at, expires_at)
type KeyRow = (String, String, i64, Option<i64>);

fn key_json(app_id: &str, k: &KeyRow) -> Value {
    json!({"object": "application_key", "id": k.0, "application_id": app_id, "prefix": k.1, "created_at": k.2, "expires_at": k.3})
}

async fn live_keys(pool: &Pool, app_id: &str) -> ApiResult<Vec<KeyRow>> {
    Ok(sqlx::query_as(
        "SELECT id, prefix, created_at, expires_at FROM application_keys WHERE application_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY id",
    )
    .bind(app_id)
    .bind(now())
    .fetch_all(pool)
    .await?)
}

async fn app_json(pool: &Pool, a: &AppRow) -> ApiResult<Value> {
    let mut one = apps_json(pool, std::slice::from_ref(a)).await?;
    one.pop()
        .ok_or_else(|| ApiError::Internal("application vanished while rendering".into()))
}

/// Application objects for a page of applications: one query for all their live keys.
async fn apps_json(pool: &Pool, apps: &[AppRow]) -> ApiResult<Vec<Value>> {
    if apps.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (2..=apps.len() + 1)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT application_id, id, prefix, created_at, expires_at FROM application_keys \
         WHERE (expires_at IS NULL OR expires_at > $1) AND application_id IN ({placeholders}) ORDER BY id"
    );
    let mut q = sqlx::query_as::<_, (String, String, String, i64, Option<i64>)>(&sql).bind(now());
    for a in apps {
        q = q.bind(&a.0);
    }
    let keys = q.fetch_all(pool).await?;
    Ok(apps
        .iter()
        .map(|a| {
            json!({
                "object": "application", "id": a.0, "account_id": a.1, "plan_id": a.2, "name": a.3, "description": a.4,
                "state": a.5, "state_reason": a.6, "created_at": a.7, "updated_at": a.8,
                "keys": keys.iter().filter(|k| k.0 == a.0)
                    .map(|k| key_json(&a.0, &(k.1.clone(), k.2.clone(), k.3, k.4))).collect::<Vec<_>>(),
            })
        })
        .collect())
}

/// Inserts a new key for `app_id` inside `tx`, refusing a sixth active key; returns the key row and
/// the plaintext key (never stored).
pub(crate) async fn insert_key(tx: &mut Tx, app_id: &str) -> ApiResult<(KeyRow, String)> {
    // Lock the application row first, so two concurrent requests cannot both see room for a key
    // (PostgreSQL row lock; SQLite's write lock serializes anyway).
    sqlx::query("UPDATE applications SET updated_at = $2 WHERE id = $1")
        .bind(app_id)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    let (active,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM application_keys WHERE application_id = $1 AND expires_at IS NULL",
    )
    .bind(app_id)
    .fetch_one(&mut **tx)
    .await?;
    let (live,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM application_keys WHERE application_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(app_id)
    .bind(now())
    .fetch_one(&mut **tx)
    .await?;
    if live >= MAX_LIVE_KEYS {
        return Err(ApiError::conflict(
            "live_key_limit_reached",
            format!(
                "an application has at most {MAX_LIVE_KEYS} live keys, counting rotated keys in their grace period; revoke one"
            ),
        ));
    }
    if active >= MAX_ACTIVE_KEYS {
        return Err(ApiError::conflict(
            "key_limit_reached",
            format!(
                "an application has at most {MAX_ACTIVE_KEYS} active keys; revoke or rotate one"
            ),
        ));
    }
    let key = new_api_key();
    let row: KeyRow = (new_id("key"), key_prefix(&key), now(), None);
    sqlx::query("INSERT INTO application_keys (id, application_id, key_sha256, prefix, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, NULL)")
        .bind(&row.0)
        .bind(app_id)
        .bind(sha256_hex(&key))
        .bind(&row.1)
        .bind(row.2)
        .execute(&mut **tx)
        .await?;
    Ok((row, key))
}

fn check_description(d: &str) -> ApiResult<String> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::invalid(
            "description",
            "invalid_description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(d.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppInput {
    account_id: Option<String>,
    plan_id: Option<String>,
    name: Option<String>,
    description: Option<String>,
}

/// Inserts a live application (checked input) inside `tx`, starts its plan contract and makes its
/// first key. Returns (application id, key row, plaintext key). The API and the developer portal
/// both create applications through this.
pub(crate) async fn insert_application(
    tx: &mut Tx,
    account_id: &str,
    plan_id: &str,
    name: &str,
    description: &str,
) -> ApiResult<(String, KeyRow, String)> {
    let id = new_id("app");
    let t = now();
    sqlx::query(
        "INSERT INTO applications (id, account_id, plan_id, name, description, state, state_reason, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'live', NULL, $6, $6)",
    )
    .bind(&id)
    .bind(account_id)
    .bind(plan_id)
    .bind(name)
    .bind(description)
    .bind(t)
    .execute(&mut **tx)
    .await?;
    crate::domain::billing::contracts::start(tx, &id, plan_id, t).await?;
    let (key_row, key) = insert_key(tx, &id).await?;
    Ok((id, key_row, key))
}

pub async fn create(
    State(s): State<AppState>,
    JsonBody(input): JsonBody<AppInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let account_id = input.account_id.ok_or_else(|| {
        ApiError::invalid("account_id", "missing_field", "account_id is required")
    })?;
    let plan_id = input
        .plan_id
        .ok_or_else(|| ApiError::invalid("plan_id", "missing_field", "plan_id is required"))?;
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let description = check_description(input.description.as_deref().unwrap_or(""))?;
    fetch_account(&s.pool, &account_id).await.map_err(|_| {
        ApiError::invalid(
            "account_id",
            "unknown_account",
            format!("no account with id {account_id:?}"),
        )
    })?;
    fetch_plan(&s.pool, &plan_id).await.map_err(|_| {
        ApiError::invalid(
            "plan_id",
            "unknown_plan",
            format!("no plan with id {plan_id:?}"),
        )
    })?;
    let mut tx = s.pool.begin().await?;
    let (id, key_row, key) =
        insert_application(&mut tx, &account_id, &plan_id, &name, &description).await?;
    tx.commit().await?;
    let mut body = app_json(&s.pool, &fetch_app(&s.pool, &id).await?).await?;
    // The plaintext key, this once; it cannot be retrieved again.
    body["key"] = json!(key);
    body["key_id"] = json!(key_row.0);
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppListParams {
    limit: Option<i64>,
    starting_after: Option<String>,
    account_id: Option<String>,
    plan_id: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<AppListParams>,
) -> ApiResult<Json<Page<Value>>> {
    let lp = super::list::ListParams {
        limit: p.limit,
        starting_after: p.starting_after,
    };
    let limit = lp.limit()?;
    let rows: Vec<AppRow> = sqlx::query_as(&format!(
        "{APP_SELECT} WHERE id > $1 AND ($2 = '' OR account_id = $2) AND ($3 = '' OR plan_id = $3) ORDER BY id LIMIT $4"
    ))
    .bind(lp.after())
    .bind(p.account_id.unwrap_or_default())
    .bind(p.plan_id.unwrap_or_default())
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    let pg = page(rows, limit, |r| &r.0);
    let data = apps_json(&s.pool, &pg.data).await?;
    Ok(Json(pg.with_data(data)))
}

pub async fn get(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(
        app_json(&s.pool, &fetch_app(&s.pool, &id).await?).await?,
    ))
}

pub async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AppInput>,
) -> ApiResult<Json<Value>> {
    let a = fetch_app(&s.pool, &id).await?;
    if input.account_id.as_ref().is_some_and(|acc| *acc != a.1) {
        return Err(ApiError::invalid(
            "account_id",
            "immutable",
            "an application cannot move to another account",
        ));
    }
    let name = input
        .name
        .as_deref()
        .map(|n| check_name("name", n))
        .transpose()?;
    let description = input
        .description
        .as_deref()
        .map(check_description)
        .transpose()?;
    if let Some(plan_id) = &input.plan_id {
        fetch_plan(&s.pool, plan_id).await.map_err(|_| {
            ApiError::invalid(
                "plan_id",
                "unknown_plan",
                format!("no plan with id {plan_id:?}"),
            )
        })?;
    }
    let t = now();
    let name = name.unwrap_or(a.3);
    let plan_id = input.plan_id.unwrap_or(a.2);
    let mut tx = s.pool.begin().await?;
    sqlx::query("UPDATE applications SET name = $2, description = $3, plan_id = $4, updated_at = $5 WHERE id = $1")
        .bind(&id)
        .bind(&name)
        .bind(description.unwrap_or(a.4))
        .bind(&plan_id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    crate::domain::billing::contracts::rename(&mut tx, &id, &name).await?;
    crate::domain::billing::contracts::change_plan(&mut tx, &id, &plan_id, t).await?;
    tx.commit().await?;
    Ok(Json(
        app_json(&s.pool, &fetch_app(&s.pool, &id).await?).await?,
    ))
}

pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    fetch_app(&s.pool, &id).await?;
    let mut tx = s.pool.begin().await?;
    crate::domain::billing::contracts::end(&mut tx, &id, now()).await?;
    sqlx::query("DELETE FROM application_keys WHERE application_id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM applications WHERE id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(
        json!({"object": "application", "id": id, "deleted": true}),
    ))
}

pub async fn create_key(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    fetch_app(&s.pool, &id).await?;
    let mut tx = crate::store::begin_write(&s.pool).await?;
    let (row, key) = insert_key(&mut tx, &id).await?;
    tx.commit().await?;
    let mut body = key_json(&id, &row);
    body["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list_keys(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    fetch_app(&s.pool, &id).await?;
    let keys = live_keys(&s.pool, &id).await?;
    Ok(Json(
        json!({"object": "list", "data": keys.iter().map(|k| key_json(&id, k)).collect::<Vec<_>>(), "has_more": false, "next_cursor": null}),
    ))
}

pub async fn revoke_key(
    State(s): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    fetch_app(&s.pool, &id).await?;
    let r = sqlx::query("DELETE FROM application_keys WHERE application_id = $1 AND id = $2")
        .bind(&id)
        .bind(&key_id)
        .execute(&s.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("key", key_id));
    }
    Ok(Json(
        json!({"object": "application_key", "id": key_id, "deleted": true}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateInput {
    grace_seconds: Option<i64>,
}

/// Replaces active key `key_id` of `app_id`: the old one keeps working for `grace` seconds; returns
/// the new key (plaintext, to show once). Refused (429) past the application's rotation rate and
/// (409) when the new key would exceed [`MAX_LIVE_KEYS`]; nothing is written then.
pub(crate) async fn rotate(
    limits: &crate::rate_limit::Limiter,
    tx: &mut Tx,
    app_id: &str,
    key_id: &str,
    grace: i64,
) -> ApiResult<(KeyRow, String)> {
    if let Some(retry_after) = limits.rotation_blocked(app_id) {
        return Err(ApiError::TooManyRequests {
            code: "rotation_rate_limited",
            message: format!(
                "an application's keys are rotated at most {} times an hour",
                crate::rate_limit::MAX_ROTATIONS_PER_APPLICATION_PER_HOUR
            ),
            retry_after,
        });
    }
    // The application row first, as in insert_key: concurrent rotations then queue here.
    sqlx::query("UPDATE applications SET updated_at = $2 WHERE id = $1")
        .bind(app_id)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    let r = sqlx::query("UPDATE application_keys SET expires_at = $3 WHERE application_id = $1 AND id = $2 AND expires_at IS NULL")
        .bind(app_id)
        .bind(key_id)
        .bind(now() + grace)
        .execute(&mut **tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found("active key", key_id));
    }
    let made = insert_key(tx, app_id).await?;
    // Only rotations that happen count (a refused one leaves the window as it was).
    limits.rotated(app_id);
    Ok(made)
}

pub async fn rotate_key(
    State(s): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
    JsonBody(input): JsonBody<RotateInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    fetch_app(&s.pool, &id).await?;
    let grace = input.grace_seconds.unwrap_or(DEFAULT_ROTATION_GRACE_SECS);
    if !(0..=MAX_ROTATION_GRACE_SECS).contains(&grace) {
        return Err(ApiError::invalid(
            "grace_seconds",
            "invalid_grace",
            format!("0-{MAX_ROTATION_GRACE_SECS} seconds"),
        ));
    }
    let mut tx = crate::store::begin_write(&s.pool).await?;
    let (row, key) = rotate(&s.limits, &mut tx, &id, &key_id, grace).await?;
    tx.commit().await?;
    let mut body = key_json(&id, &row);
    body["key"] = json!(key);
    body["replaces"] = json!({"id": key_id, "expires_at": now() + grace});
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspendInput {
    reason: Option<SuspendReason>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum SuspendReason {
    Admin,
    NonPayment,
}

pub async fn suspend(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SuspendInput>,
) -> ApiResult<Json<Value>> {
    fetch_app(&s.pool, &id).await?;
    let reason = match input.reason.unwrap_or(SuspendReason::Admin) {
        SuspendReason::Admin => "admin",
        SuspendReason::NonPayment => "non_payment",
    };
    sqlx::query("UPDATE applications SET state = 'suspended', state_reason = $2, updated_at = $3 WHERE id = $1")
        .bind(&id)
        .bind(reason)
        .bind(now())
        .execute(&s.pool)
        .await?;
    Ok(Json(
        app_json(&s.pool, &fetch_app(&s.pool, &id).await?).await?,
    ))
}

pub async fn resume(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    fetch_app(&s.pool, &id).await?;
    sqlx::query("UPDATE applications SET state = 'live', state_reason = NULL, updated_at = $2 WHERE id = $1")
        .bind(&id)
        .bind(now())
        .execute(&s.pool)
        .await?;
    Ok(Json(
        app_json(&s.pool, &fetch_app(&s.pool, &id).await?).await?,
    ))
}

/// Gives the application its own copy of its plan (limits and prices included) to customize.
pub async fn customize_plan(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let a = fetch_app(&s.pool, &id).await?;
    let plan = fetch_plan(&s.pool, &a.2).await?;
    if plan.7.is_some() {
        return Err(ApiError::conflict(
            "already_customized",
            "the application's plan is already a customized copy",
        ));
    }
    let mut tx = s.pool.begin().await?;
    let name = format!("{} (custom for {})", plan.2, a.3);
    let name: String = name
        .chars()
        .take(crate::domain::catalog::MAX_NAME_CHARS)
        .collect();
    let copy = copy_plan(&mut tx, &plan, &name).await?;
    sqlx::query("UPDATE applications SET plan_id = $2, updated_at = $3 WHERE id = $1")
        .bind(&id)
        .bind(&copy)
        .bind(now())
        .execute(&mut *tx)
        .await?;
    crate::domain::billing::contracts::switch_to_copy(&mut tx, &id, &copy).await?;
    tx.commit().await?;
    let plan = fetch_plan(&s.pool, &copy).await?;
    Ok((
        StatusCode::CREATED,
        Json(super::plans::plan_json(&s.pool, &plan).await?),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    metric: Option<String>,
    period: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
}

/// Longest range one usage query may cover (two years of hourly buckets).
pub const MAX_USAGE_RANGE_SECS: i64 = 2 * 366 * 24 * 3600;

/// `GET /applications/{id}/usage?metric=hits&period=hour|day|month&since=&until=`: metered usage in
/// calendar-aligned UTC buckets (stored per hour; days and months are sums).
pub async fn usage(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> ApiResult<Json<Value>> {
    use tollgate_protocol::Period;
    let app = fetch_app(&s.pool, &id).await?;
    let metric = p.metric.unwrap_or_else(|| "hits".into());
    let period = match p.period.as_deref().unwrap_or("day") {
        "hour" => Period::Hour,
        "day" => Period::Day,
        "month" => Period::Month,
        other => {
            return Err(ApiError::bad_request(
                Some("period".into()),
                "invalid_period",
                format!("{other:?}: hour, day or month"),
            ))
        }
    };
    let until = p.until.unwrap_or_else(now);
    let default_span = match period {
        Period::Hour => 24 * 3600,
        Period::Day => 31 * 24 * 3600,
        _ => 365 * 24 * 3600,
    };
    let since =
        tollgate_rules::periods::window(period, p.since.unwrap_or(until - default_span)).start;
    if until <= since || until - since > MAX_USAGE_RANGE_SECS {
        return Err(ApiError::bad_request(
            Some("since".into()),
            "invalid_range",
            "since < until, at most two years apart",
        ));
    }
    let plan = fetch_plan(&s.pool, &app.2).await?;
    let metric_id: Option<(String,)> =
        sqlx::query_as("SELECT id FROM metrics WHERE service_id = $1 AND name = $2")
            .bind(&plan.1)
            .bind(&metric)
            .fetch_optional(&s.pool)
            .await?;
    let Some((metric_id,)) = metric_id else {
        return Err(ApiError::bad_request(
            Some("metric".into()),
            "unknown_metric",
            format!("the service has no metric {metric:?}"),
        ));
    };
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT bucket_start, value FROM usage_counters WHERE application_id = $1 AND metric_id = $2 AND bucket_start >= $3 AND bucket_start < $4 ORDER BY bucket_start",
    )
    .bind(&id)
    .bind(&metric_id)
    .bind(since)
    .bind(until)
    .fetch_all(&s.pool)
    .await?;
    let mut buckets: Vec<(i64, i64)> = Vec::new();
    for (hour, value) in rows {
        let start = tollgate_rules::periods::window(period, hour).start;
        match buckets.last_mut() {
            Some((s, v)) if *s == start => *v += value,
            _ => buckets.push((start, value)),
        }
    }
    Ok(Json(json!({
        "object": "usage", "application_id": id, "metric": metric, "period": period.as_str(),
        "since": since, "until": until,
        "total": buckets.iter().map(|(_, v)| v).sum::<i64>(),
        "buckets": buckets.iter().map(|(start, value)| json!({"start": start, "value": value})).collect::<Vec<_>>(),
    })))
}
