//! Application keys.
//!
//! A key is 192 random bits, shown exactly once (in the response that creates it) and stored as
//! SHA-256. An application holds at most [`MAX_ACTIVE_KEYS`] active keys. Rotating a key creates
//! a new one and lets the old one keep working for a grace period (default
//! [`DEFAULT_ROTATION_GRACE_SECS`], at most [`MAX_ROTATION_GRACE_SECS`]) so clients can switch
//! without an outage; keys in their grace period do not count against that limit, but every live
//! key (active or in grace) counts against [`MAX_LIVE_KEYS`], a hard cap well below the filter's
//! per-application bound ([`tollgate_rules::names::MAX_KEYS_PER_APPLICATION`]), and an
//! application is rotated at most [`crate::rate_limit::MAX_ROTATIONS_PER_APPLICATION_PER_HOUR`]
//! times an hour. Every writer (admin API, CLI, admin and developer portals) goes through
//! [`insert_key`] and [`rotate`].
//!
//! Keys brought from elsewhere (issue 22: moving in from 3scale without re-keying customers):
//! [`add`] takes an existing key's value (checked: at least [`MIN_IMPORTED_KEY_CHARS`] characters,
//! and nothing a gateway would refuse to read, see [`tollgate_rules::names::credential_problem`])
//! or only its SHA-256, and stores the digest as for a generated key; it is never echoed back,
//! and its listed `prefix` is `sha256:` and the digest's first characters (a prefix of a short
//! imported key would give part of it away). A digest already held by another application is a
//! conflict (`key_in_use`, 409), never a merge: the unique index on `key_sha256` decides between
//! concurrent requests on both databases. The same key added again to the same application is
//! idempotent: answered 200 with the key as it is, nothing written.

use serde::{Deserialize, Serialize};

use super::account::Deleted;
use super::applications;
use crate::domain::audit::{self, Actor, Changes, Object};
use crate::domain::catalog::revision;
use crate::domain::webhooks::events::KeyData;
use crate::domain::webhooks::{self, Event};
use crate::domain::{DomainError, DomainResult, Page};
use crate::secrets::{key_prefix, new_api_key, new_id, sha256_hex};
use crate::store::{self, now, Backend, Pool, Tx};

pub const MAX_ACTIVE_KEYS: i64 = 5;
/// Most live keys (active plus in their grace period) an application holds at once.
pub const MAX_LIVE_KEYS: i64 = 10;
const _: () = assert!(
    MAX_LIVE_KEYS as usize * 3 / 2 <= tollgate_rules::names::MAX_KEYS_PER_APPLICATION,
    "the live-key cap must stay well below the filter's per-application bound"
);
/// Shortest key value accepted from the caller (user keys and app keys alike): a key shorter
/// than this is guessable by brute force through a gateway. A shorter 3scale key can still be
/// brought by its digest (`key_sha256`), where its length cannot be checked.
pub const MIN_IMPORTED_KEY_CHARS: usize = 16;
/// Length of the digest part of an imported key's listed prefix (`sha256:` + this many hex).
pub const IMPORTED_PREFIX_HEX_CHARS: usize = 8;
pub const DEFAULT_ROTATION_GRACE_SECS: i64 = 24 * 3600;
pub const MAX_ROTATION_GRACE_SECS: i64 = 30 * 24 * 3600;

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    pub application_id: String,
    pub id: String,
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// The columns of [`KeyRow`], in its order.
pub(super) const KEY_COLUMNS: &str = "application_id, id, prefix, created_at, expires_at";

/// A key as listed: never the key itself, only its first characters.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ApplicationKey {
    /// Always `"application_key"`.
    pub object: &'static str,
    pub id: String,
    pub application_id: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_at: i64,
    /// `null` while active; set when the key was rotated (it works until then).
    pub expires_at: Option<i64>,
}

impl From<KeyRow> for ApplicationKey {
    fn from(k: KeyRow) -> ApplicationKey {
        ApplicationKey {
            object: "application_key",
            id: k.id,
            application_id: k.application_id,
            prefix: k.prefix,
            created_at: k.created_at,
            expires_at: k.expires_at,
        }
    }
}

/// A key just made: the plaintext key is in this answer only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewKey {
    #[serde(flatten)]
    pub key_object: ApplicationKey,
    /// The plaintext key, this once; it cannot be retrieved again.
    pub key: String,
}

