# mediagen — `just` lists the recipes.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The admin connection tests use to create (and drop) a fresh database each.
export TEST_DATABASE_URL := env_var_or_default("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# The database `just migrate` and `just run` use.
export DATABASE_URL := env_var_or_default("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mediagen")

# List the recipes.
default:
    @just --list

# Format every crate.
fmt:
    cargo fmt --all

# Formatting check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# Everything CI checks: lint, then every test against the local PostgreSQL.
test: lint db-up
    cargo test --workspace --all-features

# Start the local PostgreSQL if it is installed and down, and create the app database.
db-up:
    scripts/ensure-postgres.sh
    psql "{{TEST_DATABASE_URL}}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'mediagen'" | grep -q 1 \
      || psql "{{TEST_DATABASE_URL}}" -c "CREATE DATABASE mediagen"
