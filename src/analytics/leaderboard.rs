//! The P&L leaderboard as a view: the profit calculator publishes, per `trades` partition and
//! window, every trader's total in that partition's instruments (`kind: "totals"`, deterministic:
//! replays and restarts reproduce them exactly); readers combine each partition's latest totals
//! into a ranking. A trader trades instruments of several partitions, so no single partition can
//! rank traders, and a ranking published by the job would depend on how partitions interleave.
//!
//! Bounded: one totals message per partition.

use crate::wire::{LeaderEntry, LeaderboardMessage, TotalsMessage};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Traders per leaderboard.
pub const LEADERBOARD_SIZE: usize = 10;

/// Key of totals messages on `analytics`.
pub const TOTALS_KEY: &str = "totals";

/// The latest totals of every partition.
#[derive(Clone, Debug, Default)]
pub struct Leaderboard {
    latest: BTreeMap<i32, TotalsMessage>,
}

impl Leaderboard {
    /// Takes `t` if it is the partition's newest; returns whether the ranking may have changed.
    pub fn apply(&mut self, t: TotalsMessage) -> bool {
        match self.latest.get(&t.partition) {
            Some(old) if old.end_ms > t.end_ms => false,
            _ => {
                self.latest.insert(t.partition, t);
                true
            }
        }
    }

    /// The top `size` traders by total over all partitions (ties by name); None before any
    /// totals.
    pub fn board(&self, size: usize) -> Option<LeaderboardMessage> {
        let end_ms = self.latest.values().map(|t| t.end_ms).max()?;
        let mut totals: BTreeMap<&str, Decimal> = BTreeMap::new();
        for t in self.latest.values() {
            for x in &t.traders {
                *totals.entry(x.trader.as_str()).or_default() += x.total;
            }
        }
        let mut ranked: Vec<(&str, Decimal)> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let top = ranked
            .into_iter()
            .take(size)
            .enumerate()
            .map(|(k, (trader, total))| LeaderEntry {
                rank: k + 1,
                trader: trader.to_string(),
                total: crate::wire::money(total),
            })
            .collect();
        Some(LeaderboardMessage {
            kind: "leaderboard".into(),
            end_ms,
            top,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TraderTotal;

    fn totals(partition: i32, end_ms: i64, traders: &[(&str, i64)]) -> TotalsMessage {
        TotalsMessage {
            kind: "totals".into(),
            end_ms,
            partition,
            traders: traders
                .iter()
                .map(|(t, v)| TraderTotal {
                    trader: t.to_string(),
                    total: Decimal::from(*v),
                })
                .collect(),
        }
    }

    #[test]
    fn totals_of_every_partition_combine_into_one_ranking() {
        let mut l = Leaderboard::default();
        assert!(l.board(3).is_none());
        assert!(l.apply(totals(0, 1000, &[("A", 5), ("B", -2)])));
        assert!(l.apply(totals(1, 2000, &[("B", 10), ("C", 4)])));
        // An older window of a partition changes nothing.
        assert!(!l.apply(totals(0, 500, &[("A", 100)])));
        let b = l.board(2).unwrap();
        assert_eq!(b.end_ms, 2000);
        let top: Vec<(usize, &str, Decimal)> = b
            .top
            .iter()
            .map(|e| (e.rank, e.trader.as_str(), e.total))
            .collect();
        assert_eq!(
            top,
            vec![(1, "B", Decimal::from(8)), (2, "A", Decimal::from(5))]
        );
        // A partition's newer totals replace its older ones.
        l.apply(totals(0, 3000, &[("A", 20)]));
        assert_eq!(l.board(1).unwrap().top[0].trader, "A");
        // Ties rank by name.
        let mut t = Leaderboard::default();
        t.apply(totals(0, 1, &[("Z", 1), ("Y", 1)]));
        assert_eq!(t.board(2).unwrap().top[0].trader, "Y");
    }
}
