//! The `tollgate` command line: `serve`, `migrate`, `token create` work on the database directly;
//! everything else is a client of a running server's admin API (`--url`, `--token`), printing a
//! table by default or the API's JSON with `--json`.

mod client;
mod table;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::domain::access::tokens::{self as admin_tokens, Scope};
use crate::settings::Settings;
use crate::store;
use client::Client;

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate control plane: admin API server and CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Admin API base URL.
    #[arg(
        long,
        env = "TOLLGATE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Admin token (Bearer).
    #[arg(long, env = "TOLLGATE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (TOLLGATE_LISTEN, TOLLGATE_DATABASE_URL, TOLLGATE_ADMIN_TOKEN); migrates first.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Delete expired sessions, old idempotency records and expired rotated keys once, and exit
    /// (`tollgate serve` does the same every hour).
    Purge,
    /// Write the catalog, accounts, applications (key digests, app ids, app key digests) and
    /// billing settings as one JSON document (docs/export-import.md); secrets and history are not
    /// carried. Reads the database directly (TOLLGATE_DATABASE_URL).
    Export {
        /// Write here (replaced whole once complete) instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Import an export into this (empty) installation: the whole file is checked first, then
    /// written in one transaction, all or nothing. A non-empty installation is refused.
    /// `tollgate import 3scale ...` reads a 3scale tenant instead (docs/migrate-from-3scale.md).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Import {
        #[command(subcommand)]
        from: Option<ImportFrom>,
        /// The export to import (a file named `3scale`: write it `./3scale`).
        #[arg(required = true)]
        file: Option<std::path::PathBuf>,
        /// Only check the file (the same checks, no database touched) and say what it holds.
        #[arg(long)]
        check: bool,
    },
    /// Admin tokens, created directly in the database (bootstrap).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Services.
    Services {
        #[command(subcommand)]
        command: ServiceCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Metrics and methods of a service.
    Metrics {
        #[command(subcommand)]
        command: MetricCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Plans.
    Plans {
        #[command(subcommand)]
        command: PlanCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Accounts (developers).
    Accounts {
        #[command(subcommand)]
        command: AccountCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Applications.
    Applications {
        #[command(subcommand)]
        command: ApplicationCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Gateway tokens (what a gateway filter presents to the control plane).
    GatewayTokens {
        #[command(subcommand)]
        command: GatewayTokenCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Application keys.
    Keys {
        #[command(subcommand)]
        command: KeyCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// App keys (3scale's model: presented with the application's app_id).
    AppKeys {
        #[command(subcommand)]
        command: AppKeyCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Billing settings and billing runs.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Invoices and credit notes.
    Invoices {
        #[command(subcommand)]
        command: InvoiceCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Outbound webhook endpoints, their deliveries and replay (docs/webhooks.md).
    Webhooks {
        #[command(subcommand)]
        command: WebhookCommand,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
enum ImportFrom {
    /// Read a 3scale tenant through its Account Management API (services, metrics and methods,
    /// mapping rules, application plans with limits and pricing rules, accounts, applications
    /// and their keys) and make the same here; run again, it changes only what changed in 3scale.
    /// Writes the database directly (TOLLGATE_DATABASE_URL), in one transaction.
    #[command(name = "3scale")]
    ThreeScale {
        /// The tenant's admin portal, e.g. https://acme-admin.3scale.net (https; a loopback
        /// http URL only with TOLLGATE_ALLOW_LOOPBACK_URLS=true).
        #[arg(long)]
        admin_url: String,
        /// A 3scale access token with the Account Management API scope (read is enough).
        #[arg(long, env = "TOLLGATE_3SCALE_ACCESS_TOKEN", hide_env_values = true)]
        access_token: String,
        /// Print what would change and what cannot be carried; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Requests to 3scale in flight at once (1-16).
        #[arg(long, default_value_t = crate::domain::threescale::source::DEFAULT_CONCURRENCY)]
        concurrency: usize,
        /// Carry keys shorter than 16 characters (by digest; they stay guessable).
        #[arg(long)]
        accept_short_keys: bool,
    },
}

#[derive(Subcommand, Debug)]
enum WebhookCommand {
    /// Create an endpoint receiving every account's events of the given types; prints its
    /// signing secret once.
    Create {
        /// Where to send events: https URL of a public host (`--url` is the admin API's).
        #[arg(long)]
        endpoint_url: String,
        /// An event type (`invoice.paid`); repeat for several.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    List,
    Show {
        id: String,
    },
    /// Change the URL or the event types (absent options stay).
    Update {
        id: String,
        #[arg(long)]
        endpoint_url: Option<String>,
        #[arg(long = "event")]
        events: Vec<String>,
    },
    /// Stop deliveries to an endpoint (pending ones wait).
    Disable {
        id: String,
    },
    /// Resume deliveries to an endpoint.
    Enable {
        id: String,
    },
    Delete {
        id: String,
    },
    /// Send a `webhook.test` event to the endpoint.
    Test {
        id: String,
    },
    /// Give the endpoint a new signing secret (printed once); the old one also signs for the
    /// grace period.
    RotateSecret {
        id: String,
        /// Seconds the old secret keeps signing (default one day, at most seven days).
        #[arg(long)]
        grace_seconds: Option<i64>,
    },
    /// The endpoint's delivery log.
    Deliveries {
        id: String,
    },
    /// Send a delivery again (same webhook-id).
    Replay {
        delivery: String,
    },
}

/// The columns `tollgate webhooks` shows of an endpoint and of a delivery.
const ENDPOINT_FIELDS: &[&str] = &[
    "id",
    "url",
    "events",
    "enabled",
    "disabled_reason",
    "consecutive_failures",
    "account_id",
];
const DELIVERY_FIELDS: &[&str] = &[
    "id",
    "event_id",
    "event_type",
    "state",
    "attempts",
    "last_status_code",
    "latency_ms",
    "next_attempt_at_ms",
    "delivered_at",
];

/// Longest `tollgate billing run` waits for the run to finish before giving up (it keeps running).
pub const RUN_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(3600);
/// How often the run's progress is polled.
pub const RUN_POLL: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Subcommand, Debug)]
enum BillingCommand {
    /// Run billing for a date (default: today, UTC) and wait until it finishes.
    Run {
        /// YYYY-MM-DD
        #[arg(long)]
        date: Option<String>,
        /// Start the run and return at once.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show the billing settings.
    Settings,
    /// Change billing settings: a JSON object with any subset of the fields.
    Configure { json: String },
}

#[derive(Subcommand, Debug)]
enum InvoiceCommand {
    List {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        state: Option<String>,
        /// YYYY-MM
        #[arg(long)]
        period: Option<String>,
    },
    Show {
        id: String,
    },
    /// Save the invoice's PDF.
    Pdf {
        id: String,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// A state action: finalize, issue, pay or cancel.
    Action {
        #[arg(value_parser = ["finalize", "issue", "pay", "cancel"])]
        action: String,
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create an admin token in the database; prints it once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "write", value_parser = ["read", "write"])]
        scope: String,
        /// Days until the token expires (1 to 3650); without it, it lasts until revoked.
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
}

#[derive(Subcommand, Debug)]
enum GatewayTokenCommand {
    /// Create a gateway token scoped to services; prints it once.
    Create {
        #[arg(long)]
        name: String,
        /// A service the token may serve (snapshot, usage, global usage); repeat for several.
        #[arg(long = "service", required = true)]
        services: Vec<String>,
    },
    /// Replace the services a gateway token may serve.
    SetServices {
        id: String,
        #[arg(long = "service", required = true)]
        services: Vec<String>,
    },
    List,
    Revoke {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum ServiceCommand {
    Create {
        #[arg(long)]
        name: String,
    },
    List,
    Delete {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum MetricCommand {
    Create {
        #[arg(long)]
        service: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "hit")]
        unit: String,
        /// Make it a method of this metric (usually `hits`).
        #[arg(long)]
        parent: Option<String>,
    },
    List {
        #[arg(long)]
        service: String,
    },
}

#[derive(Subcommand, Debug)]
enum PlanCommand {
    Create {
        #[arg(long)]
        service: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "0")]
        setup_fee: String,
        #[arg(long, default_value = "0")]
        fixed_fee: String,
        #[arg(long, default_value_t = 0)]
        trial_days: i64,
        /// Publish the plan (default hidden).
        #[arg(long)]
        published: bool,
        /// A limit `METRIC:PERIOD:VALUE`, e.g. `hits:minute:100`; repeatable.
        #[arg(long = "limit")]
        limits: Vec<String>,
        /// A graduated price tier `METRIC:FROM:TO:UNIT_PRICE` (TO may be empty), e.g. `hits:1::0.001`.
        #[arg(long = "price")]
        prices: Vec<String>,
    },
    List {
        #[arg(long)]
        service: Option<String>,
    },
    Get {
        id: String,
    },
    Delete {
        id: String,
    },
    /// Show the plan's usage alert thresholds, or change them.
    AlertThresholds {
        id: String,
        #[command(flatten)]
        change: ThresholdChange,
    },
}

/// How `alert-thresholds` changes a threshold set; none of them: it is only shown.
#[derive(Args, Debug)]
#[group(multiple = false)]
struct ThresholdChange {
    /// New thresholds, percent of each limit: `--set 50,80,100` (1 to 100, at most 10).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    set: Option<Vec<i64>>,
    /// No usage alerts at all.
    #[arg(long)]
    off: bool,
    /// Drop the own thresholds: a plan's defaults (50, 80, 90, 100), an application's plan's apply.
    #[arg(long)]
    reset: bool,
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        vat_rate: Option<String>,
    },
    List,
    Delete {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum ApplicationCommand {
    /// Create an application; prints its first key once.
    Create {
        #[arg(long)]
        account: String,
        #[arg(long)]
        plan: String,
        #[arg(long)]
        name: String,
        /// 3scale's app_id (unique across the installation).
        #[arg(long)]
        app_id: Option<String>,
    },
    /// Change an application's name, plan or app_id.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        plan: Option<String>,
        #[arg(long)]
        app_id: Option<String>,
    },
    List {
        #[arg(long)]
        account: Option<String>,
    },
    Suspend {
        id: String,
    },
    Resume {
        id: String,
    },
    Delete {
        id: String,
    },
    /// Show the thresholds the application alerts on (its own, or its plan's), or override them.
    AlertThresholds {
        id: String,
        #[command(flatten)]
        change: ThresholdChange,
    },
}

#[derive(Subcommand, Debug)]
enum AppKeyCommand {
    /// Add an app key: its value read from stdin (one line), or its SHA-256.
    Add {
        application: String,
        #[arg(
            long,
            conflicts_with = "value_sha256",
            required_unless_present = "value_sha256"
        )]
        value_stdin: bool,
        #[arg(long)]
        value_sha256: Option<String>,
    },
    /// List app keys (ids and digest prefixes; values are never shown).
    List {
        application: String,
    },
    Delete {
        application: String,
        key: String,
    },
}

/// One line of standard input without its line ending (a key piped in).
fn read_secret_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Add a key: generated (printed once), or an existing one read from stdin (`--key-stdin`,
    /// so it stays out of the shell history and process list) or given by its SHA-256.
    Create {
        application: String,
        /// Read an existing key (one line) from standard input.
        #[arg(long, conflicts_with = "key_sha256")]
        key_stdin: bool,
        /// An existing key's SHA-256 (64 hex characters).
        #[arg(long)]
        key_sha256: Option<String>,
    },
    List {
        application: String,
    },
    Revoke {
        application: String,
        key: String,
    },
    /// Replace a key; the old one keeps working for the grace period.
    Rotate {
        application: String,
        key: String,
        #[arg(long)]
        grace_seconds: Option<i64>,
    },
}

pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve => crate::server::serve().await,
        Command::Purge => {
            let settings = Settings::from_env()?;
            let pool = store::connect(&settings.database_url).await?;
            store::migrate(&pool).await?;
            let p = crate::domain::purge::purge_once(&pool)
                .await
                .map_err(|e| format!("purge failed: {}", detail(e)))?;
            println!(
                "purged {} portal session(s), {} admin session(s), {} idempotency record(s), {} expired key(s), {} finished webhook delivery(ies)",
                p.portal_sessions, p.admin_sessions, p.idempotency_keys, p.application_keys, p.webhook_deliveries
            );
            Ok(())
        }
        Command::Migrate => {
            let settings = Settings::from_env()?;
            let pool = store::connect(&settings.database_url).await?;
            let n = store::migrate(&pool).await?;
            println!("applied {n} migration(s)");
            Ok(())
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    name,
                    scope,
                    expires_in_days,
                },
        } => {
            let settings = Settings::from_env()?;
            let pool = store::connect(&settings.database_url).await?;
            store::migrate(&pool).await?;
            let name =
                crate::domain::catalog::check_name("name", &name).map_err(|e| format!("{e:?}"))?;
            let scope = Scope::parse(&scope)
                .ok_or_else(|| format!("--scope must be read or write, not {scope:?}"))?;
            let expires_at =
                admin_tokens::expiry(expires_in_days).map_err(|e| e.public_message())?;
            let created = admin_tokens::insert(
                &pool,
                &crate::domain::audit::Actor::cli(),
                &name,
                scope,
                expires_at,
            )
            .await
            .map_err(|e| e.public_message())?;
            eprintln!(
                "admin token {} ({}) created; it is shown only now:",
                created.admin_token.id,
                scope.as_str()
            );
            println!("{}", created.token);
            Ok(())
        }
        Command::Export { out } => export(out).await,
        Command::Import {
            from:
                Some(ImportFrom::ThreeScale {
                    admin_url,
                    access_token,
                    dry_run,
                    concurrency,
                    accept_short_keys,
                }),
            ..
        } => {
            let request = crate::domain::threescale::Request {
                admin_url: &admin_url,
                access_token: &access_token,
                dry_run,
                concurrency,
                options: crate::domain::threescale::Options { accept_short_keys },
            };
            import_3scale(&request).await
        }
        Command::Import {
            file: Some(file),
            check,
            ..
        } => import(&file, check).await,
        Command::Import { .. } => Err("tollgate import FILE, or tollgate import 3scale ...".into()),
        Command::Billing { command, remote } => billing(command, &remote).await,
        Command::Invoices { command, remote } => invoices(command, &remote).await,
        Command::Services { command, remote } => {
            let c = Client::new(&remote)?;
            match command {
                ServiceCommand::Create { name } => c.show(
                    c.post("/services", json!({"name": name})).await?,
                    &["id", "name"],
                ),
                ServiceCommand::List => {
                    c.show_list(c.get_all("/services").await?, &["id", "name", "created_at"])
                }
                ServiceCommand::Delete { id } => c.show(
                    c.delete(&format!("/services/{id}")).await?,
                    &["id", "deleted"],
                ),
            }
        }
        Command::Metrics { command, remote } => {
            let c = Client::new(&remote)?;
            match command {
                MetricCommand::Create {
                    service,
                    name,
                    unit,
                    parent,
                } => c.show(
                    c.post(
                        &format!("/services/{service}/metrics"),
                        json!({"name": name, "unit": unit, "parent": parent}),
                    )
                    .await?,
                    &["id", "name", "unit", "parent"],
                ),
                MetricCommand::List { service } => c.show_list(
                    c.get_all(&format!("/services/{service}/metrics")).await?,
                    &["id", "name", "unit", "parent"],
                ),
            }
        }
        Command::Plans { command, remote } => {
            let c = Client::new(&remote)?;
            match command {
                PlanCommand::Create {
                    service,
                    name,
                    setup_fee,
                    fixed_fee,
                    trial_days,
                    published,
                    limits,
                    prices,
                } => {
                    let body = json!({
                        "service_id": service, "name": name, "setup_fee": setup_fee, "fixed_fee": fixed_fee,
                        "trial_days": trial_days, "state": if published { "published" } else { "hidden" },
                        "limits": limits.iter().map(|l| parse_limit(l)).collect::<Result<Vec<_>, _>>()?,
                        "pricing_rules": prices.iter().map(|p| parse_price(p)).collect::<Result<Vec<_>, _>>()?,
                    });
                    c.show(
                        c.post("/plans", body).await?,
                        &[
                            "id",
                            "name",
                            "state",
                            "setup_fee",
                            "fixed_fee",
                            "trial_days",
                        ],
                    )
                }
                PlanCommand::List { service } => {
                    let path = match service {
                        Some(s) => format!("/plans?service_id={s}"),
                        None => "/plans".into(),
                    };
                    c.show_list(
                        c.get_all(&path).await?,
                        &["id", "name", "state", "fixed_fee", "service_id"],
                    )
                }
                PlanCommand::Get { id } => c.show(
                    c.get(&format!("/plans/{id}")).await?,
                    &[
                        "id",
                        "name",
                        "state",
                        "setup_fee",
                        "fixed_fee",
                        "trial_days",
                        "limits",
                        "pricing_rules",
                    ],
                ),
                PlanCommand::Delete { id } => {
                    c.show(c.delete(&format!("/plans/{id}")).await?, &["id", "deleted"])
                }
                PlanCommand::AlertThresholds { id, change } => {
                    alert_thresholds(&c, &format!("/plans/{id}/alert_thresholds"), change).await
                }
            }
        }
        Command::Accounts { command, remote } => {
            let c = Client::new(&remote)?;
            match command {
                AccountCommand::Create {
                    name,
                    email,
                    vat_rate,
                } => {
                    let mut body = json!({"name": name, "email": email});
                    if let Some(v) = vat_rate {
                        body["vat_rate"] = json!(v);
                    }
                    c.show(
                        c.post("/accounts", body).await?,
                        &["id", "name", "email", "vat_rate"],
                    )
                }
                AccountCommand::List => {
                    c.show_list(c.get_all("/accounts").await?, &["id", "name", "email"])
                }
                AccountCommand::Delete { id } => c.show(
                    c.delete(&format!("/accounts/{id}")).await?,
                    &["id", "deleted"],
                ),
            }
        }
        Command::Applications { command, remote } => {
            let c = Client::new(&remote)?;
            match command {
                ApplicationCommand::Create {
                    account,
                    plan,
                    name,
                    app_id,
                } => {
                    let mut body = json!({"account_id": account, "plan_id": plan, "name": name});
                    if let Some(a) = app_id {
                        body["app_id"] = json!(a);
                    }
                    c.show(
                        c.post("/applications", body).await?,
                        &["id", "name", "state", "plan_id", "app_id", "key"],
                    )
                }
                ApplicationCommand::Update {
                    id,
                    name,
                    plan,
                    app_id,
                } => {
                    let mut body = json!({});
                    for (k, v) in [("name", name), ("plan_id", plan), ("app_id", app_id)] {
                        if let Some(v) = v {
                            body[k] = json!(v);
                        }
                    }
                    c.show(
                        c.patch(&format!("/applications/{id}"), body).await?,
                        &["id", "name", "state", "plan_id", "app_id"],
                    )
                }
                ApplicationCommand::List { account } => {
                    let path = match account {
                        Some(a) => format!("/applications?account_id={a}"),
                        None => "/applications".into(),
                    };
                    c.show_list(
                        c.get_all(&path).await?,
                        &["id", "name", "state", "plan_id", "account_id"],
                    )
                }
                ApplicationCommand::Suspend { id } => c.show(
                    c.post(&format!("/applications/{id}/suspend"), json!({}))
                        .await?,
                    &["id", "state", "state_reason"],
                ),
                ApplicationCommand::Resume { id } => c.show(
                    c.post(&format!("/applications/{id}/resume"), json!({}))
                        .await?,
                    &["id", "state"],
                ),
                ApplicationCommand::Delete { id } => c.show(
                    c.delete(&format!("/applications/{id}")).await?,
                    &["id", "deleted"],
                ),
                ApplicationCommand::AlertThresholds { id, change } => {
                    alert_thresholds(&c, &format!("/applications/{id}/alert_thresholds"), change)
                        .await
                }
            }
        }
        Command::Webhooks { command, remote } => {
            let c = Client::new(&remote)?;
            match command {
                WebhookCommand::Create {
                    endpoint_url: url,
                    events,
                    description,
                } => {
                    let mut fields = ENDPOINT_FIELDS.to_vec();
                    fields.push("secret");
                    c.show(
                        c.post(
                            "/webhook_endpoints",
                            json!({"url": url, "events": events, "description": description}),
                        )
                        .await?,
                        &fields,
                    )
                }
                WebhookCommand::List => {
                    c.show_list(c.get_all("/webhook_endpoints").await?, ENDPOINT_FIELDS)
                }
                WebhookCommand::Show { id } => c.show(
                    c.get(&format!("/webhook_endpoints/{id}")).await?,
                    ENDPOINT_FIELDS,
                ),
                WebhookCommand::Update {
                    id,
                    endpoint_url: url,
                    events,
                } => {
                    let mut body = serde_json::Map::new();
                    if let Some(url) = url {
                        body.insert("url".into(), json!(url));
                    }
                    if !events.is_empty() {
                        body.insert("events".into(), json!(events));
                    }
                    c.show(
                        c.patch(&format!("/webhook_endpoints/{id}"), Value::Object(body))
                            .await?,
                        ENDPOINT_FIELDS,
                    )
                }
                WebhookCommand::Disable { id } => c.show(
                    c.patch(
                        &format!("/webhook_endpoints/{id}"),
                        json!({"enabled": false}),
                    )
                    .await?,
                    ENDPOINT_FIELDS,
                ),
                WebhookCommand::Enable { id } => c.show(
                    c.patch(
                        &format!("/webhook_endpoints/{id}"),
                        json!({"enabled": true}),
                    )
                    .await?,
                    ENDPOINT_FIELDS,
                ),
                WebhookCommand::Delete { id } => c.show(
                    c.delete(&format!("/webhook_endpoints/{id}")).await?,
                    &["id", "deleted"],
                ),
                WebhookCommand::Test { id } => c.show(
                    c.post(&format!("/webhook_endpoints/{id}/test"), json!({}))
                        .await?,
                    DELIVERY_FIELDS,
                ),
                WebhookCommand::RotateSecret { id, grace_seconds } => {
                    let mut fields = ENDPOINT_FIELDS.to_vec();
                    fields.push("secret");
                    c.show(
                        c.post(
                            &format!("/webhook_endpoints/{id}/rotate_secret"),
                            json!({"grace_seconds": grace_seconds}),
                        )
                        .await?,
                        &fields,
                    )
                }
                WebhookCommand::Deliveries { id } => c.show_list(
                    c.get_all(&format!("/webhook_endpoints/{id}/deliveries"))
                        .await?,
                    DELIVERY_FIELDS,
                ),
                WebhookCommand::Replay { delivery } => c.show(
                    c.post(&format!("/webhook_deliveries/{delivery}/replay"), json!({}))
                        .await?,
                    DELIVERY_FIELDS,
                ),
            }
        }
        Command::GatewayTokens { command, remote } => {
            let c = Client::new(&remote)?;
            match command {
                GatewayTokenCommand::Create { name, services } => c.show(
                    c.post(
                        "/gateway_tokens",
                        json!({"name": name, "service_ids": services}),
                    )
                    .await?,
                    &["id", "name", "service_ids", "token"],
                ),
                GatewayTokenCommand::SetServices { id, services } => c.show(
                    c.patch(
                        &format!("/gateway_tokens/{id}"),
                        json!({"service_ids": services}),
                    )
                    .await?,
                    &["id", "name", "service_ids"],
                ),
                GatewayTokenCommand::List => c.show_list(
                    c.get_all("/gateway_tokens").await?,
                    &["id", "name", "service_ids", "created_at"],
                ),
                GatewayTokenCommand::Revoke { id } => c.show(
                    c.delete(&format!("/gateway_tokens/{id}")).await?,
                    &["id", "deleted"],
                ),
            }
        }
        Command::AppKeys { command, remote } => {
            let c = Client::new(&remote)?;
            let fields = &["id", "prefix", "created_at"];
            match command {
                AppKeyCommand::Add {
                    application,
                    value_stdin,
                    value_sha256,
                } => {
                    let body = match (value_stdin, value_sha256) {
                        (true, _) => json!({"value": read_secret_line()?}),
                        (false, d) => json!({"value_sha256": d}),
                    };
                    c.show(
                        c.post(&format!("/applications/{application}/app_keys"), body)
                            .await?,
                        fields,
                    )
                }
                AppKeyCommand::List { application } => c.show_list(
                    c.get_all(&format!("/applications/{application}/app_keys"))
                        .await?,
                    fields,
                ),
                AppKeyCommand::Delete { application, key } => c.show(
                    c.delete(&format!("/applications/{application}/app_keys/{key}"))
                        .await?,
                    &["id", "deleted"],
                ),
            }
        }
        Command::Keys { command, remote } => {
            let c = Client::new(&remote)?;
            match command {
                KeyCommand::Create {
                    application,
                    key_stdin,
                    key_sha256,
                } => {
                    let body = match (key_stdin, key_sha256) {
                        (true, _) => json!({"key": read_secret_line()?}),
                        (false, Some(d)) => json!({"key_sha256": d}),
                        (false, None) => json!({}),
                    };
                    c.show(
                        c.post(&format!("/applications/{application}/keys"), body)
                            .await?,
                        &["id", "prefix", "key"],
                    )
                }
                KeyCommand::List { application } => c.show_list(
                    c.get_all(&format!("/applications/{application}/keys"))
                        .await?,
                    &["id", "prefix", "created_at", "expires_at"],
                ),
                KeyCommand::Revoke { application, key } => c.show(
                    c.delete(&format!("/applications/{application}/keys/{key}"))
                        .await?,
                    &["id", "deleted"],
                ),
                KeyCommand::Rotate {
                    application,
                    key,
                    grace_seconds,
                } => {
                    let body = match grace_seconds {
                        Some(g) => json!({"grace_seconds": g}),
                        None => json!({}),
                    };
                    c.show(
                        c.post(
                            &format!("/applications/{application}/keys/{key}/rotate"),
                            body,
                        )
                        .await?,
                        &["id", "prefix", "key", "replaces"],
                    )
                }
            }
        }
    }
}

/// `tollgate plans|applications alert-thresholds`: the set at `path`, shown, replaced or dropped.
async fn alert_thresholds(c: &Client, path: &str, change: ThresholdChange) -> Result<(), String> {
    let answer = match change {
        ThresholdChange { set: Some(t), .. } => c.put(path, json!({ "thresholds": t })).await?,
        ThresholdChange { off: true, .. } => c.put(path, json!({ "thresholds": [] })).await?,
        ThresholdChange { reset: true, .. } => c.delete(path).await?,
        _ => c.get(path).await?,
    };
    c.show(answer, &["thresholds", "source"])
}

fn parse_limit(s: &str) -> Result<Value, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [metric, period, value] => {
            let value: u64 = value
                .parse()
                .map_err(|_| format!("--limit {s:?}: VALUE must be a whole number"))?;
            Ok(json!({"metric": metric, "period": period, "value": value}))
        }
        _ => Err(format!(
            "--limit {s:?}: expected METRIC:PERIOD:VALUE, e.g. hits:minute:100"
        )),
    }
}

fn parse_price(s: &str) -> Result<Value, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [metric, from, to, price] => {
            let from: u64 = from
                .parse()
                .map_err(|_| format!("--price {s:?}: FROM must be a whole number"))?;
            let to: Option<u64> =
                if to.is_empty() {
                    None
                } else {
                    Some(to.parse().map_err(|_| {
                        format!("--price {s:?}: TO must be a whole number or empty")
                    })?)
                };
            Ok(json!({"metric": metric, "from": from, "to": to, "unit_price": price}))
        }
        _ => Err(format!(
            "--price {s:?}: expected METRIC:FROM:TO:UNIT_PRICE, e.g. hits:1::0.001"
        )),
    }
}

const INVOICE_FIELDS: &[&str] = &["id", "number", "state", "account_id", "currency", "total"];

async fn billing(command: BillingCommand, remote: &Remote) -> Result<(), String> {
    let c = Client::new(remote)?;
    match command {
        BillingCommand::Settings => c.show(
            c.get("/billing/settings").await?,
            &[
                "mode",
                "currency",
                "numbering",
                "due_days",
                "charging_enabled",
                "run_hour_utc",
            ],
        ),
        BillingCommand::Configure { json } => {
            let patch: Value = serde_json::from_str(&json)
                .map_err(|e| format!("the settings must be a JSON object: {e}"))?;
            c.show(
                c.put("/billing/settings", patch).await?,
                &[
                    "mode",
                    "currency",
                    "numbering",
                    "due_days",
                    "charging_enabled",
                    "run_hour_utc",
                ],
            )
        }
        BillingCommand::Run { date, no_wait } => {
            let body = match date {
                Some(d) => json!({"date": d}),
                None => json!({}),
            };
            let mut run = c.post("/billing/runs", body).await?;
            let id = run["id"].as_str().unwrap_or_default().to_string();
            let started = std::time::Instant::now();
            while !no_wait && run["state"] == "running" {
                if started.elapsed() > RUN_WAIT_MAX {
                    return Err(format!("billing run {id} still running after {RUN_WAIT_MAX:?}; check it with the API"));
                }
                tokio::time::sleep(RUN_POLL).await;
                run = c.get(&format!("/billing/runs/{id}")).await?;
            }
            let state = run["state"].as_str().unwrap_or_default().to_string();
            c.show(
                run,
                &[
                    "id",
                    "date",
                    "state",
                    "accounts_done",
                    "invoices_issued",
                    "error",
                ],
            )?;
            match state.as_str() {
                "succeeded" | "running" => Ok(()),
                other => Err(format!("billing run {id} {other}")),
            }
        }
    }
}

async fn invoices(command: InvoiceCommand, remote: &Remote) -> Result<(), String> {
    let c = Client::new(remote)?;
    match command {
        InvoiceCommand::List {
            account,
            state,
            period,
        } => {
            let mut q = Vec::new();
            for (k, v) in [
                ("account_id", account),
                ("state", state),
                ("period", period),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={v}"));
                }
            }
            let path = if q.is_empty() {
                "/invoices".to_string()
            } else {
                format!("/invoices?{}", q.join("&"))
            };
            c.show_list(c.get_all(&path).await?, INVOICE_FIELDS)
        }
        InvoiceCommand::Show { id } => {
            c.show(c.get(&format!("/invoices/{id}")).await?, INVOICE_FIELDS)
        }
        InvoiceCommand::Pdf { id, out } => {
            let bytes = c.get_bytes(&format!("/invoices/{id}.pdf")).await?;
            std::fs::write(&out, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
            Ok(())
        }
        InvoiceCommand::Action { action, id } => c.show(
            c.post(&format!("/invoices/{id}/{action}"), json!({}))
                .await?,
            INVOICE_FIELDS,
        ),
    }
}

/// Writes `bytes` to a new file at `path` that only its owner may read (mode 0600 on Unix),
/// replacing a leftover of an earlier failed attempt.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `tollgate export`: the document to `out` (written beside it, then renamed over it, so a failed
/// export never leaves half a file under the name) or standard output.
async fn export(out: Option<std::path::PathBuf>) -> Result<(), String> {
    use crate::domain::transfer;
    let settings = Settings::from_env()?;
    let pool = store::connect(&settings.database_url).await?;
    store::migrate(&pool).await?;
    let doc = transfer::export(&pool)
        .await
        .map_err(|e| format!("export failed: {}", detail(e)))?;
    let text =
        serde_json::to_vec_pretty(&doc).map_err(|e| format!("cannot encode the export: {e}"))?;
    let summary = format!(
        "exported {} service(s), {} plan(s), {} account(s), {} application(s)",
        doc.services.len(),
        doc.plans.len(),
        doc.accounts.len(),
        doc.applications.len()
    );
    match out {
        Some(path) => {
            let partial = path.with_extension("partial");
            // Readable by its owner only: the document holds every key digest (a short imported
            // key's digest can be brute-forced) and customers' personal data.
            let written = write_private(&partial, &text).and_then(|()| {
                std::fs::rename(&partial, &path)
                    .map_err(|e| format!("cannot move the export to {}: {e}", path.display()))
            });
            if let Err(e) = written {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
            eprintln!("{summary} to {}", path.display());
        }
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&text)
                .and_then(|()| stdout.write_all(b"\n"))
                .map_err(|e| format!("cannot write the export: {e}"))?;
            eprintln!("{summary}");
        }
    }
    Ok(())
}

