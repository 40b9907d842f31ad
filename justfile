# mediagen — `just` lists the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The admin connection tests use to create (and drop) a fresh PostgreSQL database each.
export TEST_DATABASE_URL := env_var_or_default("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")

# List the recipes.
default:
    @just --list

# Format every crate.
fmt:
    cargo fmt --all

# Formatting check, clippy with warnings as errors, and no unused dependency (cargo-machete, installed on first use).
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings
    command -v cargo-machete >/dev/null || cargo install cargo-machete --locked
    cargo machete

# Everything CI checks: lint, then every test (SQLite in temp files, PostgreSQL on the local server).
test: lint db-up
    cargo build -p mediagen
    cargo test --workspace --all-features

# The whole bot against the fal simulator and a fake Telegram crowd; no keys, no database server (`--quick`, `--help`).
demo *ARGS:
    cargo run -p mediagen-demo -- {{ARGS}}

# Long reliability runs, then a 20 s PostgreSQL outage (stops the local cluster: run nothing else meanwhile).
chaos: db-up
    cargo build -p mediagen
    CRASH_JOBS=300 CRASH_KILLS=30 FAL_FAULT_JOBS=300 TELEGRAM_FAULT_JOBS=100 HOSTILE_UPDATES=10000 \
      cargo test -p mediagen-e2e --test crash --test fal_faults --test telegram_faults --test hostile -- --nocapture
    DB_OUTAGE_JOBS=40 cargo test -p mediagen-e2e --test db_outage -- --ignored --nocapture --test-threads=1

# The benchmark: mediagen against a simple bot on the fal simulator (~4 min); `just bench --smoke` for a quick pass.
bench *ARGS: db-up
    cargo run --release -p mediagen-bench -- {{ARGS}}

# Run the bot for real: needs TELOXIDE_TOKEN and FAL_KEY; DATABASE_URL optional (SQLite by default).
run:
    cargo run --release -p mediagen -- run

# Apply pending migrations to DATABASE_URL (the SQLite file mediagen.sqlite when unset).
migrate:
    cargo run -p mediagen -- migrate

# Start the local PostgreSQL if it is installed and down, and create the `mediagen` database.
db-up:
    scripts/ensure-postgres.sh
    psql "{{TEST_DATABASE_URL}}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'mediagen'" | grep -q 1 \
      || psql "{{TEST_DATABASE_URL}}" -c "CREATE DATABASE mediagen"
