//! Applications: an account on a plan, with its keys. An application is live or suspended (by an
//! admin, or for an unpaid invoice); gateways enforce both, so every change here bumps the
//! catalog revision in its transaction.
//!
//! An application may carry an `app_id` (3scale's public application identifier, presented with
//! one of its app keys: `domain/accounts/app_keys.rs`). It is unique across the installation
//! (what a 3scale tenant guarantees, and more than a gateway needs: it looks an `app_id` up within
//! one service's snapshot), set on create or changed by update, never removed once set (its app
//! keys would open nothing); [`check_app_id`] refuses what a gateway would.

use serde::{Deserialize, Serialize};

use super::account::{self, Deleted};
use super::keys::{self, ApplicationKey, NewKey};
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::billing::contracts;
use crate::domain::catalog::plans::{self, Plan};
use crate::domain::catalog::{check_name, revision};
use crate::domain::page::page;
use crate::domain::webhooks::events::{ApplicationData, PlanChangedData};
use crate::domain::webhooks::{self, Event};
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::secrets::new_id;
use crate::store::{now, Pool, Tx};

/// Longest application description.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;

/// Whether gateways let an application's keys through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationState {
    Live,
    Suspended,
}

impl ApplicationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationState::Live => "live",
            ApplicationState::Suspended => "suspended",
        }
    }

    /// A stored state; anything else is a corrupt row.
    pub(crate) fn parse(s: &str) -> DomainResult<ApplicationState> {
        match s {
            "live" => Ok(ApplicationState::Live),
            "suspended" => Ok(ApplicationState::Suspended),
            other => Err(DomainError::Internal(format!(
                "stored application state {other:?} is not live or suspended"
            ))),
        }
    }
}

/// Why an application is suspended: by an admin, or for an unpaid invoice (lifted when it is paid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuspensionReason {
    Admin,
    NonPayment,
}

impl SuspensionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuspensionReason::Admin => "admin",
            SuspensionReason::NonPayment => "non_payment",
        }
    }

    fn parse(s: &str) -> DomainResult<SuspensionReason> {
        match s {
            "admin" => Ok(SuspensionReason::Admin),
            "non_payment" => Ok(SuspensionReason::NonPayment),
            other => Err(DomainError::Internal(format!(
                "stored suspension reason {other:?} is not admin or non_payment"
            ))),
        }
    }

    /// A stored reason (or none); anything else is a corrupt row.
    pub(crate) fn parse_stored(s: Option<&str>) -> DomainResult<Option<SuspensionReason>> {
        s.map(SuspensionReason::parse).transpose()
    }
}

#[derive(sqlx::FromRow)]
struct AppRow {
    id: String,
    account_id: String,
    plan_id: String,
    name: String,
    description: String,
    state: String,
    state_reason: Option<String>,
    created_at: i64,
    updated_at: i64,
    app_id: Option<String>,
}

const APP_SELECT: &str =
    "SELECT id, account_id, plan_id, name, description, state, state_reason, created_at, updated_at, app_id FROM applications";

/// An application as the admin API shows it, with its live keys.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Application {
    /// Always `"application"`.
    pub object: &'static str,
    pub id: String,
    pub account_id: String,
    pub plan_id: String,
    pub name: String,
    pub description: String,
    pub state: ApplicationState,
    /// Set while suspended.
    pub state_reason: Option<SuspensionReason>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The public identifier presented with an app key (3scale's `app_id`); `null` when none.
    pub app_id: Option<String>,
    /// The live keys: active ones, and rotated ones in their grace period.
    pub keys: Vec<ApplicationKey>,
}

impl AppRow {
    fn into_application(self, keys: Vec<ApplicationKey>) -> DomainResult<Application> {
        Ok(Application {
            object: "application",
            state: ApplicationState::parse(&self.state)?,
            state_reason: SuspensionReason::parse_stored(self.state_reason.as_deref())?,
            id: self.id,
            account_id: self.account_id,
            plan_id: self.plan_id,
            name: self.name,
            description: self.description,
            created_at: self.created_at,
            updated_at: self.updated_at,
            app_id: self.app_id,
            keys,
        })
    }
}

