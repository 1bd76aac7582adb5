//! Kafka client configuration and the small Kafka utilities every job shares: provenance
//! headers, partition counts, and scanning output topics for what was already published.
//!
//! Every job takes [`KafkaArgs`]: `--brokers` (env `KAFKA_BROKERS`) and repeatable
//! `-X key=value` passed straight to librdkafka, applied last so they override the defaults here
//! (SASL/TLS work unchanged: `-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 …`;
//! in a pod the same settings come from `KAFKA_CONFIG`, and the password from `KAFKA_SASL_PASSWORD`).

use crate::topics::{Topics, HDR_PROVENANCE};
use anyhow::{anyhow, Context};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Connection settings shared by all jobs.
#[derive(clap::Args, Clone, Debug)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "localhost:9092")]
    pub brokers: String,
    /// Extra librdkafka setting, repeatable: -X security.protocol=SASL_SSL (env KAFKA_CONFIG:
    /// settings separated by `;`).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_kv, env = "KAFKA_CONFIG", value_delimiter = ';')]
    pub config: Vec<(String, String)>,
    /// SASL user name (sets `sasl.username`): each job has its own identity and ACLs
    /// (k8s/users.yaml).
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password (sets `sasl.password`), from the environment so it never shows in a
    /// process listing.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<String>,
    /// Prefix for every topic name, consumer group and transactional id: a namespace, so several
    /// pipelines (tests, demos, staging) can share one cluster.
    #[arg(long, env = "KAFKA_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
}

/// Parses `KEY=VALUE` (a librdkafka setting).
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// The `group.id` of readers ([`KafkaArgs::reader`]): never joined, never committed to.
pub const READER_GROUP: &str = "kappa-reader";

impl KafkaArgs {
    /// Settings for `brokers` with no extras.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaArgs {
            brokers: brokers.into(),
            config: Vec::new(),
            sasl_username: None,
            sasl_password: None,
            topic_prefix: String::new(),
        }
    }

    /// The topic names.
    pub fn topics(&self) -> Topics {
        Topics::with_prefix(&self.topic_prefix)
    }

    /// The topic names a job writes to: with `--output-prefix` (e.g. `replay.`) added to the
    /// topic prefix, so a replay or backfill publishes side by side with the live topics.
    pub fn output_topics(&self, output_prefix: Option<&str>) -> Topics {
        Topics::with_prefix(&format!(
            "{}{}",
            self.topic_prefix,
            output_prefix.unwrap_or("")
        ))
    }

    fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.config {
            c.set(k, v);
        }
        if let Some(u) = &self.sasl_username {
            c.set("sasl.username", u);
        }
        if let Some(p) = &self.sasl_password {
            c.set("sasl.password", p);
        }
        c
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c
    }

    /// The changelog topic (snapshots) of `job`, beside its outputs (`--output-prefix`).
    pub fn changelog_topic(&self, output_prefix: Option<&str>, job: &str) -> String {
        super::snapshot::changelog_topic(
            &format!("{}{}", self.topic_prefix, output_prefix.unwrap_or("")),
            job,
        )
    }

    /// The consumer group id of `group` in this namespace (`--topic-prefix`).
    pub fn group_id(&self, group: &str) -> String {
        format!("{}{group}", self.topic_prefix)
    }

    /// The transactional id `id` in this namespace (`--topic-prefix`).
    pub fn transactional_id(&self, id: &str) -> String {
        format!("{}{id}", self.topic_prefix)
    }

    /// An admin client (CreateTopics, DescribeConfigs, DeleteTopics).
    pub fn admin(&self) -> ClientConfig {
        self.finish(self.base())
    }

    /// An idempotent producer tuned for throughput (batching, lz4).
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            // The send buffer is bounded well below every pod's memory limit (it was 1 GiB, the
            // match maker's whole limit): 128 MiB is ~100 batches of 5 000 orders' outputs;
            // past it, sends wait for deliveries (QueueFull is retried).
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "131072")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "120000")
            // The broker answers CONCURRENT_TRANSACTIONS to the first AddPartitionsToTxn of a
            // transaction while the markers of the previous one are still being written; with
            // the default 100 ms first back-off every transaction waited ~100 ms for it (the
            // Java client retries that case after 20 ms). Back-off grows exponentially from here.
            .set("retry.backoff.ms", "10");
        self.finish(c)
    }

    /// A group consumer that never auto-resets past data and commits only what was processed.
    pub fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", self.group_id(group))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "10")
            .set("queued.min.messages", "200000")
            .set("isolation.level", "read_committed");
        self.finish(c)
    }

    /// A consumer for reading partitions by explicit assignment (no group membership used).
    /// librdkafka's `assign` needs a `group.id`, and with one it looks up the group's
    /// coordinator — Describe on the group in a cluster with ACLs (tests/acl.rs found it) — but
    /// never joins it or commits to it: every job may Describe [`READER_GROUP`], nothing more.
    pub fn reader(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", self.group_id(READER_GROUP))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10")
            .set("isolation.level", "read_committed");
        self.finish(c)
    }
}

