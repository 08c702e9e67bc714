//! `tollgate import 3scale` (issue 22 item 2): reads a 3scale tenant through its Account
//! Management API and makes the same catalog, accounts, applications and keys in Tollgate; run
//! again, it changes only what changed in 3scale since (docs/migrate-from-3scale.md has the
//! mapping table and what is not carried).
//!
//! 1. [`source::fetch`] reads the tenant ([`client`]: JSON, paged, retried, bounded), outside
//!    any database transaction; keys become digests as they are read.
//! 2. In one write transaction: the installation is read as a `transfer::Document` with the
//!    links of earlier runs of this tenant (`threescale_links`, keyed by the admin URL's
//!    origin), [`plan::plan`] says what it should become, `transfer::validate` checks the result
//!    with every rule `tollgate import <file>` applies (a planner bug cannot write an
//!    installation the admin API would refuse), and [`apply::Changes`] writes the difference,
//!    the links, one audit event with the counts, and bumps the catalog revision once.
//! 3. `--dry-run` does steps 1 and 2 up to the writing, in a read transaction it rolls back, and
//!    prints the same lines.
//!
//! Like `tollgate import <file>`, it writes no webhook events: a move is not a change of the
//! facts (no `application.created` for thousands of existing customers).

pub mod apply;
pub mod client;
pub mod plan;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::domain::audit::{self, Actor, Changes as AuditChanges, Object};
use crate::domain::catalog::revision;
use crate::domain::transfer;
use crate::domain::{DomainError, DomainResult};
use crate::secrets::new_id;
use crate::store::{begin_write, now, placeholders, rows_per_statement, Pool, Tx};

pub use apply::Counts;
pub use plan::{Kind, Links, Note, NoteKind, Options};

/// What the operator asked for.
pub struct Request<'a> {
    /// The tenant's admin portal, e.g. `https://acme-admin.3scale.net`.
    pub admin_url: &'a str,
    pub access_token: &'a str,
    pub dry_run: bool,
    /// Requests in flight at once (1 to [`source::MAX_CONCURRENCY`]).
    pub concurrency: usize,
    pub options: Options,
}

/// How much of the tenant was read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Read {
    pub services: usize,
    pub metrics: usize,
    pub mapping_rules: usize,
    pub plans: usize,
    pub accounts: usize,
    pub applications: usize,
    pub app_keys: usize,
    /// HTTP requests sent, retries included, and how many were retries.
    pub requests: u64,
    pub retries: u64,
}

/// What a run did (or, dry, would do).
#[derive(Debug)]
pub struct Outcome {
    /// The tenant's key: the admin URL's origin.
    pub source: String,
    pub read: Read,
    /// One line per change (see [`apply::Changes::describe`]).
    pub changes: Vec<String>,
    pub counts: Counts,
    /// Everything not carried, or not as it was.
    pub notes: Vec<Note>,
    /// Whether anything was written (false for a dry run and for a run with nothing to do).
    pub written: bool,
    pub read_ms: u128,
    pub write_ms: u128,
}

/// What the run reports as it goes: `(what, done, of)`.
pub type Progress<'a> = source::Progress<'a>;

/// A 3scale error in the domain's terms.
fn source_error(e: client::SourceError) -> DomainError {
    match e {
        client::SourceError::AccessDenied { .. } => DomainError::Forbidden(e.to_string()),
        client::SourceError::BadUrl(_) => {
            DomainError::invalid("admin_url", "invalid_url", e.to_string())
        }
        other => DomainError::Unavailable(other.to_string()),
    }
}

#[derive(sqlx::FromRow)]
struct LinkRow {
    kind: String,
    threescale_id: String,
    tollgate_id: String,
}

async fn load_links(conn: &mut sqlx::AnyConnection, source: &str) -> DomainResult<Links> {
    let rows: Vec<LinkRow> = sqlx::query_as(
        "SELECT kind, threescale_id, tollgate_id FROM threescale_links WHERE source = $1",
    )
    .bind(source)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| match Kind::stored(&r.kind) {
            Some(k) => Ok(((k, r.threescale_id), r.tollgate_id)),
            None => Err(DomainError::Internal(format!(
                "stored link kind {:?} is unknown",
                r.kind
            ))),
        })
        .collect()
}

