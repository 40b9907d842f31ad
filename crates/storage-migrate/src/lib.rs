//! The one-way move of a whole SQLite database into an empty PostgreSQL one, for an
//! operator who outgrows one machine (`mediagen migrate-storage`).
//!
//! Both schemas are twins (`migrations-sqlite/` mirrors `migrations/`, same tables, same
//! columns), so the move is table by table in dependency order, keeping every id; only the
//! representation changes (microseconds to `TIMESTAMPTZ`, JSON text to `JSONB`, a JSON array
//! to `TEXT[]`, 0/1 to `BOOLEAN`). It reads one consistent snapshot of the SQLite file and
//! writes in one PostgreSQL transaction, which also moves each identity sequence past the
//! largest copied id and checks, before committing, that every table has as many rows on
//! both sides and that the ledger's totals per kind are equal. Nothing is written to
//! PostgreSQL unless all of it is.

use anyhow::{Context, anyhow};
use mediagen_domain::Timestamp;
use mediagen_ports::StorageError;
use sqlx::postgres::{PgConnection, PgPool, Postgres};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Connection, QueryBuilder, Row};

/// How a column is stored in SQLite and what it becomes in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// INTEGER → BIGINT / INTEGER.
    Int,
    /// TEXT → TEXT.
    Text,
    /// INTEGER 0/1 → BOOLEAN.
    Bool,
    /// INTEGER microseconds → TIMESTAMPTZ.
    Instant,
    /// TEXT holding JSON → JSONB.
    Json,
    /// TEXT holding a JSON array of strings → TEXT[].
    Texts,
}

/// A table and its columns, as both schemas have them.
struct Table {
    name: &'static str,
    /// Its `id` is an identity column in PostgreSQL: copied with `OVERRIDING SYSTEM VALUE`,
    /// then the sequence is moved past the largest id.
    identity: bool,
    columns: &'static [(&'static str, Kind)],
}

use Kind::{Bool, Instant, Int, Json, Text, Texts};

/// Every table, parents before children (the order the foreign keys need).
const TABLES: &[Table] = &[
    Table {
        name: "users",
        identity: false,
        columns: &[
            ("id", Int),
            ("language", Text),
            ("plan", Text),
            ("role", Text),
            ("blocked", Bool),
            ("settings", Json),
            ("created_at", Instant),
            ("updated_at", Instant),
        ],
    },
    Table {
        name: "accounts",
        identity: false,
        columns: &[
            ("id", Text),
            ("key_names", Texts),
            ("disabled", Bool),
            ("lock_reason", Text),
            ("locked_since", Instant),
            ("limit_override", Int),
            ("retired_at", Instant),
            ("created_at", Instant),
            ("updated_at", Instant),
        ],
    },
    Table {
        name: "credit_purchases",
        identity: true,
        columns: &[
            ("id", Int),
            ("account_id", Text),
            ("amount_micros", Int),
            ("purchased_at", Instant),
            ("recorded_at", Instant),
        ],
    },
    Table {
        name: "jobs",
        identity: true,
        columns: &[
            ("id", Int),
            ("idempotency_key", Text),
            ("user_id", Int),
            ("chat_id", Int),
            ("model", Text),
            ("spec", Json),
            ("state", Text),
            ("failure", Json),
            ("account_id", Text),
            ("request_id", Text),
            ("remote_model", Text),
            ("status_url", Text),
            ("response_url", Text),
            ("cancel_url", Text),
            ("hold_micros", Int),
            ("attempts", Int),
            ("lease_owner", Text),
            ("lease_epoch", Int),
            ("lease_until", Instant),
            ("not_before", Instant),
            ("enqueued_at", Instant),
            ("created_at", Instant),
            ("updated_at", Instant),
            ("finished_at", Instant),
            ("submit_started_at", Instant),
            ("delivered_at", Instant),
            ("submitted_at", Instant),
            ("helper_cost_micros", Int),
        ],
    },
    Table {
        name: "job_events",
        identity: true,
        columns: &[
            ("id", Int),
            ("job_id", Int),
            ("event", Text),
            ("from_state", Text),
            ("to_state", Text),
            ("account_id", Text),
            ("request_id", Text),
            ("owner", Text),
            ("detail", Text),
            ("at", Instant),
        ],
    },
    Table {
        name: "ledger",
        identity: true,
        columns: &[
            ("id", Int),
            ("job_id", Int),
            ("user_id", Int),
            ("account_id", Text),
            ("kind", Text),
            ("amount_micros", Int),
            ("at", Instant),
        ],
    },
    Table {
        name: "media",
        identity: true,
        columns: &[
            ("id", Int),
            ("job_id", Int),
            ("fal_url", Text),
            ("telegram_file_id", Text),
            ("size_bytes", Int),
            ("content_type", Text),
            ("created_at", Instant),
            ("updated_at", Instant),
        ],
    },
    Table {
        name: "prompt_cache",
        identity: false,
        columns: &[("key", Text), ("value", Text), ("expires_at", Instant), ("created_at", Instant)],
    },
    Table { name: "alerts", identity: false, columns: &[("key", Text), ("period", Text), ("fired_at", Instant)] },
];

