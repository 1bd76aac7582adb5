//! Topics on a real Kafka cluster, created by the project's own code through the Admin API: the
//! configs of the layout, idempotence, and refusal of existing topics that cannot work.
//!
//! Real broker only: the embedded mock has no CreateTopics, no topic configs and no
//! DescribeConfigs (it keeps `MockCluster::create_topic`, covered by every mock test).

mod support;

use kappa_exchange::runtime::broker::{ensure_topics, Ensured};
use kappa_exchange::runtime::kafka::{read_topic, KafkaArgs};
use kappa_exchange::topics::{Topic, TopicLayout};
use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::Duration;
use support::{admin, block_on, real_kafka};

fn namespace(name: &str) -> KafkaArgs {
    let mut k = KafkaArgs::new(real_kafka());
    k.topic_prefix = format!(
        "{name}-{}-{}.",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    k
}

fn config_of(k: &KafkaArgs, topic: &str, key: &str) -> Option<String> {
    let r = block_on(
        admin(k).describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
    )
    .unwrap();
    let res = r.into_iter().next().unwrap().unwrap();
    res.get(key).and_then(|e| e.value.clone())
}

#[test]
fn kafka_topics_are_created_with_the_layouts_configs_idempotently() {
    let k = namespace("created");
    let layout = TopicLayout::default();
    let plan = layout.plan(&k.topic_prefix);
    let first = ensure_topics(&k, &plan).unwrap();
    assert_eq!(first.len(), 9);
    assert!(
        first.iter().all(|(_, e)| *e == Ensured::Created),
        "{first:?}"
    );
    let t = k.topics();
    assert_eq!(
        config_of(&k, &t.orders, "cleanup.policy").as_deref(),
        Some("delete")
    );
    assert_eq!(
        config_of(&k, &t.orders, "retention.ms").as_deref(),
        Some("-1")
    );
    assert_eq!(
        config_of(&k, &t.orders, "message.timestamp.type").as_deref(),
        Some("LogAppendTime")
    );
    assert_eq!(
        config_of(&k, &t.book, "cleanup.policy").as_deref(),
        Some("compact,delete")
    );
    assert_eq!(
        config_of(&k, &t.order_events, "retention.ms"),
        Some(Topic::OrderEvents.spec().retention_ms.to_string())
    );
    assert_eq!(
        config_of(&k, &t.trades, "min.insync.replicas").as_deref(),
        Some("1")
    );
    // Partition counts as laid out.
    let reader = kappa_exchange::runtime::kafka::create_reader(&k.reader()).unwrap();
    for (name, n) in layout.topics(&k.topic_prefix) {
        assert_eq!(
            kappa_exchange::runtime::kafka::partition_count(&reader, &name).unwrap(),
            n,
            "{name}"
        );
    }

    // Again: nothing to create, nothing to note.
    let second = ensure_topics(&k, &plan).unwrap();
    assert!(
        second.iter().all(|(_, e)| *e == Ensured::Kept(vec![])),
        "{second:?}"
    );

    // The broker stamps orders on arrival, whatever the client set (here: the epoch).
    let producer: BaseProducer = k.producer().create().unwrap();
    let before = chrono::Utc::now().timestamp_millis();
    producer
        .send(
            BaseRecord::to(&t.orders)
                .partition(0)
                .key("TCS")
                .payload("{}")
                .timestamp(0),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    let mut stamps = Vec::new();
    read_topic(&reader, &t.orders, |m| stamps.push(m.timestamp())).unwrap();
    assert_eq!(stamps.len(), 1);
    match stamps[0] {
        Timestamp::LogAppendTime(ms) => assert!(ms >= before - 1_000, "{ms} vs {before}"),
        other => panic!("orders must carry the broker's time, got {other:?}"),
    }
}

#[test]
fn kafka_existing_topics_that_cannot_work_are_refused_with_the_reason() {
    let layout = TopicLayout::default();

    // Partition count: which partition holds an instrument depends on it.
    let k = namespace("partitions");
    let other = TopicLayout {
        orders: 3,
        ..TopicLayout::default()
    };
    ensure_topics(&k, &other.plan(&k.topic_prefix)).unwrap();
    let err = ensure_topics(&k, &layout.plan(&k.topic_prefix))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("orders exists with 3 partitions, the layout needs 4"),
        "{err}"
    );

    // A compacted orders topic would lose orders; a CreateTime one lets clients set the
    // exchange's time.
    for (name, configs, want) in [
        (
            "compacted",
            vec![
                ("cleanup.policy", "compact"),
                ("message.timestamp.type", "LogAppendTime"),
            ],
            "cleanup.policy=compact",
        ),
        ("createtime", vec![], "message.timestamp.type=CreateTime"),
    ] {
        let k = namespace(name);
        let orders = k.topics().orders;
        let topic = configs.iter().fold(
            NewTopic::new(&orders, 4, TopicReplication::Fixed(1)),
            |t, (key, v)| t.set(key, v),
        );
        let created = block_on(admin(&k).create_topics(&[topic], &AdminOptions::new())).unwrap();
        assert!(created[0].is_ok(), "{created:?}");
        let err = ensure_topics(&k, &layout.plan(&k.topic_prefix))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn kafka_topics_command_creates_checks_and_deletes() {
    let k = namespace("cli");
    let kappa = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kappa"))
            .args(args)
            .args(["--brokers", real_kafka(), "--topic-prefix", &k.topic_prefix])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let created = kappa(&["topics", "create", "--layout", "embedded", "--side-outputs"]);
    assert_eq!(created.matches("created ").count(), 23, "{created}");
    assert!(created.contains(&format!("created {}replay.analytics", k.topic_prefix)));
    let again = kappa(&["topics", "create", "--layout", "embedded", "--side-outputs"]);
    assert_eq!(again.matches("exists  ").count(), 23, "{again}");
    let deleted = kappa(&["topics", "delete"]);
    assert_eq!(deleted.matches("deleted ").count(), 23, "{deleted}");
}

#[test]
fn kafka_the_generator_counts_only_delivered_orders_and_fails_loudly_on_a_lost_one() {
    // A topic whose size limit refuses one of the orders: the broker rejects it in the delivery
    // report, after the producer accepted it (the generator used to count it as published).
    let k = namespace("deliveries");
    let topic = format!("{}tiny", k.topic_prefix);
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "1000");
    let created = block_on(admin(&k).create_topics(&[new], &AdminOptions::new())).unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let small = |i: u64| {
        (
            format!("k{i}"),
            format!("{{\"id\":{i}}}").into_bytes(),
            None,
        )
    };
    let shutdown = kappa_exchange::runtime::shutdown::Shutdown::new();
    let ok = kappa_exchange::generator::publish_to(
        &k,
        &Default::default(),
        &topic,
        (0..50).map(small),
        50,
        &shutdown,
    )
    .unwrap();
    assert_eq!(ok.published, 50);
    // Incompressible (the producer compresses with lz4), and alone in its batch.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..5_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let big = std::iter::once(("big".to_string(), noise, None));
    let err =
        kappa_exchange::generator::publish_to(&k, &Default::default(), &topic, big, 1, &shutdown)
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("1 of 1 orders were not delivered (0 were)"),
        "{err}"
    );
    assert!(err.contains("5000 bytes"), "{err}");
    let _ = block_on(admin(&k).delete_topics(&[&topic], &AdminOptions::new()));
}
