//! Scenario tests: one or more small, hand-checked cases for every matching rule.

mod common;

use common::*;
use kappa_engine::{
    CancelReason::*, Command, DepthLevel, Engine, EventBody, InstrumentId, NewOrder,
    OrderStatus::*, OrderType, RejectReason, Side::*, TimeInForce,
};

fn engine() -> Engine {
    Engine::new(instruments())
}

const XYZ: InstrumentId = InstrumentId(0);

fn lvl(price: i64, quantity: u64, orders: u32) -> DepthLevel {
    DepthLevel {
        price,
        quantity,
        orders,
    }
}

#[test]
fn walk_through_buy_100_meets_sells_30_50_40_at_rising_prices() {
    let mut e = engine();
    e.apply(&Order::limit(1, "S1", Sell, 101, 30).build());
    e.apply(&Order::limit(2, "S2", Sell, 102, 50).build());
    e.apply(&Order::limit(3, "S3", Sell, 103, 40).build());
    let ev = e.apply(&Order::limit(4, "B1", Buy, 103, 100).build());

    assert!(matches!(ev[0].body, EventBody::Accepted(a) if a.order_id == 4 && a.quantity == 100));
    let t: Vec<_> = trades(&ev)
        .iter()
        .map(|t| {
            (
                t.maker_order_id,
                t.taker_order_id,
                t.price,
                t.quantity,
                t.trade_id,
            )
        })
        .collect();
    assert_eq!(
        t,
        vec![(1, 4, 101, 30, 1), (2, 4, 102, 50, 2), (3, 4, 103, 20, 3)]
    );
    assert_eq!(
        statuses(&ev),
        vec![
            (1, Filled, 30, 0),
            (4, PartiallyFilled, 30, 70),
            (2, Filled, 50, 0),
            (4, PartiallyFilled, 80, 20),
            (3, PartiallyFilled, 20, 20),
            (4, Filled, 100, 0),
        ]
    );
    // Event order per fill: trade, maker status, taker status; sequence numbers are consecutive.
    let seqs: Vec<u64> = ev.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (seqs[0]..seqs[0] + 10).collect::<Vec<_>>());
    assert!(matches!(ev[1].body, EventBody::Trade(_)));
    assert!(matches!(ev[2].body, EventBody::Order(u) if u.order_id == 1));
    assert!(matches!(ev[3].body, EventBody::Order(u) if u.order_id == 4));
    let depth = e.depth(XYZ, 5);
    assert_eq!(depth.asks.levels(), &[lvl(103, 20, 1)]);
    assert!(depth.bids.levels().is_empty());
    assert_eq!(e.order(3).unwrap().leaves, 20);
    assert!(e.order(1).is_none() && e.order(4).is_none());
}

#[test]
fn resting_order_gets_new_status_and_sequence_starts_at_one() {
    let mut e = engine();
    let ev = e.apply(&Order::limit(1, "A", Buy, 100, 10).build());
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].seq, 1);
    assert_eq!(statuses(&ev), vec![(1, New, 0, 10)]);
    assert_eq!(e.best(XYZ, Buy), Some(100));
}

#[test]
fn better_price_first_then_earlier_time() {
    let mut e = engine();
    e.apply(&Order::limit(1, "S1", Sell, 101, 10).build());
    e.apply(&Order::limit(2, "S2", Sell, 100, 10).build());
    e.apply(&Order::limit(3, "S3", Sell, 100, 10).build());
    let ev = e.apply(&Order::limit(4, "B", Buy, 101, 25).build());
    let makers: Vec<_> = trades(&ev)
        .iter()
        .map(|t| (t.maker_order_id, t.price, t.quantity))
        .collect();
    assert_eq!(makers, vec![(2, 100, 10), (3, 100, 10), (1, 101, 5)]);
}