/// `tollgate import FILE`: checked whole, then written in one transaction into an empty
/// installation; any refusal changes nothing and exits non-zero with the reason.
async fn import(file: &std::path::Path, check_only: bool) -> Result<(), String> {
    use crate::domain::transfer;
    use std::io::Read;
    let f =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let mut text = Vec::new();
    f.take(transfer::MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if text.len() as u64 > transfer::MAX_DOCUMENT_BYTES {
        return Err(format!(
            "{} is larger than {} bytes; nothing was imported",
            file.display(),
            transfer::MAX_DOCUMENT_BYTES
        ));
    }
    let refused = |e: crate::domain::DomainError| {
        let param = match &e {
            crate::domain::DomainError::Invalid { param: Some(p), .. } => format!(" (at {p})"),
            _ => String::new(),
        };
        format!("import refused: {}{param}; nothing was imported", detail(e))
    };
    let doc = transfer::parse(&text).map_err(refused)?;
    transfer::validate(&doc).map_err(refused)?;
    if check_only {
        eprintln!(
            "{} is a valid export: {} service(s), {} plan(s), {} account(s), {} application(s); nothing was imported (--check)",
            file.display(),
            doc.services.len(),
            doc.plans.len(),
            doc.accounts.len(),
            doc.applications.len()
        );
        return Ok(());
    }
    let settings = Settings::from_env()?;
    let pool = store::connect(&settings.database_url).await?;
    store::migrate(&pool).await?;
    let done = transfer::import(&pool, &crate::domain::audit::Actor::cli(), &doc)
        .await
        .map_err(refused)?;
    eprintln!(
        "imported {} service(s), {} plan(s), {} account(s), {} application(s), {} key(s), {} app key(s)",
        done.services, done.plans, done.accounts, done.applications, done.keys, done.app_keys
    );
    Ok(())
}

/// `tollgate import 3scale`: progress and the summary on standard error; each change (or, with
/// `--dry-run`, each change it would make) and each note of the report on standard output, one
/// line each, so they can be kept in a file.
async fn import_3scale(request: &crate::domain::threescale::Request<'_>) -> Result<(), String> {
    use crate::domain::threescale;
    use std::io::Write;
    if !(1..=threescale::source::MAX_CONCURRENCY).contains(&request.concurrency) {
        return Err(format!(
            "--concurrency must be 1-{}",
            threescale::source::MAX_CONCURRENCY
        ));
    }
    let settings = Settings::from_env()?;
    crate::outbound::init_from_env();
    let pool = store::connect(&settings.database_url).await?;
    store::migrate(&pool).await?;
    // At most a line a second per step (and its last): 20,000 applications are not 20,000 lines.
    let last = std::sync::Mutex::new((String::new(), std::time::Instant::now()));
    let progress = |what: &str, done: u64, of: u64| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let step_changed = last.0 != what;
        if step_changed || done >= of || last.1.elapsed() >= std::time::Duration::from_secs(1) {
            eprintln!("3scale: {what} {done}/{of}");
            *last = (what.to_string(), std::time::Instant::now());
        }
    };
    let outcome = threescale::run(&pool, request, &progress)
        .await
        .map_err(|e| {
            format!(
                "import from 3scale failed: {}; nothing was written",
                detail(e)
            )
        })?;
    let r = &outcome.read;
    eprintln!(
        "read {} service(s), {} metric(s), {} mapping rule(s), {} plan(s), {} account(s), {} application(s), {} app key(s) from {} in {} ms ({} request(s), {} retried)",
        r.services, r.metrics, r.mapping_rules, r.plans, r.accounts, r.applications, r.app_keys,
        outcome.source, outcome.read_ms, r.requests, r.retries
    );
    let mut out = std::io::stdout().lock();
    let verb = if request.dry_run { "would " } else { "" };
    for line in &outcome.changes {
        writeln!(out, "{verb}{line}").map_err(|e| e.to_string())?;
    }
    for n in &outcome.notes {
        writeln!(out, "{}: {}: {}", n.kind.as_str(), n.subject, n.reason)
            .map_err(|e| e.to_string())?;
    }
    let figures: Vec<String> = outcome
        .counts
        .pairs()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {}", name.replace('_', " ")))
        .collect();
    let what = if figures.is_empty() {
        "no change".to_string()
    } else {
        figures.join(", ")
    };
    let notes = outcome.notes.len();
    // "in N ms": planning and writing, after reading 3scale.
    let ms = outcome.write_ms;
    if request.dry_run {
        eprintln!("dry run: {what}; {notes} note(s); nothing was written; in {ms} ms");
    } else if outcome.written {
        eprintln!("imported: {what}; {notes} note(s); in {ms} ms");
    } else {
        eprintln!("up to date: no change; {notes} note(s); in {ms} ms");
    }
    Ok(())
}

/// What a person at the terminal is shown for a domain error: an internal error's detail too (the
/// CLI has no log to send it to, and the operator running it is the one who needs it).
fn detail(e: crate::domain::DomainError) -> String {
    match e {
        crate::domain::DomainError::Internal(d) => d,
        other => other.to_string(),
    }
}
