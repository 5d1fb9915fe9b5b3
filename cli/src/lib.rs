//! The `orders` command-line client: argument parsing, the socket client, daemon control and
//! output. The binary (`main.rs`) only parses the command line and maps failures to exit codes.

pub mod args;
pub mod client;
pub mod commands;
pub mod complete;
pub mod daemon;
pub mod eventlog;
pub mod failure;
pub mod ids;
pub mod output;
pub mod reconnect;
pub mod usage;

#[cfg(test)]
mod man;