/// The client context of readers ([`KafkaArgs::reader`]). With `enable.partition.eof`, librdkafka
/// also reports reaching a partition's end as an error on the client's main queue, which the
/// default context logs at ERROR ("Global error: PartitionEOF"): an expected event for a reader,
/// logged at debug here. Every other error is logged as the default context does.
pub struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason)
    }
}

/// Logs a client-level error as rdkafka's default context does, except a partition's end
/// (`enable.partition.eof`), which is expected and logged at debug.
pub fn log_client_error(error: KafkaError, reason: &str) {
    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
        tracing::debug!("librdkafka: {error}: {reason}");
    } else {
        tracing::error!("librdkafka: {error}: {reason}");
    }
}

impl ConsumerContext for ReaderContext {}

/// A consumer reading partitions by explicit assignment.
pub type Reader = BaseConsumer<ReaderContext>;

/// Creates a reader from `config` (made by [`KafkaArgs::reader`], possibly adjusted).
pub fn create_reader(config: &ClientConfig) -> anyhow::Result<Reader> {
    config
        .create_with_context(ReaderContext)
        .context("creating a Kafka reader")
}

/// Waits until everything `producer` has queued is delivered (or failed), serving its delivery
/// reports. rdkafka's own `flush` (also called by its `commit_transaction`) polls in 100 ms slices
/// that each run to their end, so every flush with anything in flight took at least 100 ms — one
/// per transaction, which capped a transactional match maker at ~40 k orders/s on a real broker.
/// This polls in 1 ms slices instead.
pub fn flush<C, P>(
    producer: &rdkafka::producer::BaseProducer<C, P>,
    timeout: Duration,
) -> Result<(), KafkaError>
where
    C: rdkafka::producer::ProducerContext<P>,
    P: rdkafka::producer::Partitioner,
{
    use rdkafka::producer::Producer as _;
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// Where an output came from: input partition and offset, and its output sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub partition: i32,
    pub offset: i64,
    pub seq: u64,
}

impl Provenance {
    /// The provenance header (`kx`, see [`HDR_PROVENANCE`]) of an output with `origin`, written by
    /// `job`. The value is formatted into `scratch` (reused; librdkafka copies it).
    pub fn headers(origin: &super::job::Origin, job: &str, scratch: &mut Vec<u8>) -> OwnedHeaders {
        encode_provenance(origin, job, scratch);
        OwnedHeaders::new_with_capacity(1).insert(Header {
            key: HDR_PROVENANCE,
            value: Some(scratch.as_slice()),
        })
    }

    /// The job named in a message's provenance header.
    pub fn job_of<M: Message>(msg: &M) -> Option<String> {
        decode_provenance(provenance_value(msg)?).map(|(_, job)| job.to_string())
    }

    /// Reads the provenance header of a message, if present, well-formed and sequenced.
    pub fn of<M: Message>(msg: &M) -> Option<Provenance> {
        let (origin, _) = decode_provenance(provenance_value(msg)?)?;
        Some(Provenance {
            partition: origin.partition,
            offset: origin.offset,
            seq: origin.seq?,
        })
    }
}

fn provenance_value<M: Message>(msg: &M) -> Option<&[u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key == HDR_PROVENANCE)
        .and_then(|h| h.value)
}

/// Writes `PARTITION:OFFSET:SEQ:JOB` (SEQ empty when the output has none) into `out`.
pub fn encode_provenance(origin: &super::job::Origin, job: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(itoa::Buffer::new().format(origin.partition).as_bytes());
    out.push(b':');
    out.extend_from_slice(itoa::Buffer::new().format(origin.offset).as_bytes());
    out.push(b':');
    if let Some(seq) = origin.seq {
        out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    }
    out.push(b':');
    out.extend_from_slice(job.as_bytes());
}

