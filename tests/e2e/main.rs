//! End-to-end tests: a real daemon on a temporary directory, driven by the real `orders` binary.

mod fixture;
mod terminal;

/// This suite's daemons keep their stores in SQLite files (`on_postgres.rs` runs the store's
/// part of it on PostgreSQL).
const ON_POSTGRES: bool = false;

mod at_the_terminal;
mod backup;
mod bad_input;
mod basics;
mod binaries;
mod cli;
mod clock;
mod crash;
mod export;
mod faults;
mod following;
mod hostile_files;
mod http;
mod lifecycle;
mod names;
mod replay;
mod sagas;
mod scripts;
mod security;
mod service;
mod short_ids;
mod slow_readers;
mod startup;
mod store;
mod stores;
