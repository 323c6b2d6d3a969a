//! End-to-end tests: the built binaries run as an administrator would run them, against real
//! `invsite serve` processes on 127.0.0.1:0 and agents on fixture roots. One test binary with
//! a module per area keeps link time down.

mod api;
mod backup;
mod cli_contract;
mod common;
mod console;
mod console_browser;
mod console_cancel;
mod database;
mod deltas;
mod duplicates;
mod exit_codes;
mod exports;
mod hardening;
mod health;
mod hierarchy;
mod hostile;
mod lifecycle;
mod logging;
mod metrics;
mod names;
mod offline;
mod offline_agent;
mod pipes;
mod push;
mod quickstart;
mod requests_end;
mod requests_view;
mod restart;
mod roles;
mod security;
mod seed_flow;
mod settings;
mod site_init;
mod systemd;
mod tls;
mod upgrade;
mod versions;