/// Parses a provenance header value; `None` if it is not `PARTITION:OFFSET:SEQ:JOB`.
pub fn decode_provenance(value: &[u8]) -> Option<(super::job::Origin, &str)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut fields = text.splitn(4, ':');
    let partition = fields.next()?.parse().ok()?;
    let offset = fields.next()?.parse().ok()?;
    let seq = match fields.next()? {
        "" => None,
        s => Some(s.parse().ok()?),
    };
    let job = fields.next()?;
    Some((
        super::job::Origin {
            partition,
            offset,
            seq,
        },
        job,
    ))
}

/// Number of partitions of `topic`.
pub fn partition_count<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> anyhow::Result<i32> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("metadata for topic {topic}"))?;
    let t = md
        .topics()
        .first()
        .ok_or_else(|| anyhow!("topic {topic} not in metadata"))?;
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(anyhow!("topic {topic} does not exist (create it first)"));
    }
    Ok(t.partitions().len() as i32)
}

/// The (low, high) watermarks of `topic`/`partition` — for a read_committed client, high is the
/// last stable offset. Retries for up to 30 s while the answer is a transient broker state (a
/// leader moving or just elected, a request timing out, a broker restarting): a real cluster
/// gives those right after a topic is created or a broker restarts.
pub fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> anyhow::Result<(i64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(5)) {
            Ok(w) => return Ok(w),
            Err(e) if is_transient(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => {
                return Err(e).with_context(|| format!("watermarks of {topic}/{partition}"));
            }
        }
    }
}

/// Reads `topic`/`partition` from offset `from` up to (not including) `to`, calling `f` for each
/// message. Returns the number of messages read.
pub fn read_range(
    reader: &Reader,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> anyhow::Result<usize> {
    if from >= to {
        return Ok(0);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    reader.assign(&tpl)?;
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut next = from;
    while next < to {
        if Instant::now() > deadline {
            return Err(anyhow!(
                "timed out reading {topic}/{partition} at {next} (want up to {to})"
            ));
        }
        match reader.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                if m.offset() >= to {
                    break;
                }
                next = m.offset() + 1;
                n += 1;
                f(&m);
            }
            // The end of what this reader may see: the high watermark, or under read_committed
            // the last stable offset. Offsets below `to` may be transaction markers (never
            // delivered), aborted records, or dropped by retention: nothing more to read.
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            // The client reconnects and fetches again by itself (a broker restarting).
            Some(Err(e)) if is_transient(&e) => {
                tracing::debug!("reading {topic}/{partition}: {e}; retrying");
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {topic}/{partition}")),
        }
    }
    reader.unassign()?;
    Ok(n)
}

/// Whether a client error is a passing state of the cluster (a broker down or restarting, a
/// leader moving) that librdkafka recovers from by itself.
pub fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::KafkaError as E;
    use rdkafka::types::RDKafkaErrorCode as Code;
    let code = match e {
        E::MessageConsumption(c) | E::MetadataFetch(c) | E::Global(c) => *c,
        _ => return false,
    };
    matches!(
        code,
        Code::BrokerTransportFailure
            | Code::AllBrokersDown
            | Code::NotLeaderForPartition
            | Code::LeaderNotAvailable
            | Code::RequestTimedOut
            | Code::OperationTimedOut
            | Code::NotCoordinator
            | Code::CoordinatorNotAvailable
            | Code::CoordinatorLoadInProgress
            | Code::BrokerNotAvailable
            | Code::NetworkException
            | Code::UnknownTopicOrPartition
            | Code::OffsetNotAvailable
    )
}

