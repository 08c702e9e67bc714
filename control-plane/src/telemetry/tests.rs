use std::time::Duration;

use super::readings::{OutboxDepth, PoolUse, Readings};
use super::*;

fn exposition(m: &Metrics, r: &Readings) -> String {
    m.encode(r).unwrap()
}

/// Every `name{labels} value` line, without comments.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn closed_label_sets_exist_at_zero_from_the_start() {
    let text = exposition(&Metrics::new(), &Readings::default());
    for line in [
        "tollgate_usage_reports_total{outcome=\"duplicate\"} 0",
        "tollgate_usage_counter_updates_total{outcome=\"accepted\"} 0",
        "tollgate_charges_total{provider=\"braintree\",outcome=\"action_required\"} 0",
        "tollgate_billing_runs_total{result=\"failed\"} 0",
        "tollgate_invoices_issued_total{by=\"manual\"} 0",
        "tollgate_snapshot_requests_total{answer=\"not_modified\",held=\"true\"} 0",
        "tollgate_outbox_deliveries_total{outbox=\"email\",result=\"given_up\"} 0",
        "tollgate_metrics_database_up 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    // Nothing read, nothing reported: no stale outbox or pool figures.
    assert!(!text.contains("tollgate_outbox_pending"), "{text}");
    assert!(!text.contains("tollgate_db_pool"), "{text}");
    // Prometheus conventions: counters end in `_total`, every name has the prefix.
    for s in samples(&text) {
        assert!(s.starts_with("tollgate_"), "{s}");
    }
    for l in text.lines().filter(|l| l.ends_with(" counter")) {
        assert!(l.ends_with("_total counter"), "{l}");
    }
}

#[test]
fn events_add_exactly_what_happened() {
    let m = Metrics::new();
    m.usage_report(ReportOutcome::Recorded, 7, 2);
    m.usage_report(ReportOutcome::Recorded, 3, 0);
    m.usage_report(ReportOutcome::Duplicate, 0, 0);
    m.invoices_issued(IssuedBy::Run, 5);
    m.charge(
        Provider::Stripe,
        ChargeOutcome::Declined,
        Duration::from_millis(300),
    );
    m.billing_run(RunResult::Succeeded, Duration::from_secs(2));
    let text = exposition(&m, &Readings::default());
    for line in [
        "tollgate_usage_reports_total{outcome=\"recorded\"} 2",
        "tollgate_usage_reports_total{outcome=\"duplicate\"} 1",
        "tollgate_usage_counter_updates_total{outcome=\"accepted\"} 10",
        "tollgate_usage_counter_updates_total{outcome=\"ignored\"} 2",
        "tollgate_invoices_issued_total{by=\"run\"} 5",
        "tollgate_charges_total{provider=\"stripe\",outcome=\"declined\"} 1",
        "tollgate_charge_duration_seconds_bucket{provider=\"stripe\",le=\"0.25\"} 0",
        "tollgate_charge_duration_seconds_bucket{provider=\"stripe\",le=\"0.5\"} 1",
        "tollgate_billing_run_duration_seconds_bucket{result=\"succeeded\",le=\"1\"} 0",
        "tollgate_billing_run_duration_seconds_bucket{result=\"succeeded\",le=\"5\"} 1",
        "tollgate_billing_run_duration_seconds_count{result=\"succeeded\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    // An outbox without parked messages has no parked series (rather than a 0 that means nothing).
    assert!(
        !text.contains("tollgate_outbox_parked{outbox=\"email\"}"),
        "{text}"
    );
}

#[test]
fn a_held_request_is_counted_while_it_is_held() {
    let m = Metrics::new();
    let held = |m: &Metrics| {
        exposition(m, &Readings::default())
            .lines()
            .find_map(|l| {
                l.strip_prefix("tollgate_snapshot_requests_held ")
                    .map(str::to_string)
            })
            .unwrap()
    };
    let a = m.snapshot_held();
    let b = m.snapshot_held();
    assert_eq!(held(&m), "2");
    drop(a);
    assert_eq!(held(&m), "1");
    drop(b);
    assert_eq!(held(&m), "0");
}

#[test]
fn readings_are_reported_as_read() {
    let r = Readings {
        outboxes: vec![
            OutboxDepth {
                outbox: Outbox::Email,
                pending: 3,
                oldest_pending_age_secs: 42,
                parked: None,
            },
            OutboxDepth {
                outbox: Outbox::Webhook,
                pending: 1,
                oldest_pending_age_secs: 0,
                parked: Some(7),
            },
        ],
        pool: Some(PoolUse {
            max: 8,
            open: 5,
            idle: 2,
        }),
        database_up: true,
    };
    let text = exposition(&Metrics::new(), &r);
    for line in [
        "tollgate_outbox_pending{outbox=\"email\"} 3",
        "tollgate_outbox_oldest_pending_age_seconds{outbox=\"email\"} 42",
        "tollgate_outbox_parked{outbox=\"webhook\"} 7",
        "tollgate_db_pool_max_connections 8",
        "tollgate_db_pool_connections 5",
        "tollgate_db_pool_idle_connections 2",
        "tollgate_db_pool_in_use_connections 3",
        "tollgate_metrics_database_up 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn every_outbox_is_read() {
    for o in Outbox::ALL {
        assert!(
            readings::OUTBOXES.iter().any(|t| t.outbox == *o),
            "{o:?} has no table in readings::OUTBOXES"
        );
    }
}

#[tokio::test]
async fn the_outbox_read_counts_pending_messages_and_their_age() {
    let pool = crate::store::connect_in_memory().await.unwrap();
    crate::store::migrate(&pool).await.unwrap();
    let t = crate::store::now();
    for (id, state, created) in [
        ("e1", "pending", t - 100),
        ("e2", "sending", t - 50),
        ("e3", "sent", t - 1000),
        ("e4", "failed", t - 2000),
    ] {
        sqlx::query("INSERT INTO email_outbox (id, dedupe_key, kind, recipient, subject, body, state, attempts, next_attempt_at, created_at) VALUES ($1, $1, 'invoice_issued', 'a@example.com', 's', 'b', $2, 0, $3, $3)")
            .bind(id)
            .bind(state)
            .bind(created)
            .execute(&pool)
            .await
            .unwrap();
    }
    let r = Readings::read(&pool).await;
    assert!(r.database_up);
    let email = r.outboxes[0];
    assert_eq!(email.outbox, Outbox::Email);
    assert_eq!(email.pending, 2);
    assert!(
        (100..110).contains(&email.oldest_pending_age_secs),
        "{email:?}"
    );
    assert_eq!(email.parked, None);
}