#[test]
fn trade_price_is_the_resting_price_and_limits_are_never_crossed() {
    let mut e = engine();
    e.apply(&Order::limit(1, "S", Sell, 100, 10).build());
    e.apply(&Order::limit(2, "S", Sell, 105, 10).build());
    let ev = e.apply(&Order::limit(3, "B", Buy, 104, 15).build());
    let t = trades(&ev);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].price, t[0].quantity), (100, 10));
    // The remaining 5 rest at 104; 105 was not touched.
    assert_eq!(statuses(&ev).last(), Some(&(3, PartiallyFilled, 10, 5)));
    assert_eq!(e.best(XYZ, Buy), Some(104));
    assert_eq!(e.best(XYZ, Sell), Some(105));
    // A sell side aggressor trades at the bid's price.
    let ev = e.apply(&Order::limit(4, "S2", Sell, 90, 5).build());
    assert_eq!(trades(&ev)[0].price, 104);
    assert_eq!(trades(&ev)[0].aggressor, Sell);
}

#[test]
fn fifo_survives_partial_fills() {
    let mut e = engine();
    e.apply(&Order::limit(1, "S1", Sell, 100, 10).build());
    e.apply(&Order::limit(2, "S2", Sell, 100, 10).build());
    e.apply(&Order::limit(3, "B", Buy, 100, 4).build()); // partially fills #1
    let ev = e.apply(&Order::limit(4, "B", Buy, 100, 8).build());
    let makers: Vec<_> = trades(&ev)
        .iter()
        .map(|t| (t.maker_order_id, t.quantity))
        .collect();
    assert_eq!(makers, vec![(1, 6), (2, 2)]);
}

#[test]
fn market_order_sweeps_and_never_rests() {
    let mut e = engine();
    e.apply(&Order::limit(1, "S", Sell, 100, 10).build());
    e.apply(&Order::limit(2, "S", Sell, 200, 10).build());
    let ev = e.apply(&Order::market(3, "B", Buy, 25).build());
    let t: Vec<_> = trades(&ev).iter().map(|t| (t.price, t.quantity)).collect();
    assert_eq!(t, vec![(100, 10), (200, 10)]);
    assert_eq!(
        statuses(&ev).last(),
        Some(&(3, Cancelled(MarketRemainder), 20, 0))
    );
    assert_eq!(e.best(XYZ, Buy), None);
    assert_eq!(e.resting_count(), 0);
    // Market order into an empty book: accepted, nothing traded, cancelled.
    let ev = e.apply(&Order::market(4, "B", Buy, 5).build());
    assert_eq!(statuses(&ev), vec![(4, Cancelled(MarketRemainder), 0, 0)]);
    // GTC on a market order is treated as IOC.
    let mut m = Order::market(5, "B", Sell, 5);
    m.cmd.time_in_force = TimeInForce::Gtc;
    let ev = e.apply(&m.build());
    assert!(matches!(ev[0].body, EventBody::Accepted(a) if a.time_in_force == TimeInForce::Ioc));
    assert_eq!(e.resting_count(), 0);
}

#[test]
fn ioc_remainder_is_cancelled() {
    let mut e = engine();
    e.apply(&Order::limit(1, "S", Sell, 100, 10).build());
    let ev = e.apply(
        &Order::limit(2, "B", Buy, 100, 25)
            .tif(TimeInForce::Ioc)
            .build(),
    );
    assert_eq!(trades(&ev).len(), 1);
    assert_eq!(
        statuses(&ev),
        vec![
            (1, Filled, 10, 0),
            (2, PartiallyFilled, 10, 15),
            (2, Cancelled(IocRemainder), 10, 0)
        ]
    );
    let u = updates(&ev);
    assert_eq!(
        u.last().unwrap().quantity,
        25,
        "cancelled qty = quantity - filled = 15"
    );
    assert_eq!(e.best(XYZ, Buy), None, "IOC remainder must not rest");
    // IOC that cannot trade at all.
    let ev = e.apply(
        &Order::limit(3, "B", Buy, 99, 5)
            .tif(TimeInForce::Ioc)
            .build(),
    );
    assert_eq!(statuses(&ev), vec![(3, Cancelled(IocRemainder), 0, 0)]);
}