/// A rotation's answer: the new key and when the old one stops working.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedKey {
    #[serde(flatten)]
    pub key_object: ApplicationKey,
    /// The plaintext new key, this once.
    pub key: String,
    pub replaces: Replaced,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replaced {
    /// The rotated key.
    pub id: String,
    /// It works until then.
    pub expires_at: i64,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateInput {
    /// How long the old key keeps working: 0 to 30 days in seconds, default one day.
    pub grace_seconds: Option<i64>,
}

/// What `POST /applications/{id}/keys` takes: nothing (a key is generated and shown once), an
/// existing key's value, or only its SHA-256.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    /// An existing key to keep (3scale's `user_key`, say): 16 to 256 visible ASCII characters.
    /// Stored as its SHA-256 and never shown again, not even in this answer.
    pub key: Option<String>,
    /// Only the SHA-256 of an existing key, 64 hex characters, when its value is not at hand.
    pub key_sha256: Option<String>,
}

/// A key added by [`add`]: the key object, with the plaintext `key` only when it was generated
/// (shown this once); a key brought by the caller is never echoed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddedKey {
    #[serde(flatten)]
    pub key_object: ApplicationKey,
    /// The generated key, this once; absent for a key brought by value or digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub key: Option<String>,
}

impl AddedKey {
    fn imported(key_object: ApplicationKey) -> AddedKey {
        AddedKey {
            key_object,
            key: None,
        }
    }
}

/// [`add`]'s answer: the key, and whether it was made now (false: the same key was there).
#[derive(Debug)]
pub struct Added {
    pub key: AddedKey,
    pub created: bool,
}

/// The lowercase-hex SHA-256 a caller's key stands for: from its value (checked against
/// [`MIN_IMPORTED_KEY_CHARS`] and what gateways read) or its digest (64 hex characters); `None`
/// when neither is given, both given is invalid. `value_field` and `digest_field` name the
/// fields in errors. Shared by API keys and app keys, so both refuse the same values.
pub fn imported_digest(
    value_field: &str,
    value: Option<&str>,
    digest_field: &str,
    digest: Option<&str>,
) -> DomainResult<Option<String>> {
    match (value, digest) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(DomainError::invalid(
            digest_field,
            "ambiguous_key",
            format!("send {value_field} or {digest_field}, not both"),
        )),
        (Some(v), None) => {
            if let Some(why) = tollgate_rules::names::credential_problem(v.as_bytes()) {
                return Err(DomainError::invalid(
                    value_field,
                    "invalid_key",
                    format!(
                        "a gateway would refuse this key ({why}): 1-{} visible ASCII characters, no spaces",
                        tollgate_rules::names::MAX_CREDENTIAL_BYTES
                    ),
                ));
            }
            if v.len() < MIN_IMPORTED_KEY_CHARS {
                return Err(DomainError::invalid(
                    value_field,
                    "key_too_short",
                    format!(
                        "a key has at least {MIN_IMPORTED_KEY_CHARS} characters; bring a shorter one by its {digest_field}"
                    ),
                ));
            }
            Ok(Some(sha256_hex(v)))
        }
        (None, Some(d)) => {
            if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(Some(d.to_ascii_lowercase()))
            } else {
                Err(DomainError::invalid(
                    digest_field,
                    "invalid_key_sha256",
                    "the SHA-256 of the key: 64 hex characters",
                ))
            }
        }
    }
}

/// The listed prefix of a key known by its digest only.
pub fn digest_prefix(digest: &str) -> String {
    format!(
        "sha256:{}",
        digest.get(..IMPORTED_PREFIX_HEX_CHARS).unwrap_or(digest)
    )
}

/// The first key of the PostgreSQL advisory lock held by whoever writes a key digest (an API key
/// or an app key; the second is a hash of the digest): see [`lock_digest`].
const KEY_DIGEST_LOCK_CLASS: i32 = 18;

