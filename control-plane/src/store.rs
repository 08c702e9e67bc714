//! The database: one `sqlx::AnyPool` over SQLite (default, a file) or PostgreSQL (by URL), and
//! migrations that run on start. The SQL is written once for both (portable types, `$N`
//! placeholders, which sqlx's SQLite driver also understands).

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};
use std::str::FromStr;

/// Connections per process. SQLite writes serialize anyway; PostgreSQL sessions are precious when
/// several replicas share one server.
pub const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a free connection before failing with 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits on a locked database before giving up.
pub const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

pub type Pool = AnyPool;
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend_of(url: &str) -> Result<Backend, String> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(format!(
            "unsupported database URL {url:?}: use sqlite://FILE or postgres://..."
        ))
    }
}

/// A SQLite URL that creates its file: `sqlite://path` alone opens read-write without creating
/// (sqlx's default), which fails on first start with "unable to open database file". Adds
/// `mode=rwc` when no mode is given and creates the file's directory; an explicit `mode=` is kept.
pub fn sqlite_url_creating(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv.starts_with("mode=")) {
        return Ok(url.to_string());
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
        }
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}mode=rwc"))
}

pub async fn connect(url: &str) -> Result<Pool, String> {
    sqlx::any::install_default_drivers();
    let backend = backend_of(url)?;
    let _ = BACKEND.set(backend);
    let url = if backend == Backend::Sqlite {
        sqlite_url_creating(url)?
    } else {
        url.to_string()
    };
    let max_connections = if backend == Backend::Sqlite {
        8
    } else {
        MAX_CONNECTIONS
    };
    open_pool(
        &url,
        backend,
        AnyPoolOptions::new().max_connections(max_connections),
    )
    .await
}

/// Connections of a [`connect_in_memory`] pool: one. A SQLite database in memory lives only as long
/// as a connection to it, and a second connection would need SQLite's shared cache, whose table
/// locks make a reader wait on another connection's open transaction where WAL (the file
/// database's mode) lets it read: one connection behaves like the file, requests queue for it.
pub const MEMORY_MAX_CONNECTIONS: u32 = 1;

/// A new, private, empty SQLite database in memory (not migrated: call [`migrate`]), with the
/// file database's pragmas. For tests of the HTTP layer in-process (`control-plane/tests/`) and
/// for trying things out; it is gone when the pool is dropped.
pub async fn connect_in_memory() -> Result<Pool, String> {
    sqlx::any::install_default_drivers();
    let _ = BACKEND.set(Backend::Sqlite);
    // The one connection is kept for the pool's life (no idle timeout, no maximum lifetime): a
    // replaced connection would open a new, empty database.
    let options = AnyPoolOptions::new()
        .max_connections(MEMORY_MAX_CONNECTIONS)
        .min_connections(MEMORY_MAX_CONNECTIONS)
        .idle_timeout(None)
        .max_lifetime(None);
    open_pool("sqlite::memory:", Backend::Sqlite, options).await
}

async fn open_pool(url: &str, backend: Backend, options: AnyPoolOptions) -> Result<Pool, String> {
    let connect_options = AnyConnectOptions::from_str(url)
        .map_err(|e| format!("bad database URL: {e}"))?
        .disable_statement_logging();
    let pool = options
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers proceed during a write; foreign keys are off by default in SQLite.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute(
                        format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str(),
                    )
                    .await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                }
                Ok(())
            })
        })
        .connect_with(connect_options)
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    Ok(pool)
}

