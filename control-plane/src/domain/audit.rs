//! The audit log: who changed what, when and from where. Every admin write (admin API, admin
//! portal, and the CLI commands that write the database directly) calls [`record`] inside the
//! transaction of its write, like `revision::bump`: a write that rolls back leaves no event, a
//! committed one always has its event. Append-only: this module has no update or delete, and the
//! purge never removes an event (see docs/operations.md, "Audit log").
//!
//! Changes are built from the typed objects the API shows ([`Changes::between`] diffs their
//! serialized fields), so a secret the API never shows (a key's digest, a sealed gateway
//! credential) cannot reach the log; fields that do carry a secret when shown once (a created
//! token, a webhook secret) are named in [`REDACTED_FIELDS`] and replaced by [`REDACTED`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::page::page;
use crate::domain::{DomainError, DomainResult, Page, PageRequest};
use crate::secrets::new_id;
use crate::store::{now, Pool, Tx};

/// What stands in for a secret field's value, before and after: that it changed is recorded,
/// never what it is.
pub const REDACTED: &str = "[redacted]";

/// Fields whose values are secrets wherever they appear in an audited object: plaintext keys,
/// tokens, passwords, payment gateway credentials and webhook signing secrets. Matched by name at
/// the top level and inside nested objects.
pub const REDACTED_FIELDS: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "secret_key",
    "private_key",
    "public_key",
    "webhook_secret",
    "api_key",
    "digest",
    "key_digest",
    "sha256",
];

/// Fields not worth an entry: they change on every write.
const IGNORED_FIELDS: &[&str] = &["updated_at"];

/// The longest filter value accepted (longer ones cannot match an id or action).
pub const MAX_FILTER_CHARS: usize = 200;

/// How the writer reached Tollgate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorType {
    /// An admin API token (`actor_id` is its id, or `env` for TOLLGATE_ADMIN_TOKEN).
    Token,
    /// The admin portal (`actor_id` is the id of the token the session was opened with).
    Session,
    /// A command writing the database directly (`tollgate import`, `token create`).
    Cli,
    /// A developer in the developer portal, writing their own account's objects (`actor_id` is
    /// the account's id): recorded where a domain writer admins share is also theirs (a key
    /// rotation).
    Account,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::Token => "token",
            ActorType::Session => "session",
            ActorType::Cli => "cli",
            ActorType::Account => "account",
        }
    }

    fn stored(raw: &str) -> DomainResult<ActorType> {
        [
            ActorType::Token,
            ActorType::Session,
            ActorType::Cli,
            ActorType::Account,
        ]
        .into_iter()
        .find(|a| a.as_str() == raw)
        .ok_or_else(|| DomainError::Internal(format!("stored actor type {raw:?} is unknown")))
    }
}

/// Who is writing: filled by the HTTP layer (token), the admin portal (session) or the CLI, and
/// passed down to the domain writers. Never holds a secret: only ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorType,
    pub id: String,
    /// The client address (see `web::client_ip`); `None` for the CLI and in-process calls.
    pub ip: Option<String>,
}

impl Actor {
    pub fn token(token_id: &str, ip: Option<String>) -> Actor {
        Actor {
            kind: ActorType::Token,
            id: token_id.to_string(),
            ip,
        }
    }

    pub fn session(token_id: &str, ip: Option<String>) -> Actor {
        Actor {
            kind: ActorType::Session,
            id: token_id.to_string(),
            ip,
        }
    }

    pub fn account(account_id: &str, ip: Option<String>) -> Actor {
        Actor {
            kind: ActorType::Account,
            id: account_id.to_string(),
            ip,
        }
    }

    pub fn cli() -> Actor {
        Actor {
            kind: ActorType::Cli,
            id: "cli".into(),
            ip: None,
        }
    }
}

/// The object a write is about.
#[derive(Clone, Copy, Debug)]
pub struct Object<'a> {
    /// `service`, `plan`, `account`, ... (the `object` field of the API's answer).
    pub kind: &'a str,
    pub id: &'a str,
}

/// One field's values before and after a write (`null` when the object did not exist).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// `null` when the object did not exist yet.
    #[schema(schema_with = any_json)]
    pub before: Value,
    /// `null` when the object was deleted.
    #[schema(schema_with = any_json)]
    pub after: Value,
}

/// Any JSON value, spelled as the list of every JSON type: an empty schema (`{}`) says the same in
/// OpenAPI 3.1 but does not survive a round trip through utoipa's own model, which the contract
/// test makes of the whole document.
fn any_json() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    let every = [
        Type::String,
        Type::Number,
        Type::Integer,
        Type::Boolean,
        Type::Array,
        Type::Object,
        Type::Null,
    ];
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter(every))
        .description(Some("Any JSON value (the field as the API shows it)"))
        .build()
}

/// The changed fields of one write, by field name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes(pub std::collections::BTreeMap<String, Change>);