/// Rows read and written per batch (jobs have 25 columns: 25,000 parameters, well under
/// PostgreSQL's 65,535).
const BATCH: i64 = 1_000;

/// One column value on its way to PostgreSQL.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(bool),
    Instant(Option<chrono::DateTime<chrono::Utc>>),
    Json(Option<serde_json::Value>),
    Texts(Vec<String>),
}

/// What a move copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// `(table, rows)` in the order they were copied.
    pub tables: Vec<(&'static str, u64)>,
    /// `(ledger kind, total micro-dollars)`, equal on both sides.
    pub ledger: Vec<(String, i64)>,
}

/// Copies every row of the SQLite database `from` into the empty PostgreSQL database `to`.
/// Both must be migrated to the same versions (`mediagen migrate` on each, or opening them
/// with `SqliteStore::connect` and `PgStore::connect`). Stop the bot first: rows written
/// to SQLite after the snapshot is taken are not copied.
///
/// # Errors
/// `Unavailable` when either database cannot be reached; `Other` when the migration
/// versions differ, the target already holds rows, a value cannot be converted, or the
/// counts or ledger totals differ after the copy (then nothing was committed).
pub async fn copy_to_postgres(from: &SqlitePool, to: &PgPool) -> Result<Transfer, StorageError> {
    let mut source = from.acquire().await.map_err(unavailable_or_other)?;
    let mut target = to.acquire().await.map_err(unavailable_or_other)?;
    check_versions(&mut source, &mut target).await?;

    // One read transaction: every table from the same snapshot (WAL keeps it while the
    // bot, if still running, goes on writing).
    let mut snapshot = source.begin().await.map_err(unavailable_or_other)?;
    let mut tx = target.begin().await.map_err(unavailable_or_other)?;
    for table in TABLES {
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", table.name)))
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable_or_other)?;
        if rows > 0 {
            return Err(other(anyhow!(
                "the PostgreSQL database already holds {rows} rows in {}: the move needs an empty one",
                table.name
            )));
        }
    }

    let mut tables = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let copied = copy_table(&mut snapshot, &mut tx, table).await?;
        tables.push((table.name, copied));
    }
    for table in TABLES.iter().filter(|t| t.identity) {
        let name = table.name;
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{name}', 'id'), coalesce((SELECT max(id) FROM {name}), 0) + 1, false)"
        )))
        .execute(&mut *tx)
        .await
        .map_err(unavailable_or_other)?;
    }

    // The proof, before anything is committed.
    for (name, copied) in &tables {
        let sql = format!("SELECT count(*) FROM {name}");
        let in_source: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .fetch_one(&mut *snapshot)
            .await
            .map_err(unavailable_or_other)?;
        let in_target: i64 =
            sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut *tx).await.map_err(unavailable_or_other)?;
        if in_source != in_target || u64::try_from(in_target).ok() != Some(*copied) {
            return Err(other(anyhow!("{name}: {in_source} rows in SQLite, {in_target} copied to PostgreSQL")));
        }
    }
    const LEDGER: &str = "SELECT kind, sum(amount_micros) FROM ledger GROUP BY kind ORDER BY kind";
    let ledger: Vec<(String, i64)> =
        sqlx::query_as(LEDGER).fetch_all(&mut *snapshot).await.map_err(unavailable_or_other)?;
    let copied: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, sum(amount_micros)::int8 FROM ledger GROUP BY kind ORDER BY kind COLLATE \"C\"")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable_or_other)?;
    if ledger != copied {
        return Err(other(anyhow!("ledger totals differ after the copy: {ledger:?} in SQLite, {copied:?} copied")));
    }
    tx.commit().await.map_err(unavailable_or_other)?;
    snapshot.commit().await.map_err(unavailable_or_other)?;
    Ok(Transfer { tables, ledger })
}