/// Writes the links that are new or point elsewhere, and deletes those that went.
async fn save_links(
    tx: &mut Tx,
    source: &str,
    before: &Links,
    after: &Links,
    t: i64,
) -> DomainResult<()> {
    for (kind, id) in before.keys().filter(|k| !after.contains_key(*k)) {
        sqlx::query(
            "DELETE FROM threescale_links WHERE source = $1 AND kind = $2 AND threescale_id = $3",
        )
        .bind(source)
        .bind(kind.as_str())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    let upserts: Vec<(&(Kind, String), &String)> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .collect();
    for chunk in upserts.chunks(rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO threescale_links (source, kind, threescale_id, tollgate_id, created_at) VALUES {} \
             ON CONFLICT (source, kind, threescale_id) DO UPDATE SET tollgate_id = excluded.tollgate_id",
            placeholders(chunk.len(), 5)
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for ((kind, id), tollgate) in chunk {
            q = q
                .bind(source)
                .bind(kind.as_str())
                .bind(id)
                .bind(*tollgate)
                .bind(t);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Every table the import reads and writes, locked on PostgreSQL for the transaction (writers
/// wait, readers such as gateways' snapshots do not), so what was diffed is what is written and
/// two imports run one after the other. SQLite's `BEGIN IMMEDIATE` serializes writers already.
const LOCKED_TABLES: &str = "services, metrics, mapping_rules, plans, plan_limits, pricing_rules, accounts, applications, application_keys, application_app_keys, contracts, threescale_links";

/// Reads the tenant and makes the installation mirror it (see the module's documentation).
pub async fn run(pool: &Pool, req: &Request<'_>, progress: Progress<'_>) -> DomainResult<Outcome> {
    let client =
        Arc::new(client::Client::new(req.admin_url, req.access_token).map_err(source_error)?);
    let source = client.origin();
    let started = Instant::now();
    let tenant = source::fetch(client.clone(), req.concurrency, progress)
        .await
        .map_err(source_error)?;
    let (requests, retries) = client.counts();
    let read = Read {
        services: tenant.services.len(),
        metrics: tenant.services.iter().map(|s| s.metrics.len()).sum(),
        mapping_rules: tenant.services.iter().map(|s| s.mapping_rules.len()).sum(),
        plans: tenant.services.iter().map(|s| s.plans.len()).sum(),
        accounts: tenant.accounts.len(),
        applications: tenant.applications.len(),
        app_keys: tenant.applications.iter().map(|a| a.app_keys.len()).sum(),
        requests,
        retries,
    };
    let read_ms = started.elapsed().as_millis();
    progress("read; now planning and writing", 1, 1);
    let mut outcome = sync(pool, &source, &tenant, req.dry_run, req.options).await?;
    outcome.read = read;
    outcome.read_ms = read_ms;
    Ok(outcome)
}

/// Makes the installation mirror `tenant`, read from the tenant `source` (steps 2 and 3 of the
/// module's documentation).
pub async fn sync(
    pool: &Pool,
    source: &str,
    tenant: &source::Tenant,
    dry_run: bool,
    options: Options,
) -> DomainResult<Outcome> {
    let started = Instant::now();
    let mut tx = if dry_run {
        pool.begin().await?
    } else {
        begin_write(pool).await?
    };
    if !dry_run && crate::store::backend() == crate::store::Backend::Postgres {
        sqlx::query(&format!("LOCK TABLE {LOCKED_TABLES} IN EXCLUSIVE MODE"))
            .execute(&mut *tx)
            .await?;
    }
    let current = transfer::read_document(&mut tx).await?;
    let links = load_links(&mut tx, source).await?;
    let t = now();
    let planned = plan::plan(tenant, &current, &links, options, t);
    // The invariant: whatever the planner did, the installation it asks for passes every rule
    // an import of a whole document passes. A refusal here is a bug: nothing is written.
    transfer::validate(&planned.after).map_err(|e| {
        let at = match &e {
            DomainError::Invalid { param: Some(p), .. } => format!(" (at {p})"),
            _ => String::new(),
        };
        DomainError::Internal(format!(
            "the planned installation breaks a rule: {e}{at}; nothing was written"
        ))
    })?;
    let changes = apply::Changes::between(&current, &planned.after);
    let counts = changes.counts();
    let origin_of: HashMap<&str, (Kind, &str)> = planned
        .links
        .iter()
        .map(|((k, ts), tid)| (tid.as_str(), (*k, ts.as_str())))
        .collect();
    let lines = changes.describe(&|id| match origin_of.get(id) {
        Some((k, ts)) => format!(" (3scale {} {ts})", k.as_str()),
        None => String::new(),
    });
    let mut notes = planned.notes;
    notes.sort_by(|a, b| (a.kind, &a.subject).cmp(&(b.kind, &b.subject)));
    let links_changed = planned.links != links;
    let mut outcome = Outcome {
        source: source.to_string(),
        read: Read::default(),
        changes: lines,
        counts,
        notes,
        written: false,
        read_ms: 0,
        write_ms: 0,
    };
    if dry_run || (counts.is_empty() && !links_changed) {
        tx.rollback().await?;
        outcome.write_ms = started.elapsed().as_millis();
        return Ok(outcome);
    }
    changes.write(&mut tx, &planned.after, t).await?;
    save_links(&mut tx, source, &links, &planned.links, t).await?;
    let mut fields: Vec<(&str, Value, Value)> =
        vec![("source", Value::Null, Value::String(source.to_string()))];
    fields.extend(
        counts
            .pairs()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name, Value::Null, Value::from(n))),
    );
    let id = new_id("imp");
    audit::record(
        &mut tx,
        &Actor::cli(),
        "threescale_import.applied",
        Object {
            kind: "threescale_import",
            id: &id,
        },
        &AuditChanges::of(&fields),
    )
    .await?;
    if !counts.is_empty() {
        revision::bump(&mut tx).await?;
    }
    tx.commit().await?;
    outcome.written = true;
    outcome.write_ms = started.elapsed().as_millis();
    Ok(outcome)
}

#[cfg(test)]
mod tests;