#[test]
fn fok_fills_completely_or_not_at_all() {
    let mut e = engine();
    e.apply(&Order::limit(1, "S1", Sell, 100, 10).build());
    e.apply(&Order::limit(2, "S2", Sell, 101, 10).build());
    let before = e.depth(XYZ, 5);
    // 25 > 20 available within the limit: killed, no trades, book untouched.
    let ev = e.apply(
        &Order::limit(3, "B", Buy, 101, 25)
            .tif(TimeInForce::Fok)
            .build(),
    );
    assert!(trades(&ev).is_empty());
    assert_eq!(statuses(&ev), vec![(3, Cancelled(FokUnfillable), 0, 0)]);
    assert_eq!(e.depth(XYZ, 5), before);
    // Enough only beyond the limit: still killed.
    let ev = e.apply(
        &Order::limit(4, "B", Buy, 100, 15)
            .tif(TimeInForce::Fok)
            .build(),
    );
    assert!(trades(&ev).is_empty());
    // Exactly fillable across two levels: fills fully.
    let ev = e.apply(
        &Order::limit(5, "B", Buy, 101, 20)
            .tif(TimeInForce::Fok)
            .build(),
    );
    assert_eq!(trades(&ev).iter().map(|t| t.quantity).sum::<u64>(), 20);
    assert_eq!(statuses(&ev).last(), Some(&(5, Filled, 20, 0)));
    // A market FOK.
    e.apply(&Order::limit(6, "S1", Sell, 100, 5).build());
    let ev = e.apply(&Order::market(7, "B", Buy, 6).tif(TimeInForce::Fok).build());
    assert_eq!(statuses(&ev), vec![(7, Cancelled(FokUnfillable), 0, 0)]);
}

#[test]
fn post_only_rests_or_is_rejected_without_trading() {
    let mut e = engine();
    e.apply(&Order::limit(1, "S", Sell, 100, 10).build());
    let ev = e.apply(&Order::limit(2, "B", Buy, 100, 5).post_only().build());
    assert_eq!(rejection(&ev), Some(RejectReason::PostOnlyWouldCross));
    assert!(trades(&ev).is_empty());
    assert!(e.order(2).is_none());
    let ev = e.apply(&Order::limit(3, "B", Buy, 99, 5).post_only().build());
    assert_eq!(statuses(&ev), vec![(3, New, 0, 5)]);
    // Rejected post-only did not consume its id.
    let ev = e.apply(&Order::limit(2, "B", Buy, 98, 5).build());
    assert_eq!(rejection(&ev), None);
    // Post-only makes no sense with IOC/FOK or market.
    let ev = e.apply(
        &Order::limit(4, "B", Buy, 90, 5)
            .post_only()
            .tif(TimeInForce::Ioc)
            .build(),
    );
    assert_eq!(rejection(&ev), Some(RejectReason::PostOnlyNotAllowed));
    let ev = e.apply(&Order::market(5, "B", Buy, 5).post_only().build());
    assert_eq!(rejection(&ev), Some(RejectReason::PostOnlyNotAllowed));
}