/// A new application's answer: the application and its first key, in plaintext this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApplication {
    #[serde(flatten)]
    pub application: Application,
    /// The plaintext key, this once; it cannot be retrieved again.
    pub key: String,
    pub key_id: String,
}

/// What `POST /applications` and `PATCH /applications/{id}` take; on update, absent fields stay
/// and `account_id`, if sent, must be the application's own.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppInput {
    pub account_id: Option<String>,
    pub plan_id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// 3scale's `app_id`: 1 to 128 visible ASCII characters, unique across the installation. Set
    /// on create or changed on update; it cannot be removed.
    pub app_id: Option<String>,
}

/// Which applications a list holds (absent: all).
#[derive(Debug, Default)]
pub struct AppFilter {
    pub account_id: Option<String>,
    pub plan_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendInput {
    /// Default `admin`.
    pub reason: Option<SuspensionReason>,
}

pub(crate) fn check_description(d: &str) -> DomainResult<String> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(DomainError::invalid(
            "description",
            "invalid_description",
            format!("at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(d.to_string())
}

/// Checks an `app_id`: what a gateway reads as a credential and as an id (1 to
/// [`tollgate_rules::names::MAX_ID_BYTES`] visible ASCII characters).
pub fn check_app_id(app_id: &str) -> DomainResult<String> {
    let max = tollgate_rules::names::MAX_ID_BYTES;
    if app_id.len() > max || tollgate_rules::names::credential_problem(app_id.as_bytes()).is_some()
    {
        return Err(DomainError::invalid(
            "app_id",
            "invalid_app_id",
            format!("1-{max} visible ASCII characters, no spaces"),
        ));
    }
    Ok(app_id.to_string())
}

fn app_id_in_use(app_id: &str) -> DomainError {
    DomainError::Conflict {
        code: "app_id_in_use",
        message: format!("another application has app_id {app_id:?}"),
        param: Some("app_id".into()),
    }
}

/// Sets application `id`'s `app_id` inside `tx`: another application's is `app_id_in_use` (409),
/// also when a concurrent transaction took it first (the unique index).
pub async fn set_app_id(tx: &mut Tx, id: &str, app_id: &str) -> DomainResult<()> {
    let holder: Option<(String,)> =
        sqlx::query_as("SELECT id FROM applications WHERE app_id = $1 AND id <> $2")
            .bind(app_id)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    if holder.is_some() {
        return Err(app_id_in_use(app_id));
    }
    match sqlx::query("UPDATE applications SET app_id = $2 WHERE id = $1")
        .bind(id)
        .bind(app_id)
        .execute(&mut **tx)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::store::is_unique_violation(&e) => Err(app_id_in_use(app_id)),
        Err(e) => Err(e.into()),
    }
}

async fn fetch_row(pool: &Pool, id: &str) -> DomainResult<AppRow> {
    sqlx::query_as(&format!("{APP_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| DomainError::not_found("application", id))
}

/// Not found unless application `id` exists.
pub async fn must_exist(pool: &Pool, id: &str) -> DomainResult<()> {
    let found: Option<(String,)> = sqlx::query_as("SELECT id FROM applications WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(DomainError::not_found("application", id)),
    }
}

async fn plan_exists(pool: &Pool, id: &str) -> DomainResult<bool> {
    let found: Option<(String,)> = sqlx::query_as("SELECT id FROM plans WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(found.is_some())
}

fn unknown_plan(plan_id: &str) -> DomainError {
    DomainError::invalid(
        "plan_id",
        "unknown_plan",
        format!("no plan with id {plan_id:?}"),
    )
}

/// Application objects for rows: one query for all their live keys.
async fn render(pool: &Pool, rows: Vec<AppRow>) -> DomainResult<Vec<Application>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut keys = keys::live_of(pool, &ids).await?;
    rows.into_iter()
        .map(|r| {
            let (mine, rest) = keys.drain(..).partition(|k| k.application_id == r.id);
            keys = rest;
            r.into_application(mine.into_iter().map(ApplicationKey::from).collect())
        })
        .collect()
}

/// The application `id` with its live keys.
pub async fn get(pool: &Pool, id: &str) -> DomainResult<Application> {
    let row = fetch_row(pool, id).await?;
    render(pool, vec![row])
        .await?
        .pop()
        .ok_or_else(|| DomainError::Internal("application vanished while rendering".into()))
}

/// A page of applications in id order, optionally of one account or on one plan.
pub async fn list(
    pool: &Pool,
    filter: &AppFilter,
    req: &PageRequest,
) -> DomainResult<Page<Application>> {
    let rows: Vec<AppRow> = sqlx::query_as(&format!(
        "{APP_SELECT} WHERE id > $1 AND ($2 = '' OR account_id = $2) AND ($3 = '' OR plan_id = $3) ORDER BY id LIMIT $4"
    ))
    .bind(&req.after)
    .bind(filter.account_id.as_deref().unwrap_or_default())
    .bind(filter.plan_id.as_deref().unwrap_or_default())
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    let pg = page(rows, req.limit, |r| &r.id);
    let Page {
        object,
        data,
        has_more,
        next_cursor,
    } = pg;
    Ok(Page {
        object,
        data: render(pool, data).await?,
        has_more,
        next_cursor,
    })
}

/// Application `id` as the `application.*` events carry it, read inside `tx` (after the change).
pub async fn event_data(tx: &mut Tx, id: &str) -> DomainResult<ApplicationData> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: String,
        account_id: String,
        plan_id: String,
        name: String,
        state: String,
        state_reason: Option<String>,
    }
    let r: Row = sqlx::query_as(
        "SELECT id, account_id, plan_id, name, state, state_reason FROM applications WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| DomainError::not_found("application", id))?;
    Ok(ApplicationData {
        application_id: r.id,
        account_id: r.account_id,
        plan_id: r.plan_id,
        name: r.name,
        state: r.state,
        state_reason: r.state_reason,
    })
}

/// Application `id` as the audit log diffs it, read inside `tx`: what the `application.*`
/// events carry, with the fields they leave out (description, app_id).
#[derive(Serialize)]
struct Audited {
    #[serde(flatten)]
    data: ApplicationData,
    description: String,
    app_id: Option<String>,
}

async fn audited(tx: &mut Tx, id: &str) -> DomainResult<Audited> {
    let data = event_data(tx, id).await?;
    let (description, app_id): (String, Option<String>) =
        sqlx::query_as("SELECT description, app_id FROM applications WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
    Ok(Audited {
        data,
        description,
        app_id,
    })
}

/// The state of application `id`, its row locked until `tx` ends (PostgreSQL; SQLite's write
/// transaction serializes anyway): what a state change compares against.
async fn locked_state(tx: &mut Tx, id: &str) -> DomainResult<ApplicationState> {
    let state: String = sqlx::query_scalar(&format!(
        "SELECT state FROM applications WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| DomainError::not_found("application", id))?;
    ApplicationState::parse(&state)
}

/// Inserts a live application (checked input) inside `tx`, starts its plan contract, makes its
/// first key and bumps the catalog revision.
async fn insert_application(
    tx: &mut Tx,
    account_id: &str,
    plan_id: &str,
    name: &str,
    description: &str,
) -> DomainResult<(String, NewKey)> {
    let id = new_id("app");
    let t = now();
    sqlx::query(
        "INSERT INTO applications (id, account_id, plan_id, name, description, state, state_reason, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'live', NULL, $6, $6)",
    )
    .bind(&id)
    .bind(account_id)
    .bind(plan_id)
    .bind(name)
    .bind(description)
    .bind(t)
    .execute(&mut **tx)
    .await?;
    contracts::start(tx, &id, plan_id, t).await?;
    let key = keys::insert_key(tx, &id).await?;
    revision::bump(tx).await?;
    let data = event_data(tx, &id).await?;
    webhooks::enqueue_many(
        tx,
        &[
            Event::ApplicationCreated(data),
            Event::KeyCreated(keys::event_data(&key.key_object, account_id)),
        ],
    )
    .await?;
    Ok((id, key))
}

async fn created(pool: &Pool, id: &str, key: NewKey) -> DomainResult<CreatedApplication> {
    Ok(CreatedApplication {
        application: get(pool, id).await?,
        key: key.key,
        key_id: key.key_object.id,
    })
}

/// Creates an application (admin): account and plan must exist; its first key is in the answer.
pub async fn create(
    pool: &Pool,
    actor: &Actor,
    input: &AppInput,
) -> DomainResult<CreatedApplication> {
    let account_id = input.account_id.as_deref().ok_or_else(|| {
        DomainError::invalid("account_id", "missing_field", "account_id is required")
    })?;
    let plan_id = input
        .plan_id
        .as_deref()
        .ok_or_else(|| DomainError::invalid("plan_id", "missing_field", "plan_id is required"))?;
    let name = check_name("name", input.name.as_deref().unwrap_or(""))?;
    let description = check_description(input.description.as_deref().unwrap_or(""))?;
    let app_id = input.app_id.as_deref().map(check_app_id).transpose()?;
    if !account::exists(pool, account_id).await? {
        return Err(DomainError::invalid(
            "account_id",
            "unknown_account",
            format!("no account with id {account_id:?}"),
        ));
    }
    if !plan_exists(pool, plan_id).await? {
        return Err(unknown_plan(plan_id));
    }
    let mut tx = crate::store::begin_write(pool).await?;
    let (id, key) = insert_application(&mut tx, account_id, plan_id, &name, &description).await?;
    if let Some(app_id) = &app_id {
        set_app_id(&mut tx, &id, app_id).await?;
    }
    let after = audited(&mut tx, &id).await?;
    let changes = Changes::between(None, Some(&after))?;
    let object = Object {
        kind: "application",
        id: &id,
    };
    audit::record(&mut tx, actor, "application.created", object, &changes).await?;
    tx.commit().await?;
    created(pool, &id, key).await
}

/// A plan a developer may put a new application on: published and not an application's copy.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OfferedPlan {
    pub id: String,
    pub name: String,
}

/// The plans developers choose from, by name.
pub async fn offered_plans(pool: &Pool) -> DomainResult<Vec<OfferedPlan>> {
    Ok(sqlx::query_as(
        "SELECT id, name FROM plans WHERE state = 'published' AND parent_plan_id IS NULL ORDER BY name, id",
    )
    .fetch_all(pool)
    .await?)
}

/// Whether `plan_id` is one of the [`offered_plans`].
pub async fn is_offered(pool: &Pool, plan_id: &str) -> DomainResult<bool> {
    let found: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM plans WHERE id = $1 AND state = 'published' AND parent_plan_id IS NULL",
    )
    .bind(plan_id)
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

/// Creates an application the account's developer asked for (name and plan checked by the
/// caller), refused once the account holds `cap` applications.
pub async fn create_for_developer(
    pool: &Pool,
    account_id: &str,
    plan_id: &str,
    name: &str,
    cap: i64,
) -> DomainResult<CreatedApplication> {
    let mut tx = crate::store::begin_write(pool).await?;
    // Lock the account row (PostgreSQL; SQLite's write lock serializes anyway) so two concurrent
    // creations cannot both see room under the cap.
    sqlx::query("UPDATE accounts SET updated_at = updated_at WHERE id = $1")
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    let (held,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applications WHERE account_id = $1")
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
    if held >= cap {
        return Err(DomainError::conflict(
            "application_limit_reached",
            format!(
                "an account creates at most {cap} applications itself; ask the provider for more"
            ),
        ));
    }
    let (id, key) = insert_application(&mut tx, account_id, plan_id, name, "").await?;
    tx.commit().await?;
    created(pool, &id, key).await
}

/// Changes the fields `input` has; a new plan ends the current contract and starts one on it.
pub async fn update(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    input: &AppInput,
) -> DomainResult<Application> {
    let a = fetch_row(pool, id).await?;
    if input
        .account_id
        .as_ref()
        .is_some_and(|acc| *acc != a.account_id)
    {
        return Err(DomainError::invalid(
            "account_id",
            "immutable",
            "an application cannot move to another account",
        ));
    }
    let name = input
        .name
        .as_deref()
        .map(|n| check_name("name", n))
        .transpose()?;
    let description = input
        .description
        .as_deref()
        .map(check_description)
        .transpose()?;
    let app_id = input.app_id.as_deref().map(check_app_id).transpose()?;
    if let Some(plan_id) = &input.plan_id {
        if !plan_exists(pool, plan_id).await? {
            return Err(unknown_plan(plan_id));
        }
    }
    let t = now();
    let name = name.unwrap_or(a.name);
    let plan_id = input.plan_id.clone().unwrap_or(a.plan_id);
    let mut tx = crate::store::begin_write(pool).await?;
    // The plan it is on now, read under the row lock: the change event names the one it leaves.
    let previous_plan_id: String = sqlx::query_scalar(&format!(
        "SELECT plan_id FROM applications WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| DomainError::not_found("application", id))?;
    let before = audited(&mut tx, id).await?;
    sqlx::query("UPDATE applications SET name = $2, description = $3, plan_id = $4, updated_at = $5 WHERE id = $1")
        .bind(id)
        .bind(&name)
        .bind(description.unwrap_or(a.description))
        .bind(&plan_id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
    contracts::rename(&mut tx, id, &name).await?;
    contracts::change_plan(&mut tx, id, &plan_id, t).await?;
    if let Some(app_id) = &app_id {
        set_app_id(&mut tx, id, app_id).await?;
    }
    let after = audited(&mut tx, id).await?;
    let changes = Changes::between(Some(&before), Some(&after))?;
    let action = if previous_plan_id != plan_id {
        "application.plan_changed"
    } else {
        "application.updated"
    };
    let object = Object {
        kind: "application",
        id,
    };
    audit::record(&mut tx, actor, action, object, &changes).await?;
    revision::bump(&mut tx).await?;
    if previous_plan_id != plan_id {
        webhooks::enqueue(
            &mut tx,
            Event::PlanChanged(PlanChangedData {
                application_id: id.to_string(),
                account_id: a.account_id.clone(),
                previous_plan_id,
                plan_id,
            }),
        )
        .await?;
    }
    tx.commit().await?;
    get(pool, id).await
}

/// Deletes an application and its keys; its contract ends (kept for billing).
pub async fn delete(pool: &Pool, actor: &Actor, id: &str) -> DomainResult<Deleted> {
    fetch_row(pool, id).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let before = audited(&mut tx, id).await?;
    let changes = Changes::between(Some(&before), None)?;
    let object = Object {
        kind: "application",
        id,
    };
    audit::record(&mut tx, actor, "application.deleted", object, &changes).await?;
    contracts::end(&mut tx, id, now()).await?;
    for table in ["application_keys", "application_app_keys"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE application_id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM applications WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(Deleted::new("application", id))
}

/// Suspends the application (reason default `admin`): gateways refuse its keys.
pub async fn suspend(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    input: &SuspendInput,
) -> DomainResult<Application> {
    fetch_row(pool, id).await?;
    let reason = input.reason.unwrap_or(SuspensionReason::Admin);
    let mut tx = crate::store::begin_write(pool).await?;
    let before = locked_state(&mut tx, id).await?;
    let old = audited(&mut tx, id).await?;
    sqlx::query("UPDATE applications SET state = 'suspended', state_reason = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(reason.as_str())
        .bind(now())
        .execute(&mut *tx)
        .await?;
    let new = audited(&mut tx, id).await?;
    let changes = Changes::between(Some(&old), Some(&new))?;
    let object = Object {
        kind: "application",
        id,
    };
    audit::record(&mut tx, actor, "application.suspended", object, &changes).await?;
    revision::bump(&mut tx).await?;
    // Only a change is an event (suspending a suspended application changes its reason only).
    if before == ApplicationState::Live {
        let data = event_data(&mut tx, id).await?;
        webhooks::enqueue(&mut tx, Event::ApplicationSuspended(data)).await?;
    }
    tx.commit().await?;
    get(pool, id).await
}

/// Makes the application live again, whatever suspended it.
pub async fn resume(pool: &Pool, actor: &Actor, id: &str) -> DomainResult<Application> {
    fetch_row(pool, id).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let before = locked_state(&mut tx, id).await?;
    let old = audited(&mut tx, id).await?;
    sqlx::query("UPDATE applications SET state = 'live', state_reason = NULL, updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now())
        .execute(&mut *tx)
        .await?;
    let new = audited(&mut tx, id).await?;
    let changes = Changes::between(Some(&old), Some(&new))?;
    let object = Object {
        kind: "application",
        id,
    };
    audit::record(&mut tx, actor, "application.resumed", object, &changes).await?;
    revision::bump(&mut tx).await?;
    if before == ApplicationState::Suspended {
        let data = event_data(&mut tx, id).await?;
        webhooks::enqueue(&mut tx, Event::ApplicationResumed(data)).await?;
    }
    tx.commit().await?;
    get(pool, id).await
}

/// The name of application `app_name`'s own copy of plan `plan_name` (cut to the name limit).
pub fn custom_plan_name(plan_name: &str, app_name: &str) -> String {
    format!("{plan_name} (custom for {app_name})")
        .chars()
        .take(crate::domain::catalog::MAX_NAME_CHARS)
        .collect()
}

/// Gives application `id` its own hidden copy of its plan (limits and pricing rules included) and
/// moves it onto the copy; answers the new plan. The application row is locked and its plan read
/// inside the write transaction, so two requests at once make one copy: the second finds the
/// application on a copy already and is refused.
pub async fn customize_plan(pool: &Pool, actor: &Actor, id: &str) -> DomainResult<Plan> {
    #[derive(sqlx::FromRow)]
    struct Current {
        name: String,
        plan_id: String,
    }
    let mut tx = crate::store::begin_write(pool).await?;
    let app: Current = sqlx::query_as(&format!(
        "SELECT name, plan_id FROM applications WHERE id = $1{}",
        crate::store::for_update()
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| DomainError::not_found("application", id))?;
    let plan = plans::find_plan(&mut *tx, &app.plan_id).await?;
    if plan.parent_plan_id.is_some() {
        return Err(DomainError::conflict(
            "already_customized",
            "the application's plan is already a customized copy",
        ));
    }
    let before = audited(&mut tx, id).await?;
    let copy =
        plans::copy_plan(&mut tx, &plan.id, &custom_plan_name(&plan.name, &app.name)).await?;
    switch_to_copy(&mut tx, id, &copy).await?;
    // One event, on the application: its plan_id moves to the copy (whose id it names; the copy
    // is the original's limits and prices, as `GET /plans/{id}` shows).
    let after = audited(&mut tx, id).await?;
    let changes = Changes::between(Some(&before), Some(&after))?;
    let object = Object {
        kind: "application",
        id,
    };
    audit::record(
        &mut tx,
        actor,
        "application.plan_customized",
        object,
        &changes,
    )
    .await?;
    tx.commit().await?;
    plans::get_plan(pool, &copy).await
}

/// Inside `tx` (where the copy `plan_id` was just made): puts application `id` on its customized
/// plan, carrying its contract over without a new billing period.
pub async fn switch_to_copy(tx: &mut Tx, id: &str, plan_id: &str) -> DomainResult<()> {
    let before = event_data(tx, id).await?;
    sqlx::query("UPDATE applications SET plan_id = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(plan_id)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    contracts::switch_to_copy(tx, id, plan_id).await?;
    revision::bump(tx).await?;
    webhooks::enqueue(
        tx,
        Event::PlanChanged(PlanChangedData {
            application_id: id.to_string(),
            account_id: before.account_id,
            previous_plan_id: before.plan_id,
            plan_id: plan_id.to_string(),
        }),
    )
    .await?;
    Ok(())
}

/// One row of a developer's list of their applications.
#[derive(Clone, Debug)]
pub struct AccountApplication {
    pub id: String,
    pub name: String,
    pub plan_name: String,
    pub state: ApplicationState,
}

#[derive(sqlx::FromRow)]
struct AccountApplicationRow {
    id: String,
    name: String,
    plan_name: String,
    state: String,
}

/// The applications of `account_id`, in id order, with their plans' names.
pub async fn of_account(pool: &Pool, account_id: &str) -> DomainResult<Vec<AccountApplication>> {
    let rows: Vec<AccountApplicationRow> = sqlx::query_as(
        "SELECT a.id, a.name, p.name AS plan_name, a.state FROM applications a JOIN plans p ON p.id = a.plan_id WHERE a.account_id = $1 ORDER BY a.id",
    )
    .bind(account_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(AccountApplication {
                state: ApplicationState::parse(&r.state)?,
                id: r.id,
                name: r.name,
                plan_name: r.plan_name,
            })
        })
        .collect()
}

/// One application of an account as its developer sees it.
#[derive(Clone, Debug)]
pub struct OwnApplication {
    pub name: String,
    pub plan_id: String,
    pub plan_name: String,
    pub state: ApplicationState,
    pub state_reason: Option<SuspensionReason>,
}

#[derive(sqlx::FromRow)]
struct OwnApplicationRow {
    name: String,
    plan_id: String,
    plan_name: String,
    state: String,
    state_reason: Option<String>,
}

/// Application `id` if it belongs to `account_id`; `None` for another account's, like a missing one.
pub async fn own(pool: &Pool, account_id: &str, id: &str) -> DomainResult<Option<OwnApplication>> {
    let row: Option<OwnApplicationRow> = sqlx::query_as(
        "SELECT a.name, a.plan_id, p.name AS plan_name, a.state, a.state_reason FROM applications a JOIN plans p ON p.id = a.plan_id WHERE a.id = $1 AND a.account_id = $2",
    )
    .bind(id)
    .bind(account_id)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(OwnApplication {
            state: ApplicationState::parse(&r.state)?,
            state_reason: SuspensionReason::parse_stored(r.state_reason.as_deref())?,
            name: r.name,
            plan_id: r.plan_id,
            plan_name: r.plan_name,
        })
    })
    .transpose()
}

/// A plan an admin may put an application on, as the admin portal's form lists it.
#[derive(Clone, Debug)]
pub struct PlanChoice {
    pub id: String,
    pub name: String,
    pub state: String,
    /// An application's own copy (not offered for new applications).
    pub custom: bool,
}

#[derive(sqlx::FromRow)]
struct PlanChoiceRow {
    id: String,
    name: String,
    state: String,
    parent_plan_id: Option<String>,
}

/// The first `limit` plans in id order (the admin portal's choice of plans).
pub async fn plan_choices(pool: &Pool, limit: i64) -> DomainResult<Vec<PlanChoice>> {
    let rows: Vec<PlanChoiceRow> =
        sqlx::query_as("SELECT id, name, state, parent_plan_id FROM plans ORDER BY id LIMIT $1")
            .bind(limit)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|r| PlanChoice {
            custom: r.parent_plan_id.is_some(),
            id: r.id,
            name: r.name,
            state: r.state,
        })
        .collect())
}
