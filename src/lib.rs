//! # kappa-exchange
//!
//! The pipeline side of Kappa Exchange. The matching engine itself is the pure
//! [`kappa_engine`] crate (re-exported as [`engine`]); this library holds everything the job
//! binaries in `jobs/` wire together:
//!
//! - [`config`]: shared configuration (the instrument table).
//! - [`topics`]: topic names, keys, headers, the partitioner and the topic layout.
//! - [`schema`]: JSON message schemas of every topic; parsing of incoming orders.
//! - [`kafka`]: client configuration (`--brokers`, `-X`), provenance headers, output scans.
//! - [`embedded`]: the embedded broker (librdkafka's mock cluster) for demos and tests.
//! - [`broker`]: embedded broker or real cluster behind one interface; topics through the Admin
//!   API.
//! - [`generator`]: the order-generator job.
//! - [`processor`]: the consume-process-produce loop of every streaming job, with exactly-once
//!   output by deterministic replay.
//! - [`matchmaker`]: the match-maker job.
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz` of the streaming jobs.
//! - [`shutdown`]: SIGINT/SIGTERM handling.
//! - [`serving`]: the market-view job: HTTP API, order entry and the live dashboard.
//! - [`analytics`]: the SMA-calculator and profit-calculator jobs (Polars, via `kappa-analytics`).
//! - [`bench`]: the end-to-end pipeline benchmark.
//! - [`demo`]: the one-command demo on the embedded broker.
//! - [`simulate`]: the engine run in-process over generated flow, with a market summary.
pub use kappa_engine as engine;

pub mod analytics;
pub mod bench;
pub mod broker;
pub mod config;
pub mod demo;
pub mod embedded;
pub mod generator;
pub mod kafka;
pub mod matchmaker;
pub mod ops;
pub mod processor;
pub mod schema;
pub mod serving;
pub mod shutdown;
pub mod simulate;
pub mod telemetry;
pub mod topics;
