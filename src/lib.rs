//! # kappa-exchange
//!
//! The pipeline side of Kappa Exchange. The matching engine itself is the pure
//! [`kappa_engine`] crate (re-exported as [`engine`]); this library holds everything the job
//! binaries in `jobs/` wire together:
//!
//! - [`config`]: shared configuration (the instrument table).
//! - [`simulate`]: the engine run in-process over generated flow, with a market summary.
pub use kappa_engine as engine;

pub mod config;
pub mod simulate;