#[test]
fn self_trade_prevention_cancels_the_incoming_remainder() {
    let mut e = engine();
    e.apply(&Order::limit(1, "OTHER", Sell, 99, 10).build());
    e.apply(&Order::limit(2, "ME", Sell, 100, 10).build());
    e.apply(&Order::limit(3, "OTHER", Sell, 100, 10).build());
    let ev = e.apply(&Order::limit(4, "ME", Buy, 100, 30).build());
    // Trades with the other trader at 99, then meets its own order at 100 and stops.
    let t: Vec<_> = trades(&ev)
        .iter()
        .map(|t| (t.maker_order_id, t.quantity))
        .collect();
    assert_eq!(t, vec![(1, 10)]);
    assert_eq!(
        statuses(&ev).last(),
        Some(&(4, Cancelled(SelfTradePrevention), 10, 0))
    );
    // The resting own order and the order behind it are untouched.
    assert_eq!(e.order(2).unwrap().leaves, 10);
    assert_eq!(e.order(3).unwrap().leaves, 10);
    assert_eq!(e.best(XYZ, Buy), None);
    // FOK that would need to cross its own order is unfillable.
    let ev = e.apply(
        &Order::limit(5, "ME", Buy, 100, 5)
            .tif(TimeInForce::Fok)
            .build(),
    );
    assert_eq!(statuses(&ev), vec![(5, Cancelled(FokUnfillable), 0, 0)]);
    // Nothing is ever traded between the same trader.
    assert!(trades(&ev).iter().all(|t| t.maker_trader != t.taker_trader));
}

#[test]
fn cancel_rules() {
    let mut e = engine();
    e.apply(&Order::limit(1, "A", Buy, 100, 10).build());
    assert_eq!(
        rejection(&e.apply(&cancel(1, "B"))),
        Some(RejectReason::NotOrderOwner)
    );
    let wrong_instrument = Command::Cancel(kappa_engine::CancelOrder {
        order_id: 1,
        trader: id("A"),
        instrument: id("ABC"),
    });
    assert_eq!(
        rejection(&e.apply(&wrong_instrument)),
        Some(RejectReason::InstrumentMismatch)
    );
    let ev = e.apply(&cancel(1, "A"));
    assert_eq!(statuses(&ev), vec![(1, Cancelled(Requested), 0, 0)]);
    assert_eq!(updates(&ev)[0].quantity, 10);
    assert_eq!(e.best(XYZ, Buy), None);
    assert_eq!(
        rejection(&e.apply(&cancel(1, "A"))),
        Some(RejectReason::OrderNotActive)
    );
    assert_eq!(
        rejection(&e.apply(&cancel(77, "A"))),
        Some(RejectReason::UnknownOrder)
    );
    // Cancel of a filled order.
    e.apply(&Order::limit(2, "A", Buy, 100, 10).build());
    e.apply(&Order::limit(3, "B", Sell, 100, 10).build());
    assert_eq!(
        rejection(&e.apply(&cancel(2, "A"))),
        Some(RejectReason::OrderNotActive)
    );
    let unknown_symbol = Command::Cancel(kappa_engine::CancelOrder {
        order_id: 2,
        trader: id("A"),
        instrument: id("NOPE"),
    });
    assert_eq!(
        rejection(&e.apply(&unknown_symbol)),
        Some(RejectReason::UnknownInstrument)
    );
}

#[test]
fn amend_quantity_down_keeps_priority_up_loses_it() {
    let mut e = engine();
    e.apply(&Order::limit(1, "A", Sell, 100, 10).build());
    e.apply(&Order::limit(2, "B", Sell, 100, 10).build());
    let ev = e.apply(&amend(1, "A", None, Some(4)));
    assert_eq!(statuses(&ev), vec![(1, Amended, 0, 4)]);
    assert_eq!(e.depth(XYZ, 1).asks.levels(), &[lvl(100, 14, 2)]);
    let ev = e.apply(&Order::limit(3, "C", Buy, 100, 4).build());
    assert_eq!(trades(&ev)[0].maker_order_id, 1, "still first in the queue");

    let mut e = engine();
    e.apply(&Order::limit(1, "A", Sell, 100, 10).build());
    e.apply(&Order::limit(2, "B", Sell, 100, 10).build());
    let ev = e.apply(&amend(1, "A", None, Some(15)));
    assert_eq!(statuses(&ev), vec![(1, Amended, 0, 15)]);
    let ev = e.apply(&Order::limit(3, "C", Buy, 100, 4).build());
    assert_eq!(trades(&ev)[0].maker_order_id, 2, "moved behind B");
    assert_eq!(e.depth(XYZ, 1).asks.levels(), &[lvl(100, 21, 2)]);
}

