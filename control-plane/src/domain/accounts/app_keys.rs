//! App keys: 3scale's second credential model. An application with an `app_id` holds up to
//! [`MAX_APP_KEYS`] app keys; a client presents the `app_id` with one of them (`?app_id=&app_key=`
//! or the `app-id` / `app-key` headers) and a gateway admits the pair when the key's SHA-256 is
//! one of that application's. An app key alone opens nothing, so unlike API keys two applications
//! may hold the same one (3scale allows it); one application holds a value once, and adding it
//! again is idempotent (200, nothing written). Values are checked like imported API keys
//! ([`keys::imported_digest`]: at least [`keys::MIN_IMPORTED_KEY_CHARS`] characters, nothing a
//! gateway would refuse), or brought as a digest; they are stored as SHA-256 and never shown:
//! a listed app key has an id and `sha256:` with its digest's first characters.

use serde::{Deserialize, Serialize};

use super::account::Deleted;
use super::{applications, keys};
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::catalog::revision;
use crate::domain::{DomainError, DomainResult, Page};
use crate::secrets::new_id;
use crate::store::{now, Pool, Tx};

/// Most app keys an application holds (3scale's limit).
pub const MAX_APP_KEYS: i64 = 5;
const _: () = assert!(
    MAX_APP_KEYS as usize <= tollgate_rules::names::MAX_KEYS_PER_APPLICATION,
    "a gateway must take every app key an application may hold"
);

/// What `POST /applications/{id}/app_keys` takes: the value, or only its SHA-256.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppKeyInput {
    /// The app key: 16 to 256 visible ASCII characters; stored as SHA-256, never shown again.
    pub value: Option<String>,
    /// Only its SHA-256, 64 hex characters.
    pub value_sha256: Option<String>,
}

/// An app key as listed: never its value.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct AppKey {
    /// Always `"app_key"`.
    #[sqlx(skip)]
    pub object: &'static str,
    pub id: String,
    pub application_id: String,
    /// `sha256:` and the first characters of the value's SHA-256, to tell app keys apart.
    #[sqlx(skip)]
    pub prefix: String,
    #[serde(skip)]
    pub key_sha256: String,
    pub created_at: i64,
}

impl AppKey {
    fn shown(mut self) -> AppKey {
        self.object = "app_key";
        self.prefix = keys::digest_prefix(&self.key_sha256);
        self
    }
}

/// [`add`]'s answer: the app key and whether it was written now.
#[derive(Debug)]
pub struct AddedAppKey {
    pub app_key: AppKey,
    pub created: bool,
}

const COLUMNS: &str = "id, application_id, key_sha256, created_at";

/// The app keys of application `app_id`, oldest first.
pub async fn of_application(
    db: impl sqlx::Executor<'_, Database = sqlx::Any>,
    app_id: &str,
) -> DomainResult<Vec<AppKey>> {
    let rows: Vec<AppKey> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM application_app_keys WHERE application_id = $1 ORDER BY id"
    ))
    .bind(app_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(AppKey::shown).collect())
}

/// The app keys of application `app_id` as one page (at most [`MAX_APP_KEYS`]).
pub async fn list(pool: &Pool, app_id: &str) -> DomainResult<Page<AppKey>> {
    applications::must_exist(pool, app_id).await?;
    Ok(Page {
        object: "list",
        data: of_application(pool, app_id).await?,
        has_more: false,
        next_cursor: None,
    })
}