/// Reads `topic`/`partition` backwards from its end in growing windows, no further back than
/// `floor` (-1: the log start), calling `visit` for each message (in offset order within a
/// window), until `enough(state, from)` holds, `from` being the lowest offset read so far.
pub fn scan_backwards<S>(
    reader: &Reader,
    topic: &str,
    partition: i32,
    floor: i64,
    state: &mut S,
    mut visit: impl FnMut(&mut S, &rdkafka::message::BorrowedMessage<'_>),
    enough: impl Fn(&S, i64) -> bool,
) -> anyhow::Result<()> {
    let (low, high) = watermarks(reader, topic, partition)?;
    let low = low.max(floor);
    let mut end = high;
    let mut window = 1024;
    while end > low && !enough(state, end) {
        let start = (end - window).max(low);
        read_range(reader, topic, partition, start, end, |m| visit(state, m))?;
        end = start;
        window *= 4;
    }
    Ok(())
}

/// For every partition `q` of `topic`, the provenance of the last output `job` already published
/// there for each source partition of `floors` (the one with the highest sequence number),
/// looking no further back for source `s` than its floor for `q` (where its last snapshot says
/// later outputs start; -1: the start of the log): key `(source, q)`. Outputs of other jobs
/// sharing the topic are ignored.
pub fn last_published(
    reader: &Reader,
    topic: &str,
    job: &str,
    floors: &[(i32, Vec<i64>)],
) -> anyhow::Result<HashMap<(i32, i32), Provenance>> {
    let mut out = HashMap::new();
    if floors.is_empty() {
        return Ok(out);
    }
    for q in 0..partition_count(reader, topic)? {
        let floor_of = |s: i32| -> i64 {
            floors
                .iter()
                .find(|(p, _)| *p == s)
                .and_then(|(_, f)| f.get(q as usize).copied())
                .unwrap_or(-1)
        };
        let lowest = floors.iter().map(|(s, _)| floor_of(*s)).min().unwrap_or(-1);
        let mut found: HashMap<i32, Provenance> = HashMap::new();
        scan_backwards(
            reader,
            topic,
            q,
            lowest,
            &mut found,
            |found, m| {
                if let Some(p) = Provenance::of(m) {
                    if floors.iter().any(|(s, _)| *s == p.partition)
                        && Provenance::job_of(m).as_deref() == Some(job)
                    {
                        let e = found.entry(p.partition).or_insert(p);
                        if p.seq > e.seq {
                            *e = p;
                        }
                    }
                }
            },
            // Every source found, or scanned down to its floor.
            |found, from| {
                floors
                    .iter()
                    .all(|(s, _)| found.contains_key(s) || floor_of(*s) >= from)
            },
        )?;
        for (source, last) in found {
            out.insert((source, q), last);
        }
    }
    Ok(out)
}

/// Reads every retained message of every partition of `topic` (partition by partition, in
/// offset order).
pub fn read_topic(
    reader: &Reader,
    topic: &str,
    mut f: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> anyhow::Result<usize> {
    let mut n = 0;
    for q in 0..partition_count(reader, topic)? {
        let (low, high) = watermarks(reader, topic, q)?;
        n += read_range(reader, topic, q, low, high, &mut f)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::job::Origin;
    use clap::Parser;

    #[test]
    fn provenance_is_one_compact_header_that_round_trips() {
        let mut scratch = Vec::new();
        let cases = [
            (
                Origin {
                    partition: 3,
                    offset: 120_457,
                    seq: Some(98_812),
                },
                "match-maker",
                "3:120457:98812:match-maker",
            ),
            (
                Origin {
                    partition: 0,
                    offset: -1,
                    seq: None,
                },
                "match-maker",
                "0:-1::match-maker",
            ),
            (
                Origin {
                    partition: i32::MAX,
                    offset: i64::MAX,
                    seq: Some(u64::MAX),
                },
                "a:b",
                "2147483647:9223372036854775807:18446744073709551615:a:b",
            ),
        ];
        for (origin, job, text) in cases {
            encode_provenance(&origin, job, &mut scratch);
            assert_eq!(std::str::from_utf8(&scratch).unwrap(), text);
            assert_eq!(decode_provenance(&scratch), Some((origin, job)));
            let headers = Provenance::headers(&origin, job, &mut scratch);
            assert_eq!(headers.count(), 1);
            assert_eq!(headers.get(0).key, HDR_PROVENANCE);
            assert_eq!(headers.get(0).value, Some(text.as_bytes()));
        }
        for bad in [
            "", "1:2", "x:2:3:j", "1:x:3:j", "1:2:x:j", "1:2:3", "1:2:-3:j",
        ] {
            assert_eq!(decode_provenance(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn extra_settings_override_defaults() {
        let cli = Cli::try_parse_from([
            "x",
            "--brokers",
            "b:1",
            "-X",
            "linger.ms=50",
            "-X",
            "security.protocol=SASL_SSL",
        ])
        .unwrap();
        let p = cli.kafka.producer();
        assert_eq!(p.get("bootstrap.servers"), Some("b:1"));
        assert_eq!(p.get("linger.ms"), Some("50"));
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert!(Cli::try_parse_from(["x", "-X", "novalue"]).is_err());
        let cli = Cli::try_parse_from(["x", "-X", "a=1;b=2", "--sasl-password", "s3cret"]).unwrap();
        let c = cli.kafka.consumer("g");
        assert_eq!((c.get("a"), c.get("b")), (Some("1"), Some("2")));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
    }
}
