//! The usage export: metered usage per application, metric and hour, day or month (UTC calendar
//! buckets), from the hourly counters. Buckets with usage only, ordered by application, metric
//! and time. Days and months are sums of hours, aggregated while streaming: the counters are read
//! in (application, metric, hour) order, so a bucket's hours are adjacent and one pending bucket
//! is all that is carried from one batch to the next.

use serde::Deserialize;
use tollgate_protocol::Period;

use super::{non_empty, parse_time, Cell, Row, EXPORT_BATCH_ROWS};
use crate::domain::accounts::usage::MAX_USAGE_RANGE_SECS;
use crate::domain::{DomainError, DomainResult};
use crate::store::Pool;

/// `GET /admin/api/v1/exports/usage.csv` filters: `since` and `until` are required.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageExportParams {
    /// Required. `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC), moved back to the start of its
    /// bucket.
    pub since: Option<String>,
    /// Required, exclusive, same format; moved forward to the end of its bucket. At most two
    /// years after `since`.
    pub until: Option<String>,
    /// `hour`, `day` (default) or `month`.
    pub granularity: Option<String>,
    pub service_id: Option<String>,
    pub application_id: Option<String>,
    /// A metric's name (`hits`, a method's name).
    pub metric: Option<String>,
}

pub const COLUMNS: &[&str] = &[
    "application_id",
    "application_name",
    "account_id",
    "service_id",
    "metric_id",
    "metric",
    "granularity",
    "bucket_start",
    "bucket_end",
    "value",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Granularity {
    Hour,
    Day,
    Month,
}

impl Granularity {
    fn period(self) -> Period {
        match self {
            Granularity::Hour => Period::Hour,
            Granularity::Day => Period::Day,
            Granularity::Month => Period::Month,
        }
    }

    fn as_str(self) -> &'static str {
        self.period().as_str()
    }

    /// The bucket containing `t`: (start, end).
    fn bucket(self, t: i64) -> (i64, i64) {
        let w = tollgate_rules::periods::window(self.period(), t);
        // Hour, day and month windows always end.
        (w.start, w.end.unwrap_or(w.start))
    }
}

#[derive(sqlx::FromRow)]
struct CounterRow {
    application_id: String,
    metric_id: String,
    bucket_start: i64,
    value: i64,
    application_name: String,
    account_id: String,
    service_id: String,
    metric: String,
}

/// A bucket being summed.
struct Pending {
    row: CounterRow,
    start: i64,
    end: i64,
    value: i64,
}

pub struct UsageSource {
    granularity: Granularity,
    since: i64,
    until: i64,
    service_id: Option<String>,
    application_id: Option<String>,
    metric: Option<String>,
    /// (application, metric, hour) of the last counter read.
    cursor: (String, String, i64),
    pending: Option<Pending>,
    finished: bool,
}

fn required(param: &str, v: Option<String>) -> DomainResult<String> {
    non_empty(v).ok_or_else(|| {
        DomainError::malformed(
            Some(param.into()),
            "missing_parameter",
            format!("{param} is required (a UTC date like 2026-11-01)"),
        )
    })
}

impl UsageSource {
    pub fn new(p: UsageExportParams) -> DomainResult<UsageSource> {
        let granularity = match p.granularity.as_deref() {
            None | Some("") | Some("day") => Granularity::Day,
            Some("hour") => Granularity::Hour,
            Some("month") => Granularity::Month,
            Some(other) => {
                return Err(DomainError::malformed(
                    Some("granularity".into()),
                    "invalid_granularity",
                    format!("{other:?}: hour, day or month"),
                ))
            }
        };
        let since = parse_time("since", &required("since", p.since)?)?;
        let until = parse_time("until", &required("until", p.until)?)?;
        if until <= since || until - since > MAX_USAGE_RANGE_SECS {
            return Err(DomainError::malformed(
                Some("until".into()),
                "invalid_range",
                "since < until, at most two years apart",
            ));
        }
        // Whole buckets: the first one containing `since`, up to the end of the one containing
        // the last second before `until`.
        let since = granularity.bucket(since).0;
        let until = granularity.bucket(until - 1).1;
        Ok(UsageSource {
            granularity,
            since,
            until,
            service_id: non_empty(p.service_id),
            application_id: non_empty(p.application_id),
            metric: non_empty(p.metric),
            cursor: (String::new(), String::new(), i64::MIN),
            pending: None,
            finished: false,
        })
    }

