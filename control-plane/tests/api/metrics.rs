//! `GET /metrics`: refused without the metrics token (and off without one configured), the
//! Prometheus text format, and requests labelled by route template, never by the raw path.
//!
//! The metrics are the process's (every test of this binary adds to them), so these tests look
//! for series that only they create, and never for exact totals (the pytest suite checks exact
//! totals against a `tollgate serve` of its own, through a real Prometheus).

use crate::support::{TestApp, ADMIN_TOKEN};

const METRICS_TOKEN: &str = "metrics-token-for-the-api-tests-0123456789";

#[tokio::test]
async fn metrics_need_the_metrics_token() {
    let app = TestApp::with_metrics_token(Some(METRICS_TOKEN)).await;
    app.client("", None)
        .get("/metrics")
        .await
        .error(401, "unauthorized");
    app.client("", Some("metrics-token-for-the-api-tests-012345678X"))
        .get("/metrics")
        .await
        .error(401, "unauthorized");
    // The admin token is not the metrics token.
    app.client("", Some(ADMIN_TOKEN))
        .get("/metrics")
        .await
        .error(401, "unauthorized");
    let ok = app.client("", Some(METRICS_TOKEN)).get("/metrics").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        ok.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = ok.text();
    for family in [
        "# TYPE tollgate_http_requests_total counter",
        "# TYPE tollgate_http_request_duration_seconds histogram",
        "# TYPE tollgate_usage_counter_updates_total counter",
        "# TYPE tollgate_outbox_pending gauge",
        "tollgate_outbox_pending{outbox=\"email\"} 0",
        "tollgate_metrics_database_up 1",
        "# TYPE tollgate_db_pool_in_use_connections gauge",
    ] {
        assert!(text.contains(family), "no {family:?} in:\n{text}");
    }
}

#[tokio::test]
async fn without_a_metrics_token_metrics_are_off() {
    let app = TestApp::new().await;
    for token in [None, Some(ADMIN_TOKEN)] {
        app.client("", token)
            .get("/metrics")
            .await
            .error(403, "insufficient_scope");
    }
}

#[tokio::test]
async fn requests_are_labelled_by_route_template_never_by_path() {
    let app = TestApp::with_metrics_token(Some(METRICS_TOKEN)).await;
    // Ids and paths no other test uses: if they show up, a raw path became a label.
    let id = "svc_metrics_label_probe_7f3a";
    app.admin()
        .get(&format!("/services/{id}"))
        .await
        .error(404, "resource_missing");
    app.client("", None)
        .get("/no/such/route/metrics_label_probe_c41d")
        .await
        .error(404, "route_not_found");
    app.client("", None)
        .request("BREW", "/healthz", None, &[])
        .await;
    let text = app
        .client("", Some(METRICS_TOKEN))
        .get("/metrics")
        .await
        .text();
    assert!(
        !text.contains("label_probe"),
        "a raw path is a label:\n{text}"
    );
    assert!(!text.contains("BREW"), "a raw method is a label:\n{text}");
    for series in [
        "tollgate_http_requests_total{route=\"/admin/api/v1/services/{id}\",method=\"GET\",status=\"404\"}",
        "tollgate_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}",
        "tollgate_http_requests_total{route=\"/healthz\",method=\"other\",status=\"400\"}",
    ] {
        assert!(text.contains(series), "no {series} in:\n{text}");
    }
}