impl Changes {
    /// The fields that differ between two serialized states of an object (`None`: it did not
    /// exist, before a create or after a delete), secrets redacted.
    pub fn between<T: Serialize>(before: Option<&T>, after: Option<&T>) -> DomainResult<Changes> {
        let fields = |v: Option<&T>| -> DomainResult<Map<String, Value>> {
            match v.map(serde_json::to_value).transpose() {
                Ok(Some(Value::Object(m))) => Ok(m),
                Ok(_) => Ok(Map::new()),
                Err(e) => Err(DomainError::Internal(format!("audited object: {e}"))),
            }
        };
        let (b, a) = (fields(before)?, fields(after)?);
        let mut changes = Changes::default();
        for name in b.keys().chain(a.keys()) {
            if IGNORED_FIELDS.contains(&name.as_str()) || changes.0.contains_key(name) {
                continue;
            }
            let (old, new) = (
                b.get(name).cloned().unwrap_or(Value::Null),
                a.get(name).cloned().unwrap_or(Value::Null),
            );
            if old != new {
                changes.0.insert(
                    name.clone(),
                    Change {
                        before: redacted(name, old),
                        after: redacted(name, new),
                    },
                );
            }
        }
        Ok(changes)
    }

    /// Changes given field by field (for writes that have no object to diff, e.g. a suspension).
    pub fn of(fields: &[(&str, Value, Value)]) -> Changes {
        Changes(
            fields
                .iter()
                .map(|(name, before, after)| {
                    let change = Change {
                        before: redacted(name, before.clone()),
                        after: redacted(name, after.clone()),
                    };
                    (name.to_string(), change)
                })
                .collect(),
        )
    }
}

/// A value with its secrets replaced: the whole of it when the field is a secret, otherwise
/// every secret field of the objects inside it.
fn redacted(name: &str, v: Value) -> Value {
    if v.is_null() {
        return v;
    }
    if REDACTED_FIELDS.contains(&name) {
        return Value::String(REDACTED.into());
    }
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.clone(), redacted(&k, v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| redacted("", v)).collect()),
        other => other,
    }
}

/// Appends one event inside `tx`, the transaction of the write it records.
pub async fn record(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    object: Object<'_>,
    changes: &Changes,
) -> DomainResult<()> {
    let changes = serde_json::to_string(changes)
        .map_err(|e| DomainError::Internal(format!("audit changes: {e}")))?;
    sqlx::query(
        "INSERT INTO audit_events (id, created_at, actor_type, actor_id, ip, action, object_type, object_id, changes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new_id("aud"))
    .bind(now())
    .bind(actor.kind.as_str())
    .bind(&actor.id)
    .bind(&actor.ip)
    .bind(action)
    .bind(object.kind)
    .bind(object.id)
    .bind(changes)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An audit event as the admin API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Always `"audit_event"`.
    pub object: &'static str,
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    pub actor_type: ActorType,
    /// The admin token's id (`env` for TOLLGATE_ADMIN_TOKEN), or `cli`.
    pub actor_id: String,
    /// The client address; `null` for the CLI.
    pub ip: Option<String>,
    /// `<object type>.<verb>`, e.g. `plan.updated`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    /// The changed fields, by name; secrets are `"[redacted]"`.
    pub changes: std::collections::BTreeMap<String, Change>,
}

#[derive(Clone, sqlx::FromRow)]
struct EventRow {
    id: String,
    created_at: i64,
    actor_type: String,
    actor_id: String,
    ip: Option<String>,
    action: String,
    object_type: String,
    object_id: String,
    changes: String,
}

impl TryFrom<EventRow> for AuditEvent {
    type Error = DomainError;

    fn try_from(r: EventRow) -> DomainResult<AuditEvent> {
        let changes: Changes = serde_json::from_str(&r.changes)
            .map_err(|e| DomainError::Internal(format!("stored audit changes: {e}")))?;
        Ok(AuditEvent {
            object: "audit_event",
            actor_type: ActorType::stored(&r.actor_type)?,
            id: r.id,
            created_at: r.created_at,
            actor_id: r.actor_id,
            ip: r.ip,
            action: r.action,
            object_type: r.object_type,
            object_id: r.object_id,
            changes: changes.0,
        })
    }
}

/// Which events to list; empty strings and `None` match everything.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub object_type: String,
    pub object_id: String,
    pub actor_id: String,
    pub action: String,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
}

/// A page of events in id (so time) order, oldest first like every other list.
pub async fn list(
    pool: &Pool,
    req: &PageRequest,
    f: &AuditFilter,
) -> DomainResult<Page<AuditEvent>> {
    for (field, v) in [
        ("object_type", &f.object_type),
        ("object_id", &f.object_id),
        ("actor", &f.actor_id),
        ("action", &f.action),
    ] {
        if v.chars().count() > MAX_FILTER_CHARS {
            return Err(DomainError::invalid(
                field,
                "too_long",
                format!("{field} is at most {MAX_FILTER_CHARS} characters"),
            ));
        }
    }
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT id, created_at, actor_type, actor_id, ip, action, object_type, object_id, changes FROM audit_events \
         WHERE id > $1 AND ($2 = '' OR object_type = $2) AND ($3 = '' OR object_id = $3) \
         AND ($4 = '' OR actor_id = $4) AND ($5 = '' OR action = $5) \
         AND created_at >= $6 AND created_at < $7 ORDER BY id LIMIT $8",
    )
    .bind(&req.after)
    .bind(&f.object_type)
    .bind(&f.object_id)
    .bind(&f.actor_id)
    .bind(&f.action)
    .bind(f.since.unwrap_or(i64::MIN))
    .bind(f.until.unwrap_or(i64::MAX))
    .bind(req.limit + 1)
    .fetch_all(pool)
    .await?;
    page(rows, req.limit, |r| &r.id).try_map(|r| AuditEvent::try_from(r.clone()))
}