/// FIX's cancel/replace: the new quantity is the order's total. A fill that reached the engine
/// before the amend counts against it — the order never ends larger than asked.
#[test]
fn amend_to_a_total_quantity_counts_what_is_filled() {
    let mut e = engine();
    e.apply(&Order::limit(1, "A", Sell, 100, 10).build());
    e.apply(&Order::limit(2, "B", Buy, 100, 4).build());
    // Total 5 with 4 filled: 1 open (as an open-quantity amend of 5 would have left 5 open).
    let ev = e.apply(&amend_total(1, "A", None, 5));
    assert_eq!(statuses(&ev), vec![(1, Amended, 4, 1)]);
    assert_eq!(updates(&ev)[0].quantity, 5);
    assert_eq!(e.depth(XYZ, 1).asks.levels(), &[lvl(100, 1, 1)]);
    // At or below what is filled: nothing would be open — refused, the order unchanged.
    for total in [4, 3] {
        let ev = e.apply(&amend_total(1, "A", None, total));
        assert_eq!(
            rejection(&ev),
            Some(RejectReason::QuantityNotPositive),
            "{total}"
        );
        assert_eq!(e.order(1).unwrap().leaves, 1);
    }
    // Up, with a new price: total 12 → 8 open at 101.
    let ev = e.apply(&amend_total(1, "A", Some(101), 12));
    assert_eq!(statuses(&ev), vec![(1, Amended, 4, 8)]);
}

#[test]
fn amend_price_loses_priority_and_can_trade() {
    let mut e = engine();
    e.apply(&Order::limit(1, "A", Sell, 101, 10).build());
    e.apply(&Order::limit(2, "B", Sell, 100, 10).build());
    e.apply(&Order::limit(3, "C", Buy, 98, 10).build());
    // Move A to 100: behind B.
    e.apply(&amend(1, "A", Some(100), None));
    let ev = e.apply(&Order::limit(4, "D", Buy, 100, 5).build());
    assert_eq!(trades(&ev)[0].maker_order_id, 2);
    // Move C's bid up through the asks: it trades as a taker at the resting prices.
    let ev = e.apply(&amend(3, "C", Some(100), Some(20)));
    assert_eq!(statuses(&ev)[0], (3, Amended, 0, 20));
    let t: Vec<_> = trades(&ev)
        .iter()
        .map(|t| {
            (
                t.maker_order_id,
                t.taker_order_id,
                t.price,
                t.quantity,
                t.aggressor,
            )
        })
        .collect();
    assert_eq!(t, vec![(2, 3, 100, 5, Buy), (1, 3, 100, 10, Buy)]);
    assert_eq!(statuses(&ev).last(), Some(&(3, PartiallyFilled, 15, 5)));
    assert_eq!(e.order(3).unwrap().price, 100);
    assert_eq!(e.best(XYZ, Buy), Some(100));
    assert_eq!(e.best(XYZ, Sell), None);
}

#[test]
fn amend_rejections() {
    let mut e = engine();
    e.apply(&Order::limit(1, "A", Sell, 101, 10).post_only().build());
    e.apply(&Order::limit(2, "B", Buy, 99, 10).build());
    // A post-only order may not be amended into a cross; it stays as it was.
    assert_eq!(
        rejection(&e.apply(&amend(1, "A", Some(99), None))),
        Some(RejectReason::PostOnlyWouldCross)
    );
    assert_eq!(e.order(1).unwrap().price, 101);
    assert_eq!(
        rejection(&e.apply(&amend(1, "A", None, None))),
        Some(RejectReason::AmendNothingToChange)
    );
    assert_eq!(
        rejection(&e.apply(&amend(1, "B", None, Some(1)))),
        Some(RejectReason::NotOrderOwner)
    );
    assert_eq!(
        rejection(&e.apply(&amend(9, "A", None, Some(1)))),
        Some(RejectReason::UnknownOrder)
    );
    assert_eq!(
        rejection(&e.apply(&amend(1, "A", None, Some(0)))),
        Some(RejectReason::QuantityNotPositive)
    );
    e.apply(&cancel(1, "A"));
    assert_eq!(
        rejection(&e.apply(&amend(1, "A", None, Some(1)))),
        Some(RejectReason::OrderNotActive)
    );
}

