//! The webhook sender against real local HTTP receivers (loopback TCP servers in this process):
//! fairness when endpoints never answer, and replays racing deliveries. A test binary of its own
//! because it opts in to loopback URLs (`TOLLGATE_ALLOW_LOOPBACK_URLS`), which is read once per
//! process and which the API tests must not have.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;

use support::{s, TestApp};
use tollgate_control_plane::domain::webhooks::deliver::{
    run_sender, SenderSettings, MAX_IN_FLIGHT_PER_ACCOUNT, MAX_IN_FLIGHT_PER_ADMIN_ENDPOINT,
};
use tollgate_control_plane::domain::webhooks::endpoints::Owner;
use tollgate_control_plane::domain::webhooks::outbox;
use tollgate_control_plane::domain::webhooks::signing::RetrySchedule;
use tollgate_control_plane::domain::DomainError;

/// How long a test waits for what must happen (a failure, not a measure: nothing is timed).
const PATIENCE: Duration = Duration::from_secs(120);

fn loopback_allowed() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var(tollgate_control_plane::outbound::ALLOW_LOOPBACK_ENV, "true");
        assert!(tollgate_control_plane::outbound::init_from_env());
    });
}

/// The sender of `app`, whose attempts wait for an answer far longer than any test runs: an
/// endpoint that never answers holds its connection until the test ends.
fn start_sender(app: &TestApp) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run_sender(
        app.state.pool.clone(),
        SenderSettings {
            master_key: app.state.master_key.as_deref().copied(),
            schedule: RetrySchedule::default(),
            admin_email: None,
            delivery_timeout: Duration::from_secs(3600),
        },
    ))
}

/// A receiver answering 204 to every POST, noting each `webhook-id` by the path it came to.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, String)>>>,
    count: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(answer_after: Duration) -> (Receiver, String) {
        let r = Receiver::default();
        let state = r.clone();
        let app = axum::Router::new().route(
            "/{name}",
            axum::routing::post(
                move |axum::extract::Path(name): axum::extract::Path<String>,
                      headers: HeaderMap| {
                    let state = state.clone();
                    async move {
                        tokio::time::sleep(answer_after).await;
                        let id = headers
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        state.got.lock().unwrap().push((name, id));
                        state.count.fetch_add(1, Ordering::SeqCst);
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, base)
    }

    fn received(&self, path: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }
}

/// A tarpit: accepts every connection and never answers (nor reads), holding the sockets.
async fn tarpit() -> (Arc<AtomicUsize>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (open, base)
}

async fn account(app: &TestApp, name: &str) -> (String, String) {
    let a = app
        .admin()
        .create(
            "/accounts",
            json!({"name": name, "email": format!("{name}@example.com")}),
        )
        .await;
    let id = s(&a, "id").to_string();
    let t = app
        .admin()
        .create(&format!("/accounts/{id}/tokens"), json!({}))
        .await;
    (id, s(&t, "token").to_string())
}

/// An endpoint at `url` of the account holding `token` (`None`: the admin's).
async fn endpoint(app: &TestApp, token: Option<&str>, url: &str) -> String {
    let body = json!({"url": url, "events": ["key.created"]});
    let created = match token {
        Some(t) => {
            app.client("/api/v1", Some(t))
                .create("/webhook_endpoints", body)
                .await
        }
        None => app.admin().create("/webhook_endpoints", body).await,
    };
    s(&created, "id").to_string()
}

/// `n` pending `webhook.test` deliveries to endpoint `id`, due now, written at once.
async fn backlog(app: &TestApp, id: &str, n: usize) {
    let t = tollgate_control_plane::store::now_ms();
    for (table, row) in [
        (
            "webhook_messages (id, event_type, account_id, payload, created_at)",
            format!("'msg_{id}_' || n, 'webhook.test', NULL, '{{}}', {}", t / 1000),
        ),
        (
            "webhook_deliveries (id, event_id, endpoint_id, state, attempts, next_attempt_at, window_started_at, created_at)",
            format!("'whd_{id}_' || n, 'msg_{id}_' || n, '{id}', 'pending', 0, {t}, {t}, {}", t / 1000),
        ),
    ] {
        app.sql(&format!(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n}) INSERT INTO {table} SELECT {row} FROM s"
        ))
        .await;
    }
}

