//! `tollgate serve`: the process. Reads the settings, opens and migrates the database, re-seals
//! payment-gateway secrets, spawns the background tasks (purge, billing scheduler, webhook and
//! email senders),
//! listens and shuts down gracefully on Ctrl-C or SIGTERM. This is the composition root: the one
//! module outside `http/` that names the HTTP layer (to build its router and state); the CLI only
//! parses arguments and calls [`serve`].

use crate::settings::Settings;
use crate::store::{self, Pool};

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve() -> Result<(), String> {
    let settings = Settings::from_env()?;
    init_logging();
    let pool = store::connect(&settings.database_url).await?;
    let applied = store::migrate(&pool).await?;
    tracing::info!(applied, backend = ?store::backend_of(&settings.database_url)?, "database ready");
    // A run still marked running is left to staleness (`run::RUN_STALE_SECS`) on SQLite too:
    // another process may share the file and be running it, and marking it interrupted here
    // would let a second run start beside it.
    if let Some(k) = settings.master_key {
        crate::domain::payments::config::set_master_key(k);
        // Secrets sealed before they carried their place are re-sealed now, before anything opens
        // them: afterwards only values bound to their field are used (docs/payments.md).
        match crate::domain::payments::config::reseal_first_format(&pool, &k).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "gateway secrets re-sealed in the current format"),
            Err(e) => return Err(format!("cannot re-seal gateway secrets: {e}")),
        }
    }
    if crate::outbound::init_from_env() {
        tracing::warn!(
            "{}=true: outbound URLs may point at loopback hosts over plain http (test set-ups only)",
            crate::outbound::ALLOW_LOOPBACK_ENV
        );
    }
    let env_token = settings
        .admin_token
        .as_deref()
        .map(|t| crate::secrets::sha256_hex(t).into());
    let state = crate::state::AppState::new(pool.clone(), env_token)
        .with_master_key(settings.master_key)
        .with_limits(settings.limits.clone())
        .with_metrics_token(settings.metrics_token.as_deref());
    if settings.metrics_token.is_none() {
        tracing::warn!(
            "TOLLGATE_METRICS_TOKEN is not set: GET /metrics is refused (403); set it to let Prometheus scrape"
        );
    }
    spawn_background_tasks(&settings, &pool, &state.billing_runs)?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    tracing::info!(listen = %settings.listen, "tollgate control plane listening");
    let versions = std::sync::Arc::clone(&state.versions);
    axum::serve(
        listener,
        crate::http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        // Held snapshot requests answer now (304) instead of holding the shutdown up.
        versions.close();
    })
    .await
    .map_err(|e| format!("server error: {e}"))
}

/// Logs to stderr, filtered by `TOLLGATE_LOG` (default `info`), colored only on a terminal.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// The purge every interval, the daily billing run (unless turned off), the usage alert detector,
/// the webhook sender and
/// the email sender (when SMTP is configured); they run until the process ends.
fn spawn_background_tasks(
    settings: &Settings,
    pool: &Pool,
    billing_runs: &crate::domain::billing::run::RunLock,
) -> Result<(), String> {
    tokio::spawn(crate::domain::purge::run_purger(
        pool.clone(),
        crate::domain::purge::interval_from_env()?,
    ));
    if settings.billing_scheduler {
        tokio::spawn(crate::domain::scheduler::run_scheduler(
            pool.clone(),
            billing_runs.clone(),
        ));
    }
    tokio::spawn(crate::domain::metering::alerts::run_detector(pool.clone()));
    tokio::spawn(crate::domain::webhooks::deliver::run_sender(
        pool.clone(),
        crate::domain::webhooks::deliver::SenderSettings {
            master_key: settings.master_key,
            schedule: settings.webhook_retry,
            admin_email: settings.admin_email.clone(),
            delivery_timeout: crate::domain::webhooks::deliver::DELIVERY_TIMEOUT,
        },
    ));
    match &settings.smtp_url {
        Some(url) => {
            tokio::spawn(crate::domain::billing::outbox::run_sender(
                pool.clone(),
                crate::domain::billing::outbox::SmtpSettings {
                    url: url.clone(),
                    from: settings.mail_from.clone(),
                },
            ));
        }
        None => tracing::warn!("TOLLGATE_SMTP_URL is not set: billing email stays in the outbox"),
    }
    Ok(())
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM: in-flight requests finish, then the server stops.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