#[test]
fn self_trade_on_amend_cancels_the_amended_order() {
    let mut e = engine();
    e.apply(&Order::limit(1, "A", Sell, 100, 10).build());
    e.apply(&Order::limit(2, "A", Buy, 98, 10).build());
    let ev = e.apply(&amend(2, "A", Some(100), None));
    assert!(trades(&ev).is_empty());
    assert_eq!(
        statuses(&ev),
        vec![
            (2, Amended, 0, 10),
            (2, Cancelled(SelfTradePrevention), 0, 0)
        ]
    );
    assert!(e.order(2).is_none());
    assert_eq!(e.order(1).unwrap().leaves, 10);
}

#[test]
fn duplicate_order_ids_are_rejected_even_after_the_order_finished() {
    // (Within the default window of finished ids.)
    let mut e = engine();
    e.apply(&Order::limit(1, "A", Buy, 100, 10).build());
    assert_eq!(
        rejection(&e.apply(&Order::limit(1, "B", Sell, 200, 1).build())),
        Some(RejectReason::DuplicateOrderId)
    );
    e.apply(&cancel(1, "A"));
    assert_eq!(
        rejection(&e.apply(&Order::limit(1, "A", Buy, 100, 10).build())),
        Some(RejectReason::DuplicateOrderId)
    );
    // IOC/FOK orders that never rested also consume their id.
    e.apply(
        &Order::limit(2, "A", Buy, 100, 10)
            .tif(TimeInForce::Ioc)
            .build(),
    );
    assert_eq!(
        rejection(&e.apply(&Order::limit(2, "A", Buy, 100, 10).build())),
        Some(RejectReason::DuplicateOrderId)
    );
}

#[test]
fn finished_ids_stay_reserved_for_the_window_then_are_forgotten() {
    use kappa_engine::EngineConfig;
    let config = EngineConfig {
        finished_ids_window: 2,
        ..EngineConfig::default()
    };
    let mut e = Engine::with_config(instruments(), config);
    // Orders 1, 2, 3 finish in that order (cancel, IOC, fill); 4 rests.
    e.apply(&Order::limit(1, "A", Buy, 100, 10).build());
    e.apply(&cancel(1, "A"));
    e.apply(
        &Order::limit(2, "A", Buy, 100, 10)
            .tif(TimeInForce::Ioc)
            .build(),
    );
    e.apply(&Order::limit(4, "B", Sell, 101, 5).build());
    e.apply(&Order::limit(3, "A", Buy, 101, 5).build());
    let reuse =
        |e: &mut Engine, id| rejection(&e.apply(&Order::limit(id, "C", Buy, 90, 1).build()));
    // Maker 4's final update is emitted before taker 3's: the window holds [4, 3], and 1 and 2
    // are forgotten.
    assert_eq!(reuse(&mut e, 3), Some(RejectReason::DuplicateOrderId));
    assert_eq!(reuse(&mut e, 4), Some(RejectReason::DuplicateOrderId));
    assert_eq!(reuse(&mut e, 2), None, "forgotten: accepted again");
    assert_eq!(
        reuse(&mut e, 2),
        Some(RejectReason::DuplicateOrderId),
        "now live"
    );
    // A cancel of a forgotten id is an unknown order; of a remembered one, not active.
    assert_eq!(
        rejection(&e.apply(&cancel(1, "A"))),
        Some(RejectReason::UnknownOrder)
    );
    assert_eq!(
        rejection(&e.apply(&cancel(3, "A"))),
        Some(RejectReason::OrderNotActive)
    );
}