    pub async fn next_batch(&mut self, pool: &Pool) -> DomainResult<Option<Vec<Row>>> {
        if self.finished {
            return Ok(None);
        }
        let counters = self.read(pool).await?;
        let last_batch = (counters.len() as i64) < EXPORT_BATCH_ROWS;
        if let Some(c) = counters.last() {
            self.cursor = (
                c.application_id.clone(),
                c.metric_id.clone(),
                c.bucket_start,
            );
        }
        let mut rows = Vec::new();
        for c in counters {
            let (start, end) = self.granularity.bucket(c.bucket_start);
            match &mut self.pending {
                Some(p)
                    if p.start == start
                        && p.row.application_id == c.application_id
                        && p.row.metric_id == c.metric_id =>
                {
                    p.value = p.value.saturating_add(c.value);
                }
                pending => {
                    if let Some(done) = pending.take() {
                        rows.push(self.cells(done));
                    }
                    self.pending = Some(Pending {
                        value: c.value,
                        row: c,
                        start,
                        end,
                    });
                }
            }
        }
        if last_batch {
            if let Some(done) = self.pending.take() {
                rows.push(self.cells(done));
            }
            self.finished = true;
        }
        Ok(Some(rows))
    }

    fn cells(&self, p: Pending) -> Row {
        vec![
            Cell::value(p.row.application_id),
            Cell::text(p.row.application_name),
            Cell::value(p.row.account_id),
            Cell::value(p.row.service_id),
            Cell::value(p.row.metric_id),
            Cell::value(p.row.metric),
            Cell::value(self.granularity.as_str()),
            Cell::time(p.start),
            Cell::time(p.end),
            Cell::value(p.value),
        ]
    }

    async fn read(&self, pool: &Pool) -> DomainResult<Vec<CounterRow>> {
        let (ca, cm, cb) = &self.cursor;
        // `application_id >= $1` first: a range on the primary key's leading column, so each
        // batch starts where the last ended instead of from the table's start.
        Ok(sqlx::query_as(
            "SELECT u.application_id, u.metric_id, u.bucket_start, u.value, a.name AS application_name, \
             a.account_id, m.service_id, m.name AS metric \
             FROM usage_counters u JOIN applications a ON a.id = u.application_id JOIN metrics m ON m.id = u.metric_id \
             WHERE u.application_id >= $1 AND (u.application_id > $1 OR u.metric_id > $2 OR (u.metric_id = $2 AND u.bucket_start > $3)) \
             AND u.bucket_start >= $4 AND u.bucket_start < $5 AND ($6 = '' OR u.application_id = $6) \
             AND ($7 = '' OR m.service_id = $7) AND ($8 = '' OR m.name = $8) \
             ORDER BY u.application_id, u.metric_id, u.bucket_start LIMIT $9",
        )
        .bind(ca)
        .bind(cm)
        .bind(cb)
        .bind(self.since)
        .bind(self.until)
        .bind(self.application_id.as_deref().unwrap_or_default())
        .bind(self.service_id.as_deref().unwrap_or_default())
        .bind(self.metric.as_deref().unwrap_or_default())
        .bind(EXPORT_BATCH_ROWS)
        .fetch_all(pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_required_bounded_and_widened_to_whole_buckets() {
        let p = |since: &str, until: &str, g: &str| UsageExportParams {
            since: Some(since.into()),
            until: Some(until.into()),
            granularity: Some(g.into()),
            ..Default::default()
        };
        let s =
            UsageSource::new(p("2026-11-15T10:00:00Z", "2026-11-20T00:00:01Z", "month")).unwrap();
        assert_eq!(super::super::format_time(s.since), "2026-11-01T00:00:00Z");
        assert_eq!(super::super::format_time(s.until), "2026-12-01T00:00:00Z");
        assert!(UsageSource::new(p("2026-11-01", "2029-11-01", "day")).is_err());
        assert!(UsageSource::new(p("2026-11-01", "2026-11-01", "day")).is_err());
        assert!(UsageSource::new(p("2026-11-01", "2026-11-02", "week")).is_err());
        assert!(UsageSource::new(UsageExportParams::default()).is_err());
    }
}
