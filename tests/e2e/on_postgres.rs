//! The end-to-end suite again, on PostgreSQL (issue 19): each daemon keeps its store in a fresh
//! database of the test process's private cluster (`testpg`), and the same tests run unchanged.
//!
//! The modules here are the ones about what the store does: orders and sagas, replay, check,
//! export and import, following, short ids, crashes and restarts, scripts, the HTTP endpoints.
//! The others test what no backend touches (the terminal, the socket's security, systemd, the
//! binaries, clients that do not read) or SQLite's own files (backups and restores, hostile files beside the database, a
//! full disk, a replaced store): they run once, in `main.rs`. A test of an included module that
//! is about SQLite's file returns early here, saying so ([`fixture::sqlite_only`]).

// The fixture serves both suites; this one uses part of it.
#![allow(dead_code)]

mod fixture;
mod terminal;

/// This suite's daemons keep their stores in PostgreSQL.
const ON_POSTGRES: bool = true;

mod basics;
mod cluster;
mod crash;
mod export;
mod following;
mod http;
mod lifecycle;
mod names;
mod postgres;
mod replay;
mod sagas;
mod scripts;
mod short_ids;
mod startup;
