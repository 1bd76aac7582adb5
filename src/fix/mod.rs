//! The FIX 4.4 order-entry gateway (`fix-gateway` job): traders' FIX sessions in, `orders`
//! records out; `order-events` in, ExecutionReports out.
//!
//! - [`codec`]: tag=value framing, BodyLength and CheckSum (pure).
//! - [`state`]: what survives a restart — sequence numbers, the sent application messages kept
//!   for resends, the orders placed through the gateway, the `order-events` position — changed
//!   only through [`state::Record`]s, so replaying the journal rebuilds exactly what was live.
//! - [`gateway`]: the session layer and the order mapping as one deterministic state machine
//!   (inputs and the time in; records, bytes to send and orders to publish out; no I/O).
//! - [`store`]: the journal of records on disk (CRC-framed batches, compacted to a snapshot).
//! - [`server`]: TCP, Kafka and the clock around [`gateway::Gateway`].
//!
//! Why our own engine rather than a crate: see the comparison in README.md ("FIX gateway").

pub mod codec;
pub mod gateway;
pub mod server;
pub mod state;
pub mod store;

/// FIX tags used here (FIX 4.4 names).
pub mod tag {
    pub const ACCOUNT: u32 = 1;
    pub const AVG_PX: u32 = 6;
    pub const BEGIN_SEQ_NO: u32 = 7;
    pub const CL_ORD_ID: u32 = 11;
    pub const CUM_QTY: u32 = 14;
    pub const END_SEQ_NO: u32 = 16;
    pub const EXEC_ID: u32 = 17;
    pub const EXEC_INST: u32 = 18;
    pub const LAST_PX: u32 = 31;
    pub const LAST_QTY: u32 = 32;
    pub const MSG_SEQ_NUM: u32 = 34;
    pub const MSG_TYPE: u32 = 35;
    pub const NEW_SEQ_NO: u32 = 36;
    pub const ORDER_ID: u32 = 37;
    pub const ORDER_QTY: u32 = 38;
    pub const ORD_STATUS: u32 = 39;
    pub const ORD_TYPE: u32 = 40;
    pub const ORIG_CL_ORD_ID: u32 = 41;
    pub const POSS_DUP_FLAG: u32 = 43;
    pub const PRICE: u32 = 44;
    pub const REF_SEQ_NUM: u32 = 45;
    pub const SENDER_COMP_ID: u32 = 49;
    pub const SENDING_TIME: u32 = 52;
    pub const SIDE: u32 = 54;
    pub const SYMBOL: u32 = 55;
    pub const TARGET_COMP_ID: u32 = 56;
    pub const TEXT: u32 = 58;
    pub const TIME_IN_FORCE: u32 = 59;
    pub const TRANSACT_TIME: u32 = 60;
    pub const ENCRYPT_METHOD: u32 = 98;
    pub const CXL_REJ_REASON: u32 = 102;
    pub const ORD_REJ_REASON: u32 = 103;
    pub const HEART_BT_INT: u32 = 108;
    pub const TEST_REQ_ID: u32 = 112;
    pub const ORIG_SENDING_TIME: u32 = 122;
    pub const GAP_FILL_FLAG: u32 = 123;
    pub const RESET_SEQ_NUM_FLAG: u32 = 141;
    pub const EXEC_TYPE: u32 = 150;
    pub const LEAVES_QTY: u32 = 151;
    pub const REF_TAG_ID: u32 = 371;
    pub const REF_MSG_TYPE: u32 = 372;
    pub const SESSION_REJECT_REASON: u32 = 373;
    pub const BUSINESS_REJECT_REASON: u32 = 380;
    pub const CXL_REJ_RESPONSE_TO: u32 = 434;
    pub const USERNAME: u32 = 553;
    pub const PASSWORD: u32 = 554;
    pub const NEXT_EXPECTED_MSG_SEQ_NUM: u32 = 789;
}

#[cfg(test)]
mod tests;
