//! The serving layer's Kafka side: reads every partition of `book`, `trades`, `order-events` and
//! `analytics` from the earliest retained offset (by assignment: every replica needs all of it,
//! so there is no consumer group to join) into the [`MarketState`], and reports readiness once
//! every partition has been read up to the end it had when the server started.

use super::state::MarketState;
use crate::runtime::kafka::{create_reader, partition_count, KafkaArgs};
use crate::runtime::shutdown::Shutdown;
use crate::topics::Topics;
use crate::wire::{
    decode_analytics, AnalyticsMessage, BarMessage, BookMessage, OrderEventMessage, PnlMessage,
    SmaMessage, TotalsMessage, TradeMessage,
};
use anyhow::Context as _;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// One decoded message of a topic the server reads.
#[derive(Debug)]
pub enum Update {
    Book(BookMessage),
    Trade(TradeMessage),
    OrderEvent(OrderEventMessage),
    Bar(BarMessage),
    Sma(SmaMessage),
    Pnl(PnlMessage),
    Totals(TotalsMessage),
}

/// Decodes a message of `topic`; the error names why it does not decode (the caller counts
/// and logs it).
pub fn decode(topics: &Topics, topic: &str, payload: &[u8]) -> Result<Update, String> {
    fn json<T: serde::de::DeserializeOwned>(p: &[u8]) -> Result<T, String> {
        serde_json::from_slice(p).map_err(|e| e.to_string())
    }
    if topic == topics.book {
        json(payload).map(Update::Book)
    } else if topic == topics.trades {
        json(payload).map(Update::Trade)
    } else if topic == topics.order_events {
        json(payload).map(Update::OrderEvent)
    } else if topic == topics.analytics {
        decode_analytics(payload).map(|m| match m {
            AnalyticsMessage::Bar(m) => Update::Bar(m),
            AnalyticsMessage::Sma(m) => Update::Sma(m),
            AnalyticsMessage::Pnl(m) => Update::Pnl(m),
            AnalyticsMessage::Totals(m) => Update::Totals(m),
        })
    } else {
        Err(format!("not a topic this server reads: {topic}"))
    }
}

/// Undecodable messages logged one by one before only every 10 000th is.
const LOGGED_UNDECODABLE: u64 = 20;

/// Applies one update to the state.
pub fn apply(state: &mut MarketState, update: Option<Update>) {
    match update {
        Some(Update::Book(m)) => state.apply_book(m),
        Some(Update::Trade(m)) => state.apply_trade(m),
        Some(Update::OrderEvent(m)) => state.apply_order_event(m),
        Some(Update::Bar(m)) => state.apply_bar(m),
        Some(Update::Sma(m)) => state.apply_sma(m),
        Some(Update::Pnl(m)) => state.apply_pnl(m),
        Some(Update::Totals(m)) => state.apply_totals(m),
        None => state.count_undecodable(),
    }
}

/// Most messages decoded before the state's write lock is taken once for all of them.
const BATCH: usize = 2_000;

/// The topics market-view reads (its Kafka ACLs are derived from this: `crate::access`).
pub fn inputs(topics: &Topics) -> [&String; 4] {
    [
        &topics.book,
        &topics.trades,
        &topics.order_events,
        &topics.analytics,
    ]
}

/// Reads the topics into `state` until `shutdown`; sets `ready` once caught up.
pub fn run(
    kafka: &KafkaArgs,
    state: &RwLock<MarketState>,
    ready: &AtomicBool,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let topics = kafka.topics();
    let consumer = create_reader(kafka.reader().set("enable.partition.eof", "false"))
        .context("creating the feed consumer")?;
    let mut tpl = TopicPartitionList::new();
    // Where each partition ended when the server started: caught up = read up to there.
    let mut pending: Vec<(String, i32, i64)> = Vec::new();
    for topic in inputs(&topics) {
        for p in 0..partition_count(&consumer, topic)? {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            let (low, high) = crate::runtime::kafka::watermarks(&consumer, topic, p)?;
            if high > low {
                pending.push((topic.clone(), p, high));
            }
        }
    }
    consumer
        .assign(&tpl)
        .context("assigning the feed partitions")?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut undecodable = 0u64;
    while !shutdown.is_triggered() {
        let mut timeout = Duration::from_millis(100);
        while batch.len() < BATCH {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    let payload = m.payload().unwrap_or_default();
                    let update = decode(&topics, m.topic(), payload);
                    if let Err(cause) = &update {
                        undecodable += 1;
                        if undecodable <= LOGGED_UNDECODABLE || undecodable.is_multiple_of(10_000) {
                            tracing::warn!(
                                topic = m.topic(),
                                partition = m.partition(),
                                offset = m.offset(),
                                bytes = payload.len(),
                                undecodable,
                                %cause,
                                "undecodable message: counted (kappa_undecodable_total) and skipped"
                            );
                        }
                    }
                    batch.push(update.ok());
                }
                Some(Err(e)) => tracing::warn!(error = %e, "feed consumer error"),
            }
            timeout = Duration::ZERO;
        }
        if !batch.is_empty() {
            let mut s = state.write().unwrap_or_else(|e| e.into_inner());
            for update in batch.drain(..) {
                apply(&mut s, update);
            }
        }
        if !pending.is_empty() {
            if let Ok(positions) = consumer.position() {
                pending.retain(|(topic, p, end)| {
                    !matches!(
                        positions.find_partition(topic, *p).map(|e| e.offset()),
                        Some(Offset::Offset(pos)) if pos >= *end
                    )
                });
            }
            if pending.is_empty() {
                ready.store(true, Ordering::Relaxed);
                tracing::info!("serving state caught up with the topics");
            }
        } else if !ready.load(Ordering::Relaxed) {
            ready.store(true, Ordering::Relaxed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_messages_get_their_cause_named() {
        let t = Topics::default();
        for (topic, payload, cause) in [
            (&t.trades, &b"{\"trade_id\":1"[..], "EOF while parsing"),
            (&t.book, &b"\xff"[..], "expected value"),
            (
                &t.analytics,
                &b"{\"kind\":\"nope\"}"[..],
                "unknown analytics kind",
            ),
            (&t.analytics, &b"[]"[..], "no analytics kind"),
            (&t.order_events, &b"{}"[..], "missing field"),
        ] {
            let why = decode(&t, topic, payload).map(|_| ()).unwrap_err();
            assert!(why.contains(cause), "{topic}: {why}");
        }
    }
}