/// `n` test events to endpoint `id` (the admin's test sends are not rate-limited).
async fn test_events(app: &TestApp, id: &str, n: usize) {
    for _ in 0..n {
        app.admin()
            .create(&format!("/webhook_endpoints/{id}/test"), json!({}))
            .await;
    }
}

/// Endpoints that accept the connection and never answer, with deep backlogs, do not delay the
/// other endpoints' deliveries: an admin tarpit endpoint holds at most
/// `MAX_IN_FLIGHT_PER_ADMIN_ENDPOINT` attempts, and an account with ten tarpit endpoints (more than
/// the process's slots at that many per endpoint) at most `MAX_IN_FLIGHT_PER_ACCOUNT`. Every
/// delivery to the answering endpoints arrives while all the tarpit's attempts are still under
/// way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_never_answer_do_not_delay_the_others() {
    loopback_allowed();
    let app = TestApp::with_master_key().await;
    let (stuck, pit) = tarpit().await;
    let (receiver, good) = Receiver::start(Duration::ZERO).await;
    let (_, abuser) = account(&app, "abuser").await;
    let (_, honest) = account(&app, "honest").await;
    let admin_pit = endpoint(&app, None, &format!("{pit}/admin")).await;
    test_events(&app, &admin_pit, 20).await;
    for i in 0..10 {
        let id = endpoint(&app, Some(&abuser), &format!("{pit}/abuser{i}")).await;
        test_events(&app, &id, 5).await;
    }
    // Queued behind all of those (later, so later in every pass's order of due deliveries).
    let admin_good = endpoint(&app, None, &format!("{good}/admin")).await;
    let honest_good = endpoint(&app, Some(&honest), &format!("{good}/honest")).await;
    test_events(&app, &admin_good, 10).await;
    test_events(&app, &honest_good, 10).await;
    let sender = start_sender(&app);
    let delivered_good = format!(
        "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_deliveries WHERE state = 'delivered' AND endpoint_id IN ('{admin_good}', '{honest_good}')"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.column(&delivered_good).await != ["20"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the answering endpoints never got their 20 deliveries: {} received, the tarpit holds {}",
            receiver.count.load(Ordering::SeqCst),
            stuck.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (receiver.received("admin"), receiver.received("honest")),
        (10, 10)
    );
    // The tarpit holds every attempt it got (none ended, none was recorded), within the caps.
    let in_flight = |endpoints: &str| {
        format!(
            "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.state = 'delivering' AND {endpoints}"
        )
    };
    let abusers: usize = app.column(&in_flight("e.account_id IS NOT NULL")).await[0]
        .parse()
        .unwrap();
    let admins: usize = app
        .column(&in_flight(&format!("e.id = '{admin_pit}'")))
        .await[0]
        .parse()
        .unwrap();
    assert!(
        abusers <= MAX_IN_FLIGHT_PER_ACCOUNT as usize,
        "{abusers} attempts of one account under way"
    );
    assert!(
        admins <= MAX_IN_FLIGHT_PER_ADMIN_ENDPOINT as usize,
        "{admins} attempts of one endpoint under way"
    );
    let held = stuck.load(Ordering::SeqCst);
    assert!(
        held <= abusers + admins,
        "the tarpit holds {held} connections"
    );
    let recorded = app
        .column(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id NOT IN ('{admin_good}', '{honest_good}')"
        ))
        .await;
    assert_eq!(recorded, ["0"]);
    sender.abort();
}

