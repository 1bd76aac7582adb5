//! `rejects`: input a job could not use, bounded, with the reason (written by every job).

use serde::{Deserialize, Serialize};

/// Where a rejected input came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The reasons an `orders` message can fail to decode with (`wire::orders`): with the engine's
/// [`kappa_engine::RejectReason`] codes and `wrong_partition`, what the match maker can reject.
pub const ORDER_INPUT_REASONS: [&str; 12] = [
    "malformed_json",
    "missing_field",
    "invalid_field",
    "invalid_action",
    "invalid_side",
    "invalid_order_type",
    "invalid_time_in_force",
    "invalid_price",
    "invalid_quantity",
    "invalid_trader",
    "invalid_timestamp",
    "unknown_instrument",
];

/// The engine's reason codes, then `extra` — a job's reject reasons (deduplicated, in order).
pub fn reasons_with_engine_codes(extra: &[&'static str]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in extra
        .iter()
        .copied()
        .chain(kappa_engine::RejectReason::ALL.iter().map(|r| r.code()))
    {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// Most bytes of an input's payload a reject carries; the payload's full length and SHA-256
/// identify the rest. Whatever arrives, a reject stays far below any broker's message limit.
pub const REJECT_PAYLOAD_MAX: usize = 4096;
/// Most bytes of a reject's detail (parser messages can quote the input).
pub const REJECT_DETAIL_MAX: usize = 1024;

/// A rejected input, on `rejects`: the reason, and the original payload (its first
/// [`REJECT_PAYLOAD_MAX`] bytes, with its length and hash) for inspection or replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RejectMessage {
    /// Stable reason code (`malformed_json`, `price_off_tick`, `duplicate_order_id`, …).
    pub reason: String,
    pub detail: String,
    /// The input as received (lossy UTF-8 if it was not valid UTF-8), cut to
    /// [`REJECT_PAYLOAD_MAX`] bytes at a character boundary.
    pub payload: String,
    /// The input's length in bytes, and whether `payload` is only its beginning.
    #[serde(default)]
    pub payload_bytes: u64,
    #[serde(default)]
    pub payload_truncated: bool,
    /// SHA-256 of the input's bytes, hex.
    #[serde(default)]
    pub payload_sha256: String,
    pub source: SourceRef,
    /// Job that rejected it.
    pub job: String,
}

impl RejectMessage {
    /// A reject of input `payload`, bounded: payload and detail cut to their limits.
    pub fn new(reason: &str, detail: &str, payload: &[u8], source: SourceRef, job: &str) -> Self {
        use sha2::Digest as _;
        let head = &payload[..payload.len().min(REJECT_PAYLOAD_MAX)];
        let text = String::from_utf8_lossy(head);
        let kept = cut_at_char(&text, REJECT_PAYLOAD_MAX);
        RejectMessage {
            reason: reason.to_string(),
            detail: cut_at_char(detail, REJECT_DETAIL_MAX).to_string(),
            payload_truncated: head.len() < payload.len() || kept.len() < text.len(),
            payload: kept.to_string(),
            payload_bytes: payload.len() as u64,
            payload_sha256: sha2::Sha256::digest(payload)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            source,
            job: job.to_string(),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