/// Adds app key `digest` (from [`keys::imported_digest`]) to `app_id` inside `tx`: the
/// application must have an `app_id`; its own key again is answered as it is; past
/// [`MAX_APP_KEYS`] it is `app_key_limit_reached` (422). The caller bumps the revision when
/// `created`.
pub async fn insert(tx: &mut Tx, app_id: &str, digest: &str) -> DomainResult<AddedAppKey> {
    // The row lock first: concurrent adds to one application queue here and see each other.
    keys::lock_application(tx, app_id).await?;
    let public: Option<(Option<String>,)> =
        sqlx::query_as("SELECT app_id FROM applications WHERE id = $1")
            .bind(app_id)
            .fetch_optional(&mut **tx)
            .await?;
    match public {
        None => return Err(DomainError::not_found("application", app_id)),
        Some((None,)) => {
            return Err(DomainError::invalid(
                "app_id",
                "app_id_required",
                "an app key opens its application only with the application's app_id: set one first (PATCH the application)",
            ))
        }
        Some((Some(_),)) => {}
    }
    let existing: Option<AppKey> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM application_app_keys WHERE application_id = $1 AND key_sha256 = $2"
    ))
    .bind(app_id)
    .bind(digest)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(k) = existing {
        return Ok(AddedAppKey {
            app_key: k.shown(),
            created: false,
        });
    }
    keys::lock_digest(tx, digest).await?;
    let api_key: Option<(String,)> =
        sqlx::query_as("SELECT id FROM application_keys WHERE key_sha256 = $1")
            .bind(digest)
            .fetch_optional(&mut **tx)
            .await?;
    if api_key.is_some() {
        return Err(keys::key_is_other_kind("value"));
    }
    let (held,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM application_app_keys WHERE application_id = $1")
            .bind(app_id)
            .fetch_one(&mut **tx)
            .await?;
    if held >= MAX_APP_KEYS {
        return Err(DomainError::invalid(
            "value",
            "app_key_limit_reached",
            format!("an application holds at most {MAX_APP_KEYS} app keys; delete one first"),
        ));
    }
    let made = AppKey {
        object: "app_key",
        id: new_id("akey"),
        application_id: app_id.to_string(),
        prefix: String::new(),
        key_sha256: digest.to_string(),
        created_at: now(),
    };
    sqlx::query(
        "INSERT INTO application_app_keys (id, application_id, key_sha256, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&made.id)
    .bind(app_id)
    .bind(digest)
    .bind(made.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(AddedAppKey {
        app_key: made.shown(),
        created: true,
    })
}

/// Adds an app key to application `app_id` (see the module's documentation).
pub async fn add(
    pool: &Pool,
    actor: &Actor,
    app_id: &str,
    input: &AppKeyInput,
) -> DomainResult<AddedAppKey> {
    let digest = keys::imported_digest(
        "value",
        input.value.as_deref(),
        "value_sha256",
        input.value_sha256.as_deref(),
    )?
    .ok_or_else(|| {
        DomainError::invalid(
            "value",
            "missing_field",
            "value (or value_sha256) is required",
        )
    })?;
    applications::must_exist(pool, app_id).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let added = insert(&mut tx, app_id, &digest).await?;
    // Adding an app key the application holds already changes nothing: no event either.
    if added.created {
        let changes = Changes::between(None, Some(&added.app_key))?;
        let object = Object {
            kind: "app_key",
            id: &added.app_key.id,
        };
        audit::record(&mut tx, actor, "app_key.created", object, &changes).await?;
        revision::bump(&mut tx).await?;
        tx.commit().await?;
    }
    Ok(added)
}

/// Deletes app key `key_id` of application `app_id`: it stops opening the application with the
/// next snapshot.
pub async fn remove(
    pool: &Pool,
    actor: &Actor,
    app_id: &str,
    key_id: &str,
) -> DomainResult<Deleted> {
    applications::must_exist(pool, app_id).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let before: Option<AppKey> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM application_app_keys WHERE application_id = $1 AND id = $2{}",
        crate::store::for_update()
    ))
    .bind(app_id)
    .bind(key_id)
    .fetch_optional(&mut *tx)
    .await?;
    let before = before
        .map(AppKey::shown)
        .ok_or_else(|| DomainError::not_found("app key", key_id))?;
    let changes = Changes::between(Some(&before), None)?;
    let object = Object {
        kind: "app_key",
        id: key_id,
    };
    audit::record(&mut tx, actor, "app_key.deleted", object, &changes).await?;
    let r = sqlx::query("DELETE FROM application_app_keys WHERE application_id = $1 AND id = $2")
        .bind(app_id)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(DomainError::not_found("app key", key_id));
    }
    revision::bump(&mut tx).await?;
    tx.commit().await?;
    Ok(Deleted::new("app_key", key_id))
}