#[test]
fn validation_rejects_with_specific_reasons() {
    let mut e = engine();
    let cases: Vec<(Command, RejectReason)> = vec![
        (
            Order::limit(1, "A", Buy, 100, 1).on("NOPE").build(),
            RejectReason::UnknownInstrument,
        ),
        (
            Order::limit(1, "A", Buy, 0, 1).build(),
            RejectReason::PriceNotPositive,
        ),
        (
            Order::limit(1, "A", Buy, -5, 1).build(),
            RejectReason::PriceNotPositive,
        ),
        (
            Order::limit(1, "A", Buy, 100_001, 1).build(),
            RejectReason::PriceTooLarge,
        ),
        (
            Order::limit(1, "A", Buy, 100, 0).build(),
            RejectReason::QuantityNotPositive,
        ),
        (
            Order::limit(1, "A", Buy, 100, -1).build(),
            RejectReason::QuantityNotPositive,
        ),
        (
            Order::limit(1, "A", Buy, 100, 100_001).build(),
            RejectReason::QuantityTooLarge,
        ),
    ];
    for (cmd, reason) in cases {
        let ev = e.apply(&cmd);
        assert_eq!(ev.len(), 1);
        assert_eq!(rejection(&ev), Some(reason), "{cmd:?}");
    }
    // Off-tick / off-lot on ABC (tick 0.5, lot 0.1).
    let mut o = Order::limit(1, "A", Buy, 0, 1).on("ABC");
    o.cmd.price = Some(d("10.25"));
    o.cmd.quantity = d("1");
    assert_eq!(
        rejection(&e.apply(&o.build())),
        Some(RejectReason::PriceOffTick)
    );
    o.cmd.price = Some(d("10.5"));
    o.cmd.quantity = d("1.05");
    assert_eq!(
        rejection(&e.apply(&o.build())),
        Some(RejectReason::QuantityOffLot)
    );
    o.cmd.quantity = d("1.1");
    assert_eq!(rejection(&e.apply(&o.build())), None);
    // Limit without price, market with price.
    let mut o = Order::limit(2, "A", Buy, 100, 1);
    o.cmd.price = None;
    assert_eq!(
        rejection(&e.apply(&o.build())),
        Some(RejectReason::PriceMissing)
    );
    let mut o = Order::market(2, "A", Buy, 1);
    o.cmd.price = Some(d("100"));
    assert_eq!(
        rejection(&e.apply(&o.build())),
        Some(RejectReason::PriceNotAllowed)
    );
    // Absurd decimals never panic.
    let mut o = Order::limit(3, "A", Buy, 100, 1);
    o.cmd.price = Some(rust_decimal::Decimal::MAX);
    o.cmd.quantity = rust_decimal::Decimal::MAX;
    assert_eq!(
        rejection(&e.apply(&o.build())),
        Some(RejectReason::PriceTooLarge)
    );
    // Rejections did not consume ids or touch the book.
    assert_eq!(e.resting_count(), 1);
}

#[test]
fn integer_fast_path_validates_too() {
    let mut e = engine();
    let mut out = Vec::new();
    let bad = kappa_engine::Request::New(kappa_engine::NewRequest {
        order_id: 1,
        trader: id("A"),
        instrument: InstrumentId(9),
        side: Buy,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(10),
        quantity: 1,
    });
    e.execute(bad, &mut out);
    assert_eq!(rejection(&out), Some(RejectReason::UnknownInstrument));
    if let kappa_engine::Request::New(mut n) = bad {
        n.instrument = XYZ;
        n.price = Some(i64::MAX);
        out.clear();
        e.execute(kappa_engine::Request::New(n), &mut out);
        assert_eq!(rejection(&out), Some(RejectReason::PriceTooLarge));
    }
}