/// Answering endpoints with deep backlogs that take every slot of the sender still share them:
/// an attempt that ends gives its slot back to the next pass instead of taking its endpoint's
/// next delivery when no slot is free, and the pass serves every endpoint's first due delivery
/// first. A delivery to a third endpoint arrives before the backlogs are through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_endpoints_taking_every_slot_still_share_them() {
    loopback_allowed();
    let app = TestApp::with_master_key().await;
    // Two backlogs that keep all 32 slots busy for seconds: waiting for them is unmistakable.
    const BACKLOG: usize = 2_000;
    let (receiver, slow) = Receiver::start(Duration::from_millis(20)).await;
    let busy = [
        endpoint(&app, None, &format!("{slow}/busy1")).await,
        endpoint(&app, None, &format!("{slow}/busy2")).await,
    ];
    for id in &busy {
        backlog(&app, id, BACKLOG).await;
    }
    let sender = start_sender(&app);
    // The backlogs flowing through every slot (16 each), then one delivery for a newcomer.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while receiver.count.load(Ordering::SeqCst) < 32 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backlogs never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let newcomer = endpoint(&app, None, &format!("{slow}/newcomer")).await;
    test_events(&app, &newcomer, 1).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while receiver.received("newcomer") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the newcomer never got its delivery"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let through = receiver.received("busy1") + receiver.received("busy2");
    // Waiting for the backlogs would let all but the last few of them through first.
    assert!(
        through < BACKLOG,
        "the newcomer waited for the backlogs ({through} delivered first)"
    );
    sender.abort();
}

/// Once delivery `id` is delivered with every POST the receiver got (`got`) recorded as one
/// attempt: how many it got.
async fn settled(app: &TestApp, id: &str, got: &AtomicUsize) -> usize {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (state, attempts): (String, i64) = sqlx::query_as(
            "SELECT d.state, (SELECT COUNT(*) FROM webhook_attempts a WHERE a.delivery_id = d.id) FROM webhook_deliveries d WHERE d.id = $1",
        )
        .bind(id)
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
        let received = got.load(Ordering::SeqCst);
        if state == "delivered" && attempts as usize == received {
            return received;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never settled: {state}, {attempts} attempts recorded, {received} received"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replays racing the sender: each is accepted or refused while an attempt is under way (never
/// an error), none is lost (after the last accepted one, the receiver gets the event again),
/// every attempt made is recorded once, and the delivery ends delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_are_each_sent_or_refused_and_every_attempt_is_recorded_once() {
    loopback_allowed();
    let app = TestApp::with_master_key().await;
    // Answering takes a while, so replays arrive while attempts are under way.
    let (receiver, good) = Receiver::start(Duration::from_millis(30)).await;
    let ep = endpoint(&app, None, &format!("{good}/r")).await;
    test_events(&app, &ep, 1).await;
    let delivery = app
        .column("SELECT id FROM webhook_deliveries")
        .await
        .remove(0);
    let sender = start_sender(&app);
    let mut outcomes: HashMap<&'static str, usize> = HashMap::new();
    let mut last_accepted_after = 0;
    for round in 0..4 {
        // Each round starts from a delivered delivery: the first replay is accepted, the others
        // race it and the sender's claim of it.
        settled(&app, &delivery, &receiver.count).await;
        let mut replays = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (state, id, got) = (app.state.clone(), delivery.clone(), receiver.count.clone());
            replays.spawn(async move {
                let before = got.load(Ordering::SeqCst);
                let r = outbox::replay(
                    &state.limits,
                    &state.pool,
                    &tollgate_control_plane::domain::audit::Actor::token("env", None),
                    &Owner::Admin,
                    &id,
                )
                .await;
                (before, r)
            });
        }
        while let Some(joined) = replays.join_next().await {
            let (before, r) = joined.unwrap();
            match r {
                Ok(_) => {
                    *outcomes.entry("accepted").or_default() += 1;
                    last_accepted_after = last_accepted_after.max(before);
                }
                Err(DomainError::Conflict {
                    code: "delivery_in_progress",
                    ..
                }) => {
                    *outcomes.entry("in_progress").or_default() += 1;
                }
                Err(e) => panic!("round {round}: a replay failed: {e:?}"),
            }
        }
    }
    assert!(
        outcomes.get("accepted").copied().unwrap_or(0) >= 4,
        "{outcomes:?}"
    );
    // Settled: delivered, every POST the receiver got recorded as one attempt, and one received
    // after the last accepted replay began.
    let got = settled(&app, &delivery, &receiver.count).await;
    assert!(
        got > last_accepted_after,
        "{got} received, the last accepted replay after {last_accepted_after}"
    );
    sender.abort();
}
