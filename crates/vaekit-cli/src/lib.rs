//! The `vaekit` command line as a library: the clap definitions ([`cli`]) and one module per
//! subcommand ([`commands`]), so that the Python package trains through exactly the CLI's
//! options, defaults and messages. The binary is `main.rs`.

pub mod cli;
pub mod commands;
pub mod out;
mod progress;
mod ranks;
