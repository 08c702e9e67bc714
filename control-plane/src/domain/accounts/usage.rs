//! Metered usage of one application: hourly counters summed into calendar-aligned UTC buckets
//! (the admin API), and the developer portal's view of one application (keys, the last days'
//! hits, the plan's limits).

use serde::{Deserialize, Serialize};
use tollgate_protocol::Period;

use super::applications::{self, OwnApplication};
use super::keys::{self, ApplicationKey};
use crate::domain::billing::calendar::SECONDS_PER_DAY;
use crate::domain::{DomainError, DomainResult};
use crate::store::{now, Pool};

/// Longest range one usage query may cover (two years of hourly buckets).
pub const MAX_USAGE_RANGE_SECS: i64 = 2 * 366 * 24 * 3600;

/// `?metric=hits&period=hour|day|month&since=&until=` of `GET /applications/{id}/usage`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Default `hits`.
    pub metric: Option<String>,
    /// `hour`, `day` (default) or `month`.
    pub period: Option<String>,
    /// Unix seconds; default one bucket span before `until`, moved back to its bucket's start.
    pub since: Option<i64>,
    /// Unix seconds; default now.
    pub until: Option<i64>,
}

/// The bucket sizes usage is reported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsagePeriod {
    Hour,
    Day,
    Month,
}

impl UsagePeriod {
    fn parse(s: &str) -> DomainResult<UsagePeriod> {
        match s {
            "hour" => Ok(UsagePeriod::Hour),
            "day" => Ok(UsagePeriod::Day),
            "month" => Ok(UsagePeriod::Month),
            other => Err(DomainError::malformed(
                Some("period".into()),
                "invalid_period",
                format!("{other:?}: hour, day or month"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.period().as_str()
    }

    fn period(self) -> Period {
        match self {
            UsagePeriod::Hour => Period::Hour,
            UsagePeriod::Day => Period::Day,
            UsagePeriod::Month => Period::Month,
        }
    }

    /// The range asked for when `since` is not given.
    fn default_span(self) -> i64 {
        match self {
            UsagePeriod::Hour => 24 * 3600,
            UsagePeriod::Day => 31 * 24 * 3600,
            UsagePeriod::Month => 365 * 24 * 3600,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Always `"usage"`.
    pub object: &'static str,
    pub application_id: String,
    pub metric: String,
    pub period: UsagePeriod,
    pub since: i64,
    pub until: i64,
    pub total: i64,
    /// Buckets with usage only, in time order.
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Bucket {
    /// Unix seconds: the bucket's start.
    pub start: i64,
    pub value: i64,
}

/// Usage of application `id` per `p` (stored per hour; days and months are sums).
pub async fn of_application(pool: &Pool, id: &str, p: &UsageParams) -> DomainResult<Usage> {
    applications::must_exist(pool, id).await?;
    let metric = p.metric.clone().unwrap_or_else(|| "hits".into());
    let period = UsagePeriod::parse(p.period.as_deref().unwrap_or("day"))?;
    let until = p.until.unwrap_or_else(now);
    let since = tollgate_rules::periods::window(
        period.period(),
        p.since.unwrap_or(until - period.default_span()),
    )
    .start;
    if until <= since || until - since > MAX_USAGE_RANGE_SECS {
        return Err(DomainError::malformed(
            Some("since".into()),
            "invalid_range",
            "since < until, at most two years apart",
        ));
    }
    let metric_id: Option<(String,)> = sqlx::query_as(
        "SELECT m.id FROM applications a JOIN plans p ON p.id = a.plan_id \
         JOIN metrics m ON m.service_id = p.service_id WHERE a.id = $1 AND m.name = $2",
    )
    .bind(id)
    .bind(&metric)
    .fetch_optional(pool)
    .await?;
    let Some((metric_id,)) = metric_id else {
        return Err(DomainError::malformed(
            Some("metric".into()),
            "unknown_metric",
            format!("the service has no metric {metric:?}"),
        ));
    };
    let hours: Vec<Bucket> = sqlx::query_as(
        "SELECT bucket_start AS start, value FROM usage_counters WHERE application_id = $1 AND metric_id = $2 AND bucket_start >= $3 AND bucket_start < $4 ORDER BY bucket_start",
    )
    .bind(id)
    .bind(&metric_id)
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await?;
    let mut buckets: Vec<Bucket> = Vec::new();
    for hour in hours {
        let start = tollgate_rules::periods::window(period.period(), hour.start).start;
        match buckets.last_mut() {
            Some(b) if b.start == start => b.value += hour.value,
            _ => buckets.push(Bucket {
                start,
                value: hour.value,
            }),
        }
    }
    Ok(Usage {
        object: "usage",
        application_id: id.to_string(),
        metric,
        period,
        since,
        until,
        total: buckets.iter().map(|b| b.value).sum(),
        buckets,
    })
}

/// Hits of one day (days since the epoch, UTC).
#[derive(Clone, Copy, Debug, sqlx::FromRow)]
pub struct DayHits {
    pub day: i64,
    pub hits: i64,
}

/// A limit of the application's plan, as the developer portal lists it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PlanLimit {
    pub metric: String,
    pub period: String,
    pub value: i64,
}

/// What the developer portal shows of one of the account's applications.
#[derive(Clone, Debug)]
pub struct ApplicationView {
    pub application: OwnApplication,
    /// Live keys, oldest first.
    pub keys: Vec<ApplicationKey>,
    /// Days from `first_day` on that had hits, in order.
    pub days: Vec<DayHits>,
    /// By metric name, then period.
    pub limits: Vec<PlanLimit>,
}

/// Application `id` of `account_id` with its keys, hits per day since `first_day` and its plan's
/// limits; `None` for another account's application, like a missing one.
pub async fn developer_view(
    pool: &Pool,
    account_id: &str,
    id: &str,
    first_day: i64,
) -> DomainResult<Option<ApplicationView>> {
    let Some(application) = applications::own(pool, account_id, id).await? else {
        return Ok(None);
    };
    let keys = keys::live(pool, id).await?;
    let days: Vec<DayHits> = sqlx::query_as(
        "SELECT u.bucket_start / 86400 AS day, CAST(SUM(u.value) AS BIGINT) AS hits FROM usage_counters u JOIN metrics m ON m.id = u.metric_id \
         WHERE u.application_id = $1 AND m.name = 'hits' AND u.bucket_start >= $2 GROUP BY u.bucket_start / 86400 ORDER BY 1",
    )
    .bind(id)
    .bind(first_day * SECONDS_PER_DAY)
    .fetch_all(pool)
    .await?;
    let limits: Vec<PlanLimit> = sqlx::query_as(
        "SELECT m.name AS metric, l.period, l.limit_value AS value FROM plan_limits l JOIN metrics m ON m.id = l.metric_id WHERE l.plan_id = $1 ORDER BY m.name, l.period",
    )
    .bind(&application.plan_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(ApplicationView {
        application,
        keys,
        days,
        limits,
    }))
}
