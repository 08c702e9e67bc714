//! The records behind `Idempotency-Key` on admin API POSTs (the protocol is in
//! `http/idempotency.rs`): a key is claimed `pending` per admin token before the request runs and
//! completed `done` with the sealed response after it, or released when the answer was a 5xx.
//! Records are purged after [`crate::domain::purge::IDEMPOTENCY_KEEP_SECS`].

use crate::domain::{DomainError, DomainResult};
use crate::store::{is_unique_violation, now, Pool};

/// Where a key's request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Claimed; the request is running (or its process died before completing it).
    Pending,
    /// The response is stored.
    Done,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Done => "done",
        }
    }

    fn stored(s: &str) -> DomainResult<KeyState> {
        match s {
            "pending" => Ok(KeyState::Pending),
            "done" => Ok(KeyState::Done),
            other => Err(DomainError::Internal(format!(
                "stored idempotency key state {other:?} is neither pending nor done"
            ))),
        }
    }
}

/// A stored answer: its status and the response body as sealed for the key's caller.
#[derive(Clone, Debug)]
pub struct StoredResponse {
    pub status: u16,
    pub sealed: String,
}

/// A key already claimed: the fingerprint of the request that claimed it, and its answer once done.
#[derive(Clone, Debug)]
pub struct ClaimedKey {
    pub request_sha256: String,
    pub response: Option<StoredResponse>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    request_sha256: String,
    state: String,
    status: Option<i64>,
    response: Option<String>,
}

impl TryFrom<KeyRow> for ClaimedKey {
    type Error = DomainError;

    fn try_from(r: KeyRow) -> DomainResult<ClaimedKey> {
        let response = match (KeyState::stored(&r.state)?, r.status, r.response) {
            (KeyState::Pending, _, _) => None,
            (KeyState::Done, Some(status), Some(sealed)) => Some(StoredResponse {
                status: u16::try_from(status).map_err(|_| {
                    DomainError::Internal(format!("stored idempotent status {status} is no status"))
                })?,
                sealed,
            }),
            (KeyState::Done, _, _) => {
                return Err(DomainError::Internal(
                    "an idempotency key is done without its stored response".into(),
                ))
            }
        };
        Ok(ClaimedKey {
            request_sha256: r.request_sha256,
            response,
        })
    }
}

/// Claims `key` for `token_id`'s request with `fingerprint`: `Ok(true)` when this request holds it
/// now, `Ok(false)` when it was claimed before (see [`claimed`]).
pub async fn claim(
    pool: &Pool,
    token_id: &str,
    key: &str,
    fingerprint: &str,
) -> DomainResult<bool> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (token_id, idem_key, request_sha256, state, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_id)
    .bind(key)
    .bind(fingerprint)
    .bind(KeyState::Pending.as_str())
    .bind(now())
    .execute(pool)
    .await;
    match claimed {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The claim on `key` of `token_id`, or `None` when it was released meanwhile.
pub async fn claimed(pool: &Pool, token_id: &str, key: &str) -> DomainResult<Option<ClaimedKey>> {
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT request_sha256, state, status, response FROM idempotency_keys WHERE token_id = $1 AND idem_key = $2",
    )
    .bind(token_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    row.map(ClaimedKey::try_from).transpose()
}

/// Releases `key` (the request failed with a 5xx): the client may retry with it.
pub async fn release(pool: &Pool, token_id: &str, key: &str) -> DomainResult<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE token_id = $1 AND idem_key = $2")
        .bind(token_id)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Stores the answer to `key`'s request: retries get it replayed.
pub async fn complete(
    pool: &Pool,
    token_id: &str,
    key: &str,
    response: &StoredResponse,
) -> DomainResult<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET state = $3, status = $4, response = $5 WHERE token_id = $1 AND idem_key = $2",
    )
    .bind(token_id)
    .bind(key)
    .bind(KeyState::Done.as_str())
    .bind(i64::from(response.status))
    .bind(&response.sealed)
    .execute(pool)
    .await?;
    Ok(())
}