/// Serializes, across transactions and replicas, the writers of one digest as an API key and as
/// an app key, so the check that it is not the other kind and the insert are one step. On
/// PostgreSQL an advisory lock (the unique indexes cannot span the two tables); SQLite's write
/// transactions are serial already.
pub(super) async fn lock_digest(tx: &mut Tx, digest: &str) -> DomainResult<()> {
    if store::backend() == Backend::Postgres {
        sqlx::query(&format!(
            "SELECT pg_advisory_xact_lock({KEY_DIGEST_LOCK_CLASS}, hashtext($1))"
        ))
        .bind(digest)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// An API key and an app key may not share a value: whoever holds the app key (the customer of
/// the app_id's application) would open the API key's application alone with it.
pub(super) fn key_is_other_kind(field: &'static str) -> DomainError {
    DomainError::Conflict {
        code: "key_in_use",
        message: "this value is already a key of the other kind (API key or app key); an API key may not also be an app key".into(),
        param: Some(field.into()),
    }
}

fn key_in_use() -> DomainError {
    DomainError::Conflict {
        code: "key_in_use",
        message: "this key belongs to another application; keys are never shared or merged".into(),
        param: Some("key".into()),
    }
}

/// The live keys (active, and rotated ones in their grace period) of applications `app_ids`, in
/// id order: one query for a whole page of applications.
pub(super) async fn live_of(pool: &Pool, app_ids: &[&str]) -> DomainResult<Vec<KeyRow>> {
    if app_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (2..=app_ids.len() + 1)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM application_keys \
         WHERE (expires_at IS NULL OR expires_at > $1) AND application_id IN ({placeholders}) ORDER BY id"
    );
    let mut q = sqlx::query_as::<_, KeyRow>(&sql).bind(now());
    for id in app_ids {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(pool).await?)
}

/// The live keys of application `app_id`, oldest first.
pub async fn live(pool: &Pool, app_id: &str) -> DomainResult<Vec<ApplicationKey>> {
    Ok(live_of(pool, &[app_id])
        .await?
        .into_iter()
        .map(ApplicationKey::from)
        .collect())
}

/// The live keys of application `app_id` as one page (not found if there is no such
/// application): an application holds at most [`MAX_LIVE_KEYS`].
pub async fn list(pool: &Pool, app_id: &str) -> DomainResult<Page<ApplicationKey>> {
    applications::must_exist(pool, app_id).await?;
    Ok(Page {
        object: "list",
        data: live(pool, app_id).await?,
        has_more: false,
        next_cursor: None,
    })
}

/// Inserts a new key for `app_id` inside `tx`, refusing past [`MAX_LIVE_KEYS`] live or
/// [`MAX_ACTIVE_KEYS`] active keys; returns the key and its plaintext (never stored). The caller
/// bumps the catalog revision in the same transaction.
pub(super) async fn insert_key(tx: &mut Tx, app_id: &str) -> DomainResult<NewKey> {
    lock_application(tx, app_id).await?;
    check_room(tx, app_id).await?;
    let key = new_api_key();
    let made = insert_row(tx, app_id, &sha256_hex(&key), key_prefix(&key)).await?;
    Ok(NewKey {
        key_object: made,
        key,
    })
}

/// Inserts one active key row (digest and listed prefix) for `app_id`.
async fn insert_row(
    tx: &mut Tx,
    app_id: &str,
    digest: &str,
    prefix: String,
) -> Result<ApplicationKey, sqlx::Error> {
    let made = ApplicationKey {
        object: "application_key",
        id: new_id("key"),
        application_id: app_id.to_string(),
        prefix,
        created_at: now(),
        expires_at: None,
    };
    sqlx::query("INSERT INTO application_keys (id, application_id, key_sha256, prefix, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, NULL)")
        .bind(&made.id)
        .bind(app_id)
        .bind(digest)
        .bind(&made.prefix)
        .bind(made.created_at)
        .execute(&mut **tx)
        .await?;
    Ok(made)
}

/// Inserts a key brought by the caller (`digest`, from [`imported_digest`]) inside `tx`: the same
/// caps as [`insert_key`]; a digest of another application is `key_in_use` (409), also when a
/// concurrent transaction inserted it first (the unique index); this application's own active key
/// is answered as it is (`created: false`). The caller bumps the revision when `created`.
pub async fn insert_imported(tx: &mut Tx, app_id: &str, digest: &str) -> DomainResult<Added> {
    #[derive(sqlx::FromRow)]
    struct Holder {
        application_id: String,
        expires_at: Option<i64>,
    }
    // A key whose grace ran out is dead but may wait for the hourly purge: it blocks no one.
    sqlx::query(
        "DELETE FROM application_keys WHERE key_sha256 = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
    )
    .bind(digest)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    // After the lock: a concurrent add of the same key to this application finds it here.
    lock_application(tx, app_id).await?;
    lock_digest(tx, digest).await?;
    let app_key: Option<(String,)> =
        sqlx::query_as("SELECT id FROM application_app_keys WHERE key_sha256 = $1 LIMIT 1")
            .bind(digest)
            .fetch_optional(&mut **tx)
            .await?;
    if app_key.is_some() {
        return Err(key_is_other_kind("key"));
    }
    let holder: Option<Holder> = sqlx::query_as(
        "SELECT application_id, expires_at FROM application_keys WHERE key_sha256 = $1",
    )
    .bind(digest)
    .fetch_optional(&mut **tx)
    .await?;
    match holder {
        Some(h) if h.application_id != app_id => return Err(key_in_use()),
        Some(Holder {
            expires_at: Some(t),
            ..
        }) => {
            return Err(DomainError::conflict(
                "key_rotated",
                format!(
                "this key was rotated and stops working at {t}; revoke it before adding it again"
            ),
            ))
        }
        Some(_) => {
            let mine: KeyRow = sqlx::query_as(&format!(
                "SELECT {KEY_COLUMNS} FROM application_keys WHERE key_sha256 = $1"
            ))
            .bind(digest)
            .fetch_one(&mut **tx)
            .await?;
            return Ok(Added {
                key: AddedKey::imported(mine.into()),
                created: false,
            });
        }
        None => {}
    }
    check_room(tx, app_id).await?;
    match insert_row(tx, app_id, digest, digest_prefix(digest)).await {
        Ok(made) => Ok(Added {
            key: AddedKey::imported(made),
            created: true,
        }),
        Err(e) if crate::store::is_unique_violation(&e) => Err(key_in_use()),
        Err(e) => Err(e.into()),
    }
}

/// Adds a key to application `app_id`: generated when `input` is empty, else the caller's (see
/// [`insert_imported`]). The revision moves only when a key was written.
pub async fn add(
    pool: &Pool,
    actor: &Actor,
    app_id: &str,
    input: &KeyInput,
) -> DomainResult<Added> {
    let digest = imported_digest(
        "key",
        input.key.as_deref(),
        "key_sha256",
        input.key_sha256.as_deref(),
    )?;
    applications::must_exist(pool, app_id).await?;
    let Some(digest) = digest else {
        let made = create(pool, actor, app_id).await?;
        return Ok(Added {
            key: AddedKey {
                key_object: made.key_object,
                key: Some(made.key),
            },
            created: true,
        });
    };
    let mut tx = crate::store::begin_write(pool).await?;
    let added = insert_imported(&mut tx, app_id, &digest).await?;
    if added.created {
        revision::bump(&mut tx).await?;
        // An imported key is a key created here as much as a generated one.
        let account_id = account_of(&mut tx, app_id).await?;
        let data = event_data(&added.key.key_object, &account_id);
        let object = Object {
            kind: "application_key",
            id: &data.key_id,
        };
        let changes = Changes::between(None, Some(&data))?;
        audit::record(&mut tx, actor, "application_key.imported", object, &changes).await?;
        webhooks::enqueue(&mut tx, Event::KeyCreated(data)).await?;
        tx.commit().await?;
    }
    Ok(added)
}

/// Locks application `app_id`'s row, so two concurrent requests cannot both see room for a key
/// (PostgreSQL row lock; SQLite's write lock serializes anyway).
pub(super) async fn lock_application(tx: &mut Tx, app_id: &str) -> DomainResult<()> {
    sqlx::query("UPDATE applications SET updated_at = $2 WHERE id = $1")
        .bind(app_id)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Refuses past [`MAX_LIVE_KEYS`] live or [`MAX_ACTIVE_KEYS`] active keys (the row is locked).
async fn check_room(tx: &mut Tx, app_id: &str) -> DomainResult<()> {
    let (active,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM application_keys WHERE application_id = $1 AND expires_at IS NULL",
    )
    .bind(app_id)
    .fetch_one(&mut **tx)
    .await?;
    let (live,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM application_keys WHERE application_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(app_id)
    .bind(now())
    .fetch_one(&mut **tx)
    .await?;
    if live >= MAX_LIVE_KEYS {
        return Err(DomainError::conflict(
            "live_key_limit_reached",
            format!(
                "an application has at most {MAX_LIVE_KEYS} live keys, counting rotated keys in their grace period; revoke one"
            ),
        ));
    }
    if active >= MAX_ACTIVE_KEYS {
        return Err(DomainError::conflict(
            "key_limit_reached",
            format!(
                "an application has at most {MAX_ACTIVE_KEYS} active keys; revoke or rotate one"
            ),
        ));
    }
    Ok(())
}

/// Key `key` of an application of `account_id` as the `key.*` events carry it.
pub fn event_data(key: &ApplicationKey, account_id: &str) -> KeyData {
    KeyData {
        key_id: key.id.clone(),
        application_id: key.application_id.clone(),
        account_id: account_id.to_string(),
        prefix: Some(key.prefix.clone()),
        replaced_key_id: None,
        replaced_key_expires_at: None,
    }
}

/// The account of application `app_id`, read inside `tx`.
async fn account_of(tx: &mut Tx, app_id: &str) -> DomainResult<String> {
    sqlx::query_scalar("SELECT account_id FROM applications WHERE id = $1")
        .bind(app_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| DomainError::not_found("application", app_id))
}

/// Makes another active key for application `app_id`.
pub async fn create(pool: &Pool, actor: &Actor, app_id: &str) -> DomainResult<NewKey> {
    applications::must_exist(pool, app_id).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let made = insert_key(&mut tx, app_id).await?;
    revision::bump(&mut tx).await?;
    let account_id = account_of(&mut tx, app_id).await?;
    let data = event_data(&made.key_object, &account_id);
    let object = Object {
        kind: "application_key",
        id: &data.key_id,
    };
    let changes = Changes::between(None, Some(&data))?;
    audit::record(&mut tx, actor, "application_key.created", object, &changes).await?;
    webhooks::enqueue(&mut tx, Event::KeyCreated(data)).await?;
    tx.commit().await?;
    Ok(made)
}

/// Revokes key `key_id` of application `app_id` at once (no grace period).
pub async fn revoke(
    pool: &Pool,
    actor: &Actor,
    app_id: &str,
    key_id: &str,
) -> DomainResult<Deleted> {
    applications::must_exist(pool, app_id).await?;
    let mut tx = crate::store::begin_write(pool).await?;
    let prefix: Option<String> = sqlx::query_scalar(
        "SELECT prefix FROM application_keys WHERE application_id = $1 AND id = $2",
    )
    .bind(app_id)
    .bind(key_id)
    .fetch_optional(&mut *tx)
    .await?;
    let r = sqlx::query("DELETE FROM application_keys WHERE application_id = $1 AND id = $2")
        .bind(app_id)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(DomainError::not_found("key", key_id));
    }
    revision::bump(&mut tx).await?;
    let account_id = account_of(&mut tx, app_id).await?;
    let data = KeyData {
        key_id: key_id.to_string(),
        application_id: app_id.to_string(),
        account_id,
        prefix,
        replaced_key_id: None,
        replaced_key_expires_at: None,
    };
    let object = Object {
        kind: "application_key",
        id: key_id,
    };
    let changes = Changes::between(Some(&data), None)?;
    audit::record(&mut tx, actor, "application_key.revoked", object, &changes).await?;
    webhooks::enqueue(&mut tx, Event::KeyRevoked(data)).await?;
    tx.commit().await?;
    Ok(Deleted::new("application_key", key_id))
}

/// Checks a requested grace period (absent: [`DEFAULT_ROTATION_GRACE_SECS`]).
pub fn grace_of(input: &RotateInput) -> DomainResult<i64> {
    let grace = input.grace_seconds.unwrap_or(DEFAULT_ROTATION_GRACE_SECS);
    if !(0..=MAX_ROTATION_GRACE_SECS).contains(&grace) {
        return Err(DomainError::invalid(
            "grace_seconds",
            "invalid_grace",
            format!("0-{MAX_ROTATION_GRACE_SECS} seconds"),
        ));
    }
    Ok(grace)
}

/// Replaces active key `key_id` of `app_id`: the old one keeps working for `grace` seconds; returns
/// the new key (plaintext, to show once). Refused (rate-limited) past the application's rotation
/// rate and (conflict) when the new key would exceed [`MAX_LIVE_KEYS`]; nothing is written then.
/// The application must exist (checked by the caller); the revision is bumped here.
pub async fn rotate(
    limits: &crate::rate_limit::Limiter,
    pool: &Pool,
    actor: &Actor,
    app_id: &str,
    key_id: &str,
    grace: i64,
) -> DomainResult<RotatedKey> {
    if let Some(retry_after) = limits.rotation_blocked(app_id) {
        return Err(DomainError::RateLimited {
            code: "rotation_rate_limited",
            message: format!(
                "an application's keys are rotated at most {} times an hour",
                crate::rate_limit::MAX_ROTATIONS_PER_APPLICATION_PER_HOUR
            ),
            retry_after,
        });
    }
    let mut tx = crate::store::begin_write(pool).await?;
    // The application row first, as in insert_key: concurrent rotations then queue here.
    sqlx::query("UPDATE applications SET updated_at = $2 WHERE id = $1")
        .bind(app_id)
        .bind(now())
        .execute(&mut *tx)
        .await?;
    let expires_at = now() + grace;
    let r = sqlx::query("UPDATE application_keys SET expires_at = $3 WHERE application_id = $1 AND id = $2 AND expires_at IS NULL")
        .bind(app_id)
        .bind(key_id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(DomainError::not_found("active key", key_id));
    }
    let made = insert_key(&mut tx, app_id).await?;
    revision::bump(&mut tx).await?;
    let account_id = account_of(&mut tx, app_id).await?;
    let data = KeyData {
        replaced_key_id: Some(key_id.to_string()),
        replaced_key_expires_at: Some(expires_at),
        ..event_data(&made.key_object, &account_id)
    };
    let object = Object {
        kind: "application_key",
        id: &data.key_id,
    };
    let changes = Changes::between(None, Some(&data))?;
    audit::record(&mut tx, actor, "application_key.rotated", object, &changes).await?;
    webhooks::enqueue(&mut tx, Event::KeyRotated(data)).await?;
    tx.commit().await?;
    // Only rotations that happen count (a refused one leaves the window as it was).
    limits.rotated(app_id);
    Ok(RotatedKey {
        key_object: made.key_object,
        key: made.key,
        replaces: Replaced {
            id: key_id.to_string(),
            expires_at,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: DomainResult<Option<String>>) -> (&'static str, Option<String>) {
        match r {
            Err(DomainError::Invalid { code, param, .. }) => (code, param),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// What the API refuses is what a gateway would refuse, plus the minimum length; a digest is
    /// taken in either case and stored lowercase.
    #[test]
    fn imported_keys_are_checked_like_the_gateway_reads_them() {
        let digest = |v: Option<&str>, d: Option<&str>| imported_digest("key", v, "key_sha256", d);
        assert_eq!(digest(None, None).unwrap(), None);
        let ok = "k".repeat(MIN_IMPORTED_KEY_CHARS);
        assert_eq!(digest(Some(&ok), None).unwrap(), Some(sha256_hex(&ok)));
        let longest = "~".repeat(tollgate_rules::names::MAX_CREDENTIAL_BYTES);
        assert!(digest(Some(&longest), None).is_ok());
        let short = "k".repeat(MIN_IMPORTED_KEY_CHARS - 1);
        assert_eq!(
            code(digest(Some(&short), None)),
            ("key_too_short", Some("key".into()))
        );
        for bad in [
            String::new(),
            "~".repeat(tollgate_rules::names::MAX_CREDENTIAL_BYTES + 1),
            "0123456789abcdef ghi".into(),
            "0123456789abcdef\u{7f}".into(),
            "0123456789abcdef\n".into(),
            "0123456789abcdefñ".into(),
        ] {
            assert_eq!(
                code(digest(Some(&bad), None)),
                ("invalid_key", Some("key".into())),
                "{bad:?}"
            );
        }
        let upper = "AB".repeat(32);
        assert_eq!(digest(None, Some(&upper)).unwrap(), Some("ab".repeat(32)));
        for bad in ["ab".repeat(31), "zz".repeat(32), "ab".repeat(33)] {
            assert_eq!(
                code(digest(None, Some(&bad))),
                ("invalid_key_sha256", Some("key_sha256".into()))
            );
        }
        assert_eq!(
            code(digest(Some(&ok), Some(&upper))),
            ("ambiguous_key", Some("key_sha256".into()))
        );
        assert_eq!(digest_prefix(&"ab".repeat(32)), "sha256:abababab");
    }
}
