//! # kappa-exchange
//!
//! The pipeline side of Kappa Exchange. The matching engine itself is the pure
//! [`kappa_engine`] crate (re-exported as [`engine`]); this library holds everything the job
//! binaries in `jobs/` wire together:
//!
//! - [`config`]: shared configuration (the instrument table).
//! - [`topics`]: topic names, keys, headers, the partitioner and the topic layout.
//! - [`wire`]: the wire contract — every topic's messages, the order parser, decimals and the
//!   money rounding rule, enum names.
//! - [`runtime`]: the consume-process-produce runtime of every streaming job (the loop with
//!   snapshots and transactions, Kafka configuration, brokers, ops endpoints, shutdown), and the
//!   [`runtime::job::Job`] trait a job implements over plain records.
//! - [`generator`]: the order-generator job.
//! - [`matchmaker`]: the match-maker job.
//! - [`serving`]: the market-view job: HTTP API, order entry and the live dashboard.
//! - [`analytics`]: the SMA-calculator and profit-calculator jobs (Polars, via `kappa-analytics`).
//! - [`bench`]: the end-to-end pipeline benchmark.
//! - [`demo`]: the one-command demo on the embedded broker.
//! - [`simulate`]: the engine run in-process over generated flow, with a market summary.
pub use kappa_engine as engine;

pub mod access;
pub mod analytics;
pub mod bench;
pub mod config;
pub mod demo;
pub mod fix;
pub mod generator;
pub mod matchmaker;
pub mod report;
pub mod runtime;
pub mod schemas;
pub mod serving;
pub mod simulate;
pub mod soak;
pub mod telemetry;
pub mod topics;
pub mod wire;