/// Copies one table in batches of [`BATCH`] rows, in rowid order; returns the rows copied.
async fn copy_table(
    source: &mut SqliteConnection,
    target: &mut PgConnection,
    table: &Table,
) -> Result<u64, StorageError> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let list = names.join(", ");
    let select = format!("SELECT rowid, {list} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2", table.name);
    let overriding = if table.identity { " OVERRIDING SYSTEM VALUE " } else { " " };
    let insert = format!("INSERT INTO {} ({list}){overriding}", table.name);

    let mut after = i64::MIN;
    let mut copied = 0u64;
    loop {
        let rows: Vec<SqliteRow> = sqlx::query(AssertSqlSafe(select.clone()))
            .bind(after)
            .bind(BATCH)
            .fetch_all(&mut *source)
            .await
            .map_err(unavailable_or_other)?;
        let Some(last) = rows.last() else { break };
        after = last.try_get::<i64, _>(0).map_err(unavailable_or_other)?;
        let values = rows
            .iter()
            .map(|row| read_row(row, table))
            .collect::<Result<Vec<Vec<Value>>, anyhow::Error>>()
            .map_err(other)?;
        let mut query = QueryBuilder::<Postgres>::new(insert.clone());
        query.push_values(values, |mut tuple, row| {
            for value in row {
                match value {
                    Value::Int(v) => tuple.push_bind(v),
                    Value::Text(v) => tuple.push_bind(v),
                    Value::Bool(v) => tuple.push_bind(v),
                    Value::Instant(v) => tuple.push_bind(v),
                    Value::Json(v) => tuple.push_bind(v),
                    Value::Texts(v) => tuple.push_bind(v),
                };
            }
        });
        let done = query.build().execute(&mut *target).await.map_err(unavailable_or_other)?;
        copied += done.rows_affected();
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) < BATCH {
            break;
        }
    }
    Ok(copied)
}

/// One SQLite row (rowid first) as PostgreSQL values.
fn read_row(row: &SqliteRow, table: &Table) -> anyhow::Result<Vec<Value>> {
    let mut values = Vec::with_capacity(table.columns.len());
    for (i, (name, kind)) in table.columns.iter().enumerate() {
        let at = i + 1; // after the rowid
        let context = || format!("{}.{name}", table.name);
        let value = match kind {
            Int => Value::Int(row.try_get(at).with_context(context)?),
            Text => Value::Text(row.try_get(at).with_context(context)?),
            Bool => Value::Bool(row.try_get::<i64, _>(at).with_context(context)? != 0),
            Instant => {
                let micros: Option<i64> = row.try_get(at).with_context(context)?;
                Value::Instant(micros.map(instant).transpose().map_err(|e| anyhow!("{}: {e}", context()))?)
            }
            Json => {
                let text: Option<String> = row.try_get(at).with_context(context)?;
                Value::Json(text.map(|t| serde_json::from_str(&t)).transpose().with_context(context)?)
            }
            Texts => {
                let text: String = row.try_get(at).with_context(context)?;
                Value::Texts(serde_json::from_str(&text).with_context(context)?)
            }
        };
        values.push(value);
    }
    Ok(values)
}

/// Both databases must have applied the same migrations: the twin schemas match only then.
async fn check_versions(source: &mut SqliteConnection, target: &mut PgConnection) -> Result<(), StorageError> {
    const APPLIED: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
    let in_source: Vec<i64> =
        sqlx::query_scalar(APPLIED).fetch_all(&mut *source).await.map_err(unavailable_or_other)?;
    let in_target: Vec<i64> =
        sqlx::query_scalar(APPLIED).fetch_all(&mut *target).await.map_err(unavailable_or_other)?;
    if in_source != in_target {
        return Err(other(anyhow!(
            "the databases are at different schema versions (SQLite {in_source:?}, PostgreSQL {in_target:?}): \
             run `mediagen migrate` against both first"
        )));
    }
    if in_source.is_empty() {
        return Err(other(anyhow!("the SQLite database has no schema: is it a mediagen database?")));
    }
    Ok(())
}

fn other(error: anyhow::Error) -> StorageError {
    StorageError::Other(error)
}

/// Either database's errors: connection trouble is `Unavailable`, anything else `Other`
/// (each adapter's own classification is private to it, and a one-off copy needs no more).
fn unavailable_or_other(error: sqlx::Error) -> StorageError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StorageError::Unavailable(error.to_string())
        }
        other => StorageError::Other(anyhow::Error::new(other)),
    }
}

/// SQLite keeps instants as microseconds since the epoch.
fn instant(micros: i64) -> Result<Timestamp, String> {
    chrono::DateTime::from_timestamp_micros(micros).ok_or_else(|| format!("instant {micros} out of range"))
}
