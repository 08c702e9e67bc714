//! What every request handler of the process shares (the JSON APIs in `http/` and the portals in
//! `portal/` alike): the database pool, the admin token from the environment, the snapshot
//! cache, the billing-run lock, the master key, the abuse limits and the metrics token.

use std::sync::Arc;

use crate::domain::gateway::encoded::SnapshotCache;
use crate::domain::gateway::watch::VersionWatch;
use crate::store::Pool;

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    /// SHA-256 of `TOLLGATE_ADMIN_TOKEN`, if set.
    pub env_token_sha256: Option<Arc<str>>,
    pub snapshots: Arc<SnapshotCache>,
    /// The snapshot version as held snapshot requests (long polls) wait on it.
    pub versions: Arc<VersionWatch>,
    /// Held while this process runs billing.
    pub billing_runs: crate::domain::billing::run::RunLock,
    /// Seals payment-gateway secrets (`TOLLGATE_MASTER_KEY`); `None`: secrets are refused.
    pub master_key: Option<Arc<[u8; 32]>>,
    /// Sign-in, sign-up, rotation and Argon2id limits (in this process).
    pub limits: Arc<crate::rate_limit::Limiter>,
    /// SHA-256 of `TOLLGATE_METRICS_TOKEN`, if set; `None`: `/metrics` is refused.
    pub metrics_token_sha256: Option<Arc<str>>,
}

impl AppState {
    pub fn new(pool: Pool, env_token_sha256: Option<Arc<str>>) -> AppState {
        AppState {
            pool,
            env_token_sha256,
            snapshots: Arc::default(),
            versions: Arc::default(),
            billing_runs: Arc::default(),
            master_key: None,
            limits: crate::rate_limit::Limiter::new(Default::default()),
            metrics_token_sha256: None,
        }
    }

    pub fn with_limits(mut self, settings: crate::rate_limit::LimitSettings) -> AppState {
        self.limits = crate::rate_limit::Limiter::new(settings);
        self
    }

    pub fn with_metrics_token(mut self, token: Option<&str>) -> AppState {
        self.metrics_token_sha256 = token.map(|t| crate::secrets::sha256_hex(t).into());
        self
    }

    pub fn with_master_key(mut self, key: Option<[u8; 32]>) -> AppState {
        self.master_key = key.map(Arc::new);
        self
    }
}
