//! # kappa-engine
//!
//! The matching engine of Kappa Exchange: a pure, deterministic state machine. Commands go in,
//! events come out; it knows nothing of Kafka, JSON, clocks or threads, so the same commands
//! always produce byte-identical events, and its state can be snapshotted with serde and
//! restored to continue exactly where it stopped.
//!
//! - [`Instruments`]: tick/lot sizes and limits; decimal ⇄ integer conversion at the edge.
//! - [`Command`] (decimal, by symbol) / [`Request`] (integer ticks and lots).
//! - [`Engine`]: price-time-priority books, `apply`/`execute`, depth queries and updates.
//! - [`Event`], [`DepthUpdate`]: what comes out, with sequence numbers.
//! - [`workload`]: seeded synthetic command streams for benchmarks and tests.
//!
//! See [`Engine`] for the matching rules and a runnable example.

mod book;
pub mod command;
pub mod engine;
pub mod event;
mod index;
pub mod instrument;
pub mod types;
pub mod workload;

pub use command::{
    AmendOrder, AmendRequest, CancelOrder, CancelRequest, Command, Invalid, NewOrder, NewRequest,
    Request,
};
pub use engine::{Engine, EngineConfig, RestingOrder, DEFAULT_FINISHED_IDS_WINDOW};
pub use event::{
    Accepted, CancelReason, CommandKind, Depth, DepthLevel, DepthSide, DepthUpdate, Event,
    EventBody, OrderStatus, OrderUpdate, RejectReason, Rejected, Trade, MAX_DEPTH_LEVELS,
};
pub use instrument::{ConfigError, InstrumentSpec, Instruments};
pub use types::{
    FixedStr, IdError, InstrumentId, Lots, OrderId, OrderType, Side, Symbol, Ticks, TimeInForce,
    TraderId,
};

/// Version of the engine's serialized state ([`Engine`] with serde): bumped whenever a change
/// makes an older snapshot mean something else, so a job refuses to restore it instead of
/// diverging.
pub const STATE_VERSION: u32 = 2;
