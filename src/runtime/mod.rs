//! The consume-process-produce runtime every streaming job runs on, and everything around it
//! that is not a job's own logic:
//!
//! - [`job`]: what a job is — a [`job::Job`] over plain [`job::Record`]s, publishing through an
//!   [`job::Emitter`];
//! - [`processor`]: the loop — consumer group, recovery from snapshots, transactions, batching;
//! - [`snapshot`]: state snapshots on the job's compacted changelog topic;
//! - [`kafka`]: client configuration, provenance headers, reading topics;
//! - [`broker`]: the embedded broker or a real cluster behind one interface, topics through the
//!   Admin API; [`embedded`]: the embedded (mock) broker itself;
//! - [`metrics`] and [`ops`]: counters, and the `/metrics`, `/healthz`, `/readyz` endpoints;
//! - [`shutdown`] turns SIGINT/SIGTERM into a graceful stop;
//! - [`harness`]: jobs on a thread of this process, or driven without a broker in unit tests.

pub mod broker;
pub mod embedded;
pub mod harness;
pub mod job;
pub mod kafka;
pub mod metrics;
pub mod ops;
pub mod processor;
pub mod shutdown;
pub mod snapshot;
