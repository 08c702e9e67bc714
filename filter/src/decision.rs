//! The whole per-request decision, host-independent: credential -> application -> state ->
//! mapping rules -> prepaid credit -> limits. The proxy-wasm glue only gathers inputs and applies
//! the outcome.
//!
//! Order of refusals, first applicable wins: 401/400 credentials, 403 invalid key, 403/402
//! suspension, 400 malformed path, 404 no mapping rule (a request's cost needs its metrics), 402
//! `insufficient_credit`, 429 `limit_exceeded`. Credit before limits: a wallet that cannot pay
//! stays unable to until someone tops it up, while a limit resets by itself; answering 429 with a
//! `Retry-After` first would send the client to wait for a window that changes nothing, and then
//! still refuse it. The 402 for a suspension comes earlier for the same reason.

use tollgate_protocol::{ApplicationState, SuspensionReason};

use crate::catalog::{AppDef, Catalog, PlanDef};
use crate::config::{Config, FailMode};
use crate::counters::{
    add_usage, enforce, Enforcement, LimitState, OthersUsage, SharedStore, StoreError, Usage,
};
use crate::credentials::{CredentialError, Presented, Source};
use crate::mapping::normalize_path;

/// Why the filter answered a request itself. The code strings are a public contract: they appear
/// in problem bodies and stats names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    MalformedRequest,
    MissingCredentials,
    MalformedCredentials,
    InvalidCredentials,
    ApplicationSuspended,
    PaymentRequired,
    NoMappingRule,
    InsufficientCredit,
    LimitExceeded,
    Unavailable,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::MalformedRequest,
        Reason::MissingCredentials,
        Reason::MalformedCredentials,
        Reason::InvalidCredentials,
        Reason::ApplicationSuspended,
        Reason::PaymentRequired,
        Reason::NoMappingRule,
        Reason::InsufficientCredit,
        Reason::LimitExceeded,
        Reason::Unavailable,
    ];

    pub fn status(self) -> u16 {
        match self {
            Reason::MissingCredentials => 401,
            Reason::MalformedRequest | Reason::MalformedCredentials => 400,
            Reason::InvalidCredentials | Reason::ApplicationSuspended => 403,
            Reason::PaymentRequired | Reason::InsufficientCredit => 402,
            Reason::NoMappingRule => 404,
            Reason::LimitExceeded => 429,
            Reason::Unavailable => 503,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Reason::MalformedRequest => "malformed_request",
            Reason::MissingCredentials => "missing_credentials",
            Reason::MalformedCredentials => "malformed_credentials",
            Reason::InvalidCredentials => "invalid_credentials",
            Reason::ApplicationSuspended => "application_suspended",
            Reason::PaymentRequired => "payment_required",
            Reason::NoMappingRule => "no_mapping_rule",
            Reason::InsufficientCredit => "insufficient_credit",
            Reason::LimitExceeded => "limit_exceeded",
            Reason::Unavailable => "unavailable",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Reason::MalformedRequest => "The request cannot be parsed",
            Reason::MissingCredentials => "No API credentials were presented",
            Reason::MalformedCredentials => "The API credentials are malformed",
            Reason::InvalidCredentials => "The API credentials are not valid",
            Reason::ApplicationSuspended => "The application is suspended",
            Reason::PaymentRequired => "The application is suspended for non-payment",
            Reason::NoMappingRule => "No mapping rule matches this request",
            Reason::InsufficientCredit => "The prepaid credit does not cover this request",
            Reason::LimitExceeded => "Usage limit exceeded",
            Reason::Unavailable => "Usage cannot be counted right now",
        }
    }

    /// Whether this is an authentication failure (the `unauthorized` stat).
    pub fn is_auth_failure(self) -> bool {
        matches!(
            self,
            Reason::MissingCredentials | Reason::MalformedCredentials | Reason::InvalidCredentials
        )
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Rejection<'c> {
    pub reason: Reason,
    pub detail: String,
    pub quota: Option<LimitState<'c>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'c> {
    Forward {
        app: &'c AppDef,
        plan: &'c PlanDef,
        /// The most constrained limit touched, for quota headers.
        quota: Option<LimitState<'c>>,
        source: Source,
        /// Set when counting failed and fail mode `open` let the request through uncounted.
        uncounted: Option<StoreError>,
        /// What the request adds to each metric (after roll-up): metered for billing.
        usage: Usage,
    },
    Reject(Rejection<'c>),
}

fn reject<'c>(reason: Reason, detail: impl Into<String>) -> Decision<'c> {
    Decision::Reject(Rejection {
        reason,
        detail: detail.into(),
        quota: None,
    })
}

/// Usage of one request per the mapping rules; `None` when rules exist and none matches.
/// Without any rule every request counts one `hits`, if that metric exists.
pub fn usage_of(catalog: &Catalog, method: &str, path: &str) -> Option<Usage> {
    let mut usage = Usage::new();
    if catalog.rules.is_empty() {
        if let Some(hits) = catalog.metrics.iter().position(|m| m.name == "hits") {
            add_usage(catalog, &mut usage, hits, 1);
        }
        return Some(usage);
    }
    let mut matched = false;
    for rule in &catalog.rules {
        if rule.method.as_deref().is_some_and(|m| m != method) || !rule.pattern.matches(path) {
            continue;
        }
        matched = true;
        add_usage(catalog, &mut usage, rule.metric, rule.delta);
        if rule.last {
            break;
        }
    }
    matched.then_some(usage)
}

#[allow(clippy::too_many_arguments)] // each is one input of the decision; a struct would only rename them
pub fn decide<'c>(
    config: &Config,
    catalog: &'c Catalog,
    others: &dyn OthersUsage,
    presented: Result<Presented, CredentialError>,
    method: &str,
    path: &str,
    now: i64,
    store: &mut dyn SharedStore,
) -> Decision<'c> {
    let (app, source) = match presented {
        Err(CredentialError::Missing) => {
            return reject(Reason::MissingCredentials, "send an API key")
        }
        Err(CredentialError::Malformed(why)) => return reject(Reason::MalformedCredentials, why),
        Ok(Presented::Key { digest, source }) => match catalog.app_by_key_digest(&digest) {
            Some(app) => (app, source),
            None => return reject(Reason::InvalidCredentials, "unknown API key"),
        },
        Ok(Presented::Pair {
            app_id,
            key_digest,
            source,
        }) => match catalog.app_by_pair(&app_id, &key_digest) {
            Some(app) => (app, source),
            None => return reject(Reason::InvalidCredentials, "unknown app_id or app_key"),
        },
    };
    if app.state == ApplicationState::Suspended {
        return match app.state_reason {
            Some(SuspensionReason::NonPayment) => reject(
                Reason::PaymentRequired,
                "the application is suspended until its outstanding invoice is paid",
            ),
            _ => reject(Reason::ApplicationSuspended, "the application is suspended"),
        };
    }
    let normalized = match normalize_path(path) {
        Ok(p) => p,
        Err(why) => return reject(Reason::MalformedRequest, why),
    };
    let Some(usage) = usage_of(catalog, method, &normalized) else {
        // The path only: the query may carry a credential (`?api_key=`) or other secrets, and a
        // response body is no place to echo them.
        let path_only = normalized.split_once('?').map_or(&*normalized, |(p, _)| p);
        return reject(
            Reason::NoMappingRule,
            format!("no mapping rule matches {method} {path_only}"),
        );
    };
    let plan = catalog.plan_of(app);
    match enforce(store, catalog, app, plan, &usage, others, now) {
        Ok(Enforcement::Admitted { tightest }) => Decision::Forward {
            app,
            plan,
            quota: tightest,
            source,
            uncounted: None,
            usage,
        },
        Ok(Enforcement::InsufficientCredit { .. }) => reject(
            Reason::InsufficientCredit,
            "the prepaid credit of this application's wallet does not cover this request; top up the wallet to continue",
        ),
        Ok(Enforcement::Exceeded { violated }) => {
            let metric = &catalog.metrics[violated.limit.metric].name;
            Decision::Reject(Rejection {
                reason: Reason::LimitExceeded,
                detail: format!(
                    "the limit of {} {metric} per {} is reached",
                    violated.limit.value,
                    violated.limit.period.as_str()
                ),
                quota: Some(violated),
            })
        }
        Err(e) => match config.fail_mode {
            FailMode::Open => Decision::Forward {
                app,
                plan,
                quota: None,
                source,
                uncounted: Some(e),
                usage,
            },
            FailMode::Closed => reject(
                Reason::Unavailable,
                "usage counters are unavailable; retry shortly",
            ),
        },
    }
}
