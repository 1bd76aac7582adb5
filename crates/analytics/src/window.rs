//! Event-time tumbling windows and the watermark that closes them.
//!
//! The watermark is the newest event time seen so far minus the allowed lateness. It advances
//! per trade, in arrival order, so whether a trade is late never depends on how trades were
//! batched: a trade is **late** when its window already closed before it arrived (its window end
//! is at or below the watermark at that moment). Late trades are returned to the caller, never
//! silently dropped.

use serde::{Deserialize, Serialize};

/// Window length and allowed lateness, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    pub length_ms: i64,
    pub lateness_ms: i64,
}

impl WindowSpec {
    /// Start of the window containing `ts`.
    #[inline]
    pub fn start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.length_ms) * self.length_ms
    }
}

/// Watermark bookkeeping for one input stream. Serializable, for snapshots of the engines (and of
/// callers that keep their own clock).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Clock {
    spec: WindowSpec,
    max_ts: i64,
    /// Windows ending at or before this are closed.
    watermark: i64,
}

impl Clock {
    pub fn new(spec: WindowSpec) -> Self {
        Clock {
            spec,
            max_ts: i64::MIN,
            watermark: i64::MIN,
        }
    }

    pub fn spec(&self) -> WindowSpec {
        self.spec
    }

    /// Admits a trade at `ts`: `Some(window start)`, or `None` if it is late. Advances the
    /// watermark *after* the decision.
    #[inline]
    pub fn admit(&mut self, ts: i64) -> Option<i64> {
        let start = self.spec.start(ts);
        if start + self.spec.length_ms <= self.watermark {
            return None;
        }
        if ts > self.max_ts {
            self.max_ts = ts;
            self.watermark = self.watermark.max(ts.saturating_sub(self.spec.lateness_ms));
        }
        Some(start)
    }

    /// Current watermark: windows ending at or before it are closed.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// End of input: closes every window.
    pub fn close_all(&mut self) {
        self.watermark = i64::MAX;
    }
}

/// Splits carried per-window aggregates (a frame with a `window` start column) at `through`:
/// the rows of windows that closed (end at or before it), still lazy so the caller can sort or
/// select, and the frame of still-open windows, if any rows remain.
pub fn split_closed(
    partial: polars::prelude::DataFrame,
    length_ms: i64,
    through: i64,
) -> polars::prelude::PolarsResult<(
    polars::prelude::LazyFrame,
    Option<polars::prelude::DataFrame>,
)> {
    use polars::prelude::*;
    let closed_mask = (col("window") + lit(length_ms)).lt_eq(lit(through));
    let closed = partial.clone().lazy().filter(closed_mask.clone());
    let open = partial.lazy().filter(closed_mask.not()).collect()?;
    Ok((closed, (open.height() > 0).then_some(open)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_decided_per_trade_in_arrival_order() {
        let mut c = Clock::new(WindowSpec {
            length_ms: 1000,
            lateness_ms: 500,
        });
        assert_eq!(c.admit(1_200), Some(1_000));
        assert_eq!(c.admit(2_400), Some(2_000)); // watermark 1_900: window [1000,2000) still open
        assert_eq!(c.admit(1_999), Some(1_000)); // within lateness
        assert_eq!(c.admit(2_600), Some(2_000)); // watermark 2_100: [1000,2000) closes
        assert_eq!(c.admit(1_999), None, "late: its window closed");
        assert_eq!(c.watermark(), 2_100);
        assert_eq!(c.spec().start(-1), -1000);
    }
}