/// Migrations in order; each runs once, in its own transaction, recorded in `tollgate_migrations`.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "catalog", include_str!("../migrations/0001_catalog.sql")),
    (2, "gateway", include_str!("../migrations/0002_gateway.sql")),
    (
        3,
        "global_usage",
        include_str!("../migrations/0003_global_usage.sql"),
    ),
    (4, "billing", include_str!("../migrations/0004_billing.sql")),
    (
        5,
        "payments",
        include_str!("../migrations/0005_payments.sql"),
    ),
    (6, "portal", include_str!("../migrations/0006_portal.sql")),
    (
        7,
        "admin_portal",
        include_str!("../migrations/0007_admin_portal.sql"),
    ),
    (
        8,
        "usage_by_time",
        include_str!("../migrations/0008_usage_by_time.sql"),
    ),
    (
        9,
        "token_expiry",
        include_str!("../migrations/0009_token_expiry.sql"),
    ),
    (
        10,
        "charge_lease",
        include_str!("../migrations/0010_charge_lease.sql"),
    ),
    (
        12,
        "admin_session_token_digest",
        include_str!("../migrations/0012_admin_session_token_digest.sql"),
    ),
    (
        13,
        "gateway_token_scope",
        include_str!("../migrations/0013_gateway_token_scope.sql"),
    ),
    (
        14,
        "one_billing_run",
        include_str!("../migrations/0014_one_billing_run.sql"),
    ),
    (
        17,
        "billing_run_millis",
        include_str!("../migrations/0017_billing_run_millis.sql"),
    ),
    (
        18,
        "usage_hot_updates",
        include_str!("../migrations/0018_usage_hot_updates.sql"),
    ),
    (
        19,
        "webhooks",
        include_str!("../migrations/0019_webhooks.sql"),
    ),
    (
        20,
        "app_keys",
        include_str!("../migrations/0020_app_keys.sql"),
    ),
    (
        21,
        "usage_alerts",
        include_str!("../migrations/0021_usage_alerts.sql"),
    ),
    (
        22,
        "audit_log",
        include_str!("../migrations/0022_audit_log.sql"),
    ),
    (
        23,
        "threescale_links",
        include_str!("../migrations/0023_threescale_links.sql"),
    ),
    (
        24,
        "webhook_due_by_endpoint",
        include_str!("../migrations/0024_webhook_due_by_endpoint.sql"),
    ),
];

/// Migrations only PostgreSQL runs: storage parameters SQLite has no syntax (and no use) for.
/// SQLite records them as applied all the same, so both keep one list of versions.
const POSTGRES_ONLY_MIGRATIONS: &[i64] = &[18];