#[test]
fn seed_order_format_is_accepted_on_tcs() {
    let instruments =
        kappa_engine::Instruments::from_toml_str(include_str!("../../../data/instruments.toml"))
            .unwrap();
    let mut e = Engine::new(instruments);
    // {"id":1000001,"instrument":"TCS","trxn_type":"BUY","quantity":5.0,"price":15.0,...}
    let cmd = Command::New(NewOrder {
        order_id: 1_000_001,
        trader: id("default"),
        instrument: id("TCS"),
        side: Buy,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(d("15.0")),
        quantity: d("5.0"),
    });
    let ev = e.apply(&cmd);
    assert_eq!(statuses(&ev), vec![(1_000_001, New, 0, 5)]);
    let tcs = e.instruments().id("TCS").unwrap();
    assert_eq!(
        e.instruments()
            .ticks_to_price(tcs, e.best(tcs, Buy).unwrap()),
        d("15.00")
    );
}

#[test]
fn depth_aggregates_top_levels_and_is_emitted_only_on_change() {
    let mut e = engine();
    let mut out = Vec::new();
    for (i, p) in [100, 99, 98, 97, 96, 95, 94].iter().enumerate() {
        e.apply(&Order::limit(i as u64 + 1, "A", Buy, *p, 10).build());
    }
    e.apply(&Order::limit(20, "B", Buy, 100, 5).build());
    e.apply(&Order::limit(21, "C", Sell, 102, 7).build());
    let d = e.depth(XYZ, 5);
    assert_eq!(
        d.bids.levels(),
        &[
            lvl(100, 15, 2),
            lvl(99, 10, 1),
            lvl(98, 10, 1),
            lvl(97, 10, 1),
            lvl(96, 10, 1)
        ]
    );
    assert_eq!(d.asks.levels(), &[lvl(102, 7, 1)]);
    e.drain_depth(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].depth, d);
    assert_eq!(out[0].seq + 1, e.next_seq());
    // A change below the top 5 emits nothing.
    e.apply(&cancel(7, "A"));
    out.clear();
    e.drain_depth(&mut out);
    assert!(out.is_empty());
    // A change that is undone before the next drain emits nothing.
    e.apply(&Order::limit(30, "D", Sell, 101, 1).build());
    e.apply(&cancel(30, "D"));
    e.drain_depth(&mut out);
    assert!(out.is_empty());
    // A change in the top 5 emits once, conflated.
    e.apply(&Order::limit(31, "D", Sell, 101, 1).build());
    e.apply(&Order::limit(32, "D", Sell, 101, 2).build());
    e.drain_depth(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].depth.asks.levels()[0], lvl(101, 3, 2));
    // Removing a top level brings the 6th level into view.
    out.clear();
    e.apply(&cancel(1, "A"));
    e.apply(&cancel(20, "B"));
    e.drain_depth(&mut out);
    assert_eq!(out[0].depth.bids.levels().last(), Some(&lvl(95, 10, 1)));
}

#[test]
fn snapshot_restore_continues_identically() {
    let mut a = engine();
    a.apply(&Order::limit(1, "A", Buy, 100, 10).build());
    a.apply(&Order::limit(2, "B", Sell, 103, 10).build());
    let snap = serde_json::to_string(&a).unwrap();
    let mut b: Engine = serde_json::from_str(&snap).unwrap();
    let cmds = [
        Order::limit(3, "C", Sell, 100, 4).build(),
        amend(2, "B", Some(101), None),
        Order::limit(1, "Z", Buy, 1, 1).build(),
        Order::market(4, "D", Buy, 30).build(),
    ];
    for c in &cmds {
        assert_eq!(a.apply(c), b.apply(c));
    }
    let (mut da, mut db) = (Vec::new(), Vec::new());
    a.drain_depth(&mut da);
    b.drain_depth(&mut db);
    assert_eq!(da, db);
}
