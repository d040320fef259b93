//! Counts, rates over sliding windows, trends.

use lumen_proto::flow::DropReason;

use super::*;
use crate::{Counted, Window};

#[test]
fn every_verdict_is_counted_once_with_its_reason() {
    let mut model = Model::new(Default::default());
    let flow = || tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432);
    feed(&mut model, (0..5).map(|i| flow().at(i)));
    feed(
        &mut model,
        [
            flow().at(5).dropped(DropReason::PolicyDenied),
            flow().at(6).dropped(DropReason::CtMissingTcpAckFlag),
            flow().at_ms(7_250).audit(),
            flow().at(8).audit(),
            // Late: older than the newest, so not the last verdict.
            flow().at(3).dropped(DropReason::PolicyDenied),
        ],
    );
    let s = snap(&model, 10);
    let c = conn(&s.connections, "shop/web", "shop/db", 5432);
    assert_eq!((c.flows, c.forwarded, c.dropped, c.audit), (10, 5, 3, 2));
    assert_eq!(c.last_verdict, "AUDIT");
    assert_eq!((c.first_seen_ms, c.last_seen_ms), ((T0 * 1000), (T0 + 8) * 1000));
    assert_eq!(
        c.drop_reasons,
        [
            Counted {
                key: "POLICY_DENIED".into(),
                count: 2
            },
            Counted {
                key: "CT_MISSING_TCP_ACK_FLAG".into(),
                count: 1
            }
        ]
    );
    assert_eq!((c.drop_reasons_other, c.policies.len()), (0, 0));
    let t = &s.totals;
    assert_eq!(
        (t.flows, t.forwarded, t.dropped, t.audit, t.lost_events),
        (10, 5, 3, 2, 0)
    );
    assert_eq!((t.first_ms, t.latest_ms), (Some(T0 * 1000), Some((T0 + 8) * 1000)));
    // 10 flows and 3 drops over the 10 s before T0+10.
    assert_eq!((c.flows_per_sec, c.drops_per_sec, c.drop_pct), (1.0, 0.3, 30.0));
    assert_eq!((t.flows_per_sec, t.drops_per_sec), (1.0, 0.3));
}

#[test]
fn rates_cover_whole_seconds_across_bucket_boundaries_and_expire() {
    let mut model = Model::new(Default::default());
    // Three flows in each of the seconds 0..30, at the start, inside and at
    // the very end of the second.
    for s in 0..30 {
        for ms in [0, 400, 999] {
            model.ingest(
                &tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432)
                    .at_ms(s * 1000 + ms)
                    .into_flow(),
            );
        }
    }
    let rates = |now_ms: u64| {
        let s = model.snapshot(at_ms(now_ms), Windows::default());
        let c = conn(&s.connections, "shop/web", "shop/db", 5432).clone();
        (c.flows_per_sec, c.flows_per_sec_long)
    };
    // [20, 30) and [-30, 30): 30 flows / 10 s, 90 flows / 60 s.
    assert_eq!(rates(30_000), (3.0, 1.5));
    // The second in progress does not count, however far into it.
    assert_eq!(rates(30_999), (3.0, 1.5));
    // While 29 is in progress, [19, 29) holds 10 full seconds and [-31, 29) 87 flows.
    assert_eq!(rates(29_500), (3.0, 1.45));
    assert_eq!(rates(35_000), (1.5, 1.5));
    assert_eq!(rates(40_000), (0.0, 1.5));
    // [1, 61): the first second has left the long window.
    assert_eq!(rates(61_000), (0.0, 1.45));
    assert_eq!(rates(90_000), (0.0, 0.0));
    let s = snap(&model, 90);
    assert_eq!(conn(&s.connections, "shop/web", "shop/db", 5432).flows, 90);
}

#[test]
fn a_ten_minute_window_counts_whole_minutes_and_the_current_ones_seconds() {
    let mut model = Model::new(Default::default());
    // 2 flows a second for 11 minutes.
    for s in 0..660 {
        for _ in 0..2 {
            model.ingest(&tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432).at(s).into_flow());
        }
    }
    let windows = Windows {
        short: Window::TEN_MINUTES,
        long: Window::from_secs(120),
    };
    // At 630: minutes 0..10 and 30 s of minute 10, 1260 flows / 630 s.
    let s = model.snapshot(at(630), windows);
    let c = conn(&s.connections, "shop/web", "shop/db", 5432);
    assert_eq!((c.flows_per_sec, c.flows_per_sec_long), (2.0, 2.0));
    // At 700, past the flows: minutes 1..11 hold 1200 flows over 640 s,
    // minutes 9..11 hold 240 over 160 s.
    let s = model.snapshot(at(700), windows);
    let c = conn(&s.connections, "shop/web", "shop/db", 5432);
    assert_eq!((c.flows_per_sec, c.flows_per_sec_long), (1200.0 / 640.0, 1.5));
}

#[test]
fn late_flows_count_in_the_second_they_happened() {
    let mut model = Model::new(Default::default());
    let flow = |s| tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432).at(s);
    feed(&mut model, [flow(20), flow(12), flow(12), flow(25)]);
    let s = snap(&model, 21);
    // [11, 21): 12, 12, 20.
    assert_eq!(conn(&s.connections, "shop/web", "shop/db", 5432).flows_per_sec, 0.3);
    assert_eq!(
        s.totals.history[60 - 9],
        2,
        "second 12 is 9 before 20, the last completed one"
    );
    assert_eq!(s.totals.history.iter().sum::<u32>(), 3, "25 is in the future of T0+21");
}

#[test]
fn the_header_history_and_workload_trends_are_sixty_seconds_oldest_first() {
    let mut model = Model::new(Default::default());
    for s in 0..70 {
        for _ in 0..(s % 3) {
            model.ingest(&tcp(web(1), "10.0.1.5", 40000, db(), "10.0.2.7", 5432).at(s).into_flow());
        }
    }
    let s = snap(&model, 70);
    let expected: Vec<u32> = (10..70).map(|s| s % 3).collect();
    assert_eq!(s.totals.history, expected);
    assert_eq!(workload(&s.workloads, "shop/web").trend, expected);
    assert_eq!(workload(&s.workloads, "shop/db").trend, expected);
}
