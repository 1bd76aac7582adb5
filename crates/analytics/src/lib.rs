//! # kappa-analytics
//!
//! The windowed analytics of Kappa Exchange, computed with Polars and free of Kafka, so they can
//! be tested and benchmarked on their own and embedded anywhere:
//!
//! - [`window`]: event-time tumbling windows, watermark, lateness.
//! - [`bars`]: OHLCV bars per instrument and window, and simple moving averages of the close.
//! - [`pnl`]: positions and realized/unrealized P&L per trader and instrument (average cost), in
//!   exact integer accounting (a sequential per-trade loop in plain Rust, not Polars).
//! - [`exact`]: the exact rationals P&L figures are published from, rounded once.
//! - [`parquet`]: result tables to Parquet files.
//!
//! Trades come in as [`TradeRow`]s in integer units (ticks, lots) so the aggregation is exact;
//! callers convert to decimals at the edge. Results do not depend on how trades are batched.
//!
//! The engines' state is serde-serializable ([`BarEngine`] and [`PnlEngine`] implement
//! `Serialize`/`Deserialize`), so a streaming job can snapshot it, e.g. with `bincode`, and
//! restore it after a crash: a restored engine continues exactly as if it had never stopped.

pub mod bars;
mod columns;
pub mod exact;
pub mod parquet;
pub mod pnl;
pub mod window;

pub use bars::{Bar, BarEngine, BarsOutput};
pub use exact::Ratio;
pub use pnl::{FillError, PnlEngine, PnlOutput, PnlRow, Position, WindowTotals, AVG_DEN_MAX};
pub use window::{Clock, WindowSpec};

use serde::{Deserialize, Serialize};

/// One trade in integer units. `buyer`/`seller` are trader ids interned by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRow {
    pub instrument: u32,
    pub ts_ms: i64,
    /// Ticks.
    pub price: i64,
    /// Lots.
    pub quantity: i64,
    pub buyer: u32,
    pub seller: u32,
}

/// The Polars version these analytics are built with, re-exported for callers that build frames.
pub use polars;

/// Version of the engines' serialized state ([`BarEngine`], [`PnlEngine`], [`Clock`] with serde):
/// bumped whenever a change makes an older snapshot mean something else, so a job refuses to
/// restore it instead of diverging.
///
/// 2: P&L positions in integers (exact average as a fraction, cash flows), per-window activity
/// accumulated per trade instead of a Polars frame.
pub const STATE_VERSION: u32 = 2;