pub async fn migrate(pool: &Pool) -> Result<usize, String> {
    let err = |e: sqlx::Error| format!("migration failed: {e}");
    pool.execute(
        "CREATE TABLE IF NOT EXISTS tollgate_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(err)?;
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS {
        let mut tx = pool.begin().await.map_err(err)?;
        let done: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM tollgate_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?;
        if done.is_some() {
            continue;
        }
        // The pool's own backend, not the process's (`backend()`): a process may open both.
        let skipped = tx.backend_name() != <sqlx::Postgres as sqlx::Database>::NAME
            && POSTGRES_ONLY_MIGRATIONS.contains(version);
        for statement in split_statements(sql).into_iter().filter(|_| !skipped) {
            tx.execute(statement.as_str())
                .await
                .map_err(|e| format!("migration {version} ({name}): {e}"))?;
        }
        sqlx::query(
            "INSERT INTO tollgate_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(*name)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        applied += 1;
    }
    Ok(applied)
}

/// Splits a migration into statements on `;` at line ends, dropping `--` comment lines.
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let t = line.trim();
        if t.starts_with("--") || t.is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if t.ends_with(';') {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Parameters per multi-row statement (and per `IN` list). Measured through sqlx: on SQLite a
/// statement's cost grows faster than its size (5,500 invoice lines: 56 ms in statements of 240
/// parameters, 370 ms at 4,800, 950 ms at 12,000); on PostgreSQL each statement is a round trip,
/// so larger ones win (the same lines: 75 ms at 240, 56 ms at 2,400). `IN` lists stay at 240.
pub const PARAMS_PER_STATEMENT: usize = 240;
pub const PARAMS_PER_STATEMENT_POSTGRES: usize = 2_400;

/// The backend of the pool this process connected (set by [`connect`]).
static BACKEND: std::sync::OnceLock<Backend> = std::sync::OnceLock::new();

/// The backend of this process's pool (SQLite until [`connect`] says otherwise).
pub fn backend() -> Backend {
    match BACKEND.get() {
        Some(Backend::Postgres) => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// `{"a","b"}`: a PostgreSQL array literal of `items`, bound as one text parameter and cast in
/// the statement (`$1::text[]`). sqlx's `Any` driver binds no arrays; a literal keeps a statement
/// of any number of values one text, prepared once, where a placeholder per value makes a new
/// statement for every count. Every element is quoted, `"` and `\` escaped: any text reads back as
/// itself (`NULL`, `{`, `,` and spaces included).
pub fn pg_text_array(items: &[&str]) -> String {
    let mut out = String::with_capacity(2 + items.iter().map(|s| s.len() + 3).sum::<usize>());
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// `{1,-2}`: a PostgreSQL array literal of integers (`$1::bigint[]`), see [`pg_text_array`].
pub fn pg_bigint_array(items: &[i64]) -> String {
    let items: Vec<String> = items.iter().map(i64::to_string).collect();
    format!("{{{}}}", items.join(","))
}

/// Parameters per statement for this process's database.
pub fn params_per_statement() -> usize {
    match BACKEND.get() {
        Some(Backend::Postgres) => PARAMS_PER_STATEMENT_POSTGRES,
        _ => PARAMS_PER_STATEMENT,
    }
}

/// Rows per multi-row statement for rows of `width` parameters.
pub fn rows_per_statement(width: usize) -> usize {
    (params_per_statement() / width.max(1)).max(1)
}

/// `($first, $first+1, ...)` with `n` placeholders: an `IN` list. Explicit lists (in chunks of
/// [`PARAMS_PER_STATEMENT`]) let both databases use the index for each value, where a subquery or a
/// range may make PostgreSQL's generic plan scan a whole table.
pub fn in_list(first: usize, n: usize) -> String {
    let items: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    format!("({})", items.join(", "))
}

/// `($1, $2), ($3, $4)` for `rows` rows of `width` parameters: the VALUES of a multi-row INSERT.
pub fn placeholders(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A transaction that will write after reading. On SQLite it is `BEGIN IMMEDIATE`: the write lock
/// is taken (waiting up to the busy timeout) before the first read, so concurrent writers queue
/// instead of failing when a read lock cannot be upgraded. On PostgreSQL a plain `BEGIN`.
pub async fn begin_write(pool: &Pool) -> Result<Tx, sqlx::Error> {
    match BACKEND.get() {
        Some(Backend::Sqlite) => pool.begin_with("BEGIN IMMEDIATE").await,
        _ => pool.begin().await,
    }
}

/// Appended to a `SELECT` inside a [`begin_write`] transaction to lock the rows it reads until
/// the transaction ends: ` FOR UPDATE` on PostgreSQL (a plain `BEGIN` locks nothing, so two
/// read-modify-write transactions would both read the old row); nothing on SQLite, where
/// `BEGIN IMMEDIATE` already serializes write transactions.
pub fn for_update() -> &'static str {
    match BACKEND.get() {
        Some(Backend::Postgres) => " FOR UPDATE",
        _ => "",
    }
}

/// Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds (where seconds are too coarse to order two events).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals_quote_every_element() {
        assert_eq!(pg_text_array(&[]), "{}");
        assert_eq!(
            pg_text_array(&["app_1", "NULL", "a,b", "{x}", "q\"\\z", ""]),
            r#"{"app_1","NULL","a,b","{x}","q\"\\z",""}"#
        );
        assert_eq!(pg_bigint_array(&[]), "{}");
        assert_eq!(
            pg_bigint_array(&[1, -2, i64::MAX]),
            "{1,-2,9223372036854775807}"
        );
    }

    #[test]
    fn splits_statements() {
        let s = split_statements("-- c\nCREATE TABLE a (x TEXT);\n\nCREATE INDEX i\n  ON a (x);\n");
        assert_eq!(s.len(), 2);
        assert!(s[1].contains("ON a (x);"));
    }

    #[test]
    fn sqlite_urls_create_their_file_unless_a_mode_is_given() {
        let dir = std::env::temp_dir().join(format!("tollgate-url-{}", std::process::id()));
        let file = dir.join("sub").join("t.db");
        let url = format!("sqlite://{}", file.display());
        assert_eq!(
            sqlite_url_creating(&url).unwrap(),
            format!("{url}?mode=rwc")
        );
        assert!(file.parent().unwrap().is_dir());
        let with_query = format!("{url}?cache=shared");
        assert_eq!(
            sqlite_url_creating(&with_query).unwrap(),
            format!("{with_query}&mode=rwc")
        );
        let ro = format!("{url}?mode=ro");
        assert_eq!(sqlite_url_creating(&ro).unwrap(), ro);
        assert_eq!(
            sqlite_url_creating("sqlite::memory:").unwrap(),
            "sqlite::memory:"
        );
    }

    #[tokio::test]
    async fn migrates_sqlite_idempotently() {
        let dir = std::env::temp_dir().join(format!("tollgate-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let pool = connect(&url).await.unwrap();
        assert_eq!(migrate(&pool).await.unwrap(), MIGRATIONS.len());
        assert_eq!(migrate(&pool).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn in_memory_pools_keep_one_private_database() {
        let a = connect_in_memory().await.unwrap();
        let b = connect_in_memory().await.unwrap();
        assert_eq!(migrate(&a).await.unwrap(), MIGRATIONS.len());
        // Every query of the pool sees the same database: the second migration finds it done.
        assert_eq!(migrate(&a).await.unwrap(), 0);
        let mut tx = begin_write(&a).await.unwrap();
        sqlx::query(
            "INSERT INTO services (id, name, created_at, updated_at) VALUES ('svc_1', 'S', 0, 0)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM services")
            .fetch_one(&a)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            migrate(&b).await.unwrap(),
            MIGRATIONS.len(),
            "another pool, another database"
        );
    }
}
