//! End-to-end tests: the built binaries run as an administrator would run them, against real
//! `invsite serve` processes on 127.0.0.1:0 and agents on fixture roots. One test binary with
//! a module per area keeps link time down.

mod api;
mod backup;
mod common;
mod console;
mod console_browser;
mod database;
mod deltas;
mod exit_codes;
mod exports;
mod health;
mod hierarchy;
mod metrics;
mod names;
mod pipes;
mod push;
mod restart;
mod security;
mod seed_flow;
mod site_init;
mod systemd;
mod tls;
mod upgrade;
