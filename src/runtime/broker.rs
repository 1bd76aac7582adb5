//! Where the topics live: the embedded mock broker (demo, fast tests) or a real Kafka cluster,
//! behind one interface for the demo, the benchmarks, `kappa topics` and the tests.
//!
//! On a real cluster the topics of [`crate::topics`] are created through the Admin API
//! (CreateTopics with each topic's configs), idempotently: a topic that already exists is kept
//! when it can work — same partition count (an instrument's partition is fixed once the topic
//! holds data), a cleanup policy that keeps what the topic needs (no compaction of orders, trades
//! or events), and the timestamp type the pipeline relies on (`LogAppendTime` on `orders`) — and
//! refused with a clear message otherwise. The mock broker has no CreateTopics:
//! [`EmbeddedKafka::create_topic`] (partitions only; it has no topic configs either).

use crate::runtime::embedded::EmbeddedKafka;
use crate::runtime::kafka::KafkaArgs;
use crate::topics::PlannedTopic;
use anyhow::{anyhow, bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Command-line choice of broker for the demo and the benchmarks: embedded unless `--brokers`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BrokerArgs {
    /// Run against this Kafka cluster (bootstrap servers) instead of an embedded broker.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Extra librdkafka setting for --brokers, repeatable (-X security.protocol=SASL_SSL).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = crate::runtime::kafka::parse_kv, requires = "brokers")]
    pub config: Vec<(String, String)>,
    /// Topic (and consumer group) prefix on --brokers; default: a fresh one per run.
    #[arg(long, requires = "brokers")]
    pub topic_prefix: Option<String>,
}

impl BrokerArgs {
    /// The broker to run on and the topic prefix there: an embedded broker with the standard
    /// names, or the cluster of `--brokers` with `--topic-prefix` (default: a fresh prefix per
    /// run, `WHAT-YYYYmmdd-HHMMSS.`, since results are checked against empty topics).
    pub fn open(&self, what: &str) -> anyhow::Result<(Broker, String)> {
        match &self.brokers {
            None => Ok((Broker::embedded()?, String::new())),
            Some(b) => {
                let mut k = KafkaArgs::new(b.clone());
                k.config = self.config.clone();
                let prefix = self
                    .topic_prefix
                    .clone()
                    .unwrap_or_else(|| fresh_prefix(what));
                Ok((Broker::External(k), prefix))
            }
        }
    }
}

/// A topic prefix for one run: `WHAT-YYYYmmdd-HHMMSS.`.
pub fn fresh_prefix(what: &str) -> String {
    format!("{what}-{}.", chrono::Utc::now().format("%Y%m%d-%H%M%S"))
}

/// A broker the pipeline runs on.
pub enum Broker {
    /// librdkafka's mock cluster, in this process.
    Embedded(EmbeddedKafka),
    /// A real Kafka cluster (its bootstrap address and client settings).
    External(KafkaArgs),
}

impl Broker {
    /// Starts an embedded broker (no topics yet).
    pub fn embedded() -> anyhow::Result<Broker> {
        Ok(Broker::Embedded(EmbeddedKafka::start(&[])?))
    }

    /// A real cluster reached with `kafka`'s settings.
    pub fn external(kafka: &KafkaArgs) -> Broker {
        Broker::External(kafka.clone())
    }

    /// The `bootstrap.servers` address.
    pub fn bootstrap(&self) -> &str {
        match self {
            Broker::Embedded(b) => b.bootstrap(),
            Broker::External(k) => &k.brokers,
        }
    }

    /// True for a real Kafka cluster.
    pub fn is_external(&self) -> bool {
        matches!(self, Broker::External(_))
    }

    /// What this broker is, for people: "embedded Kafka broker" or "Apache Kafka".
    pub fn describe(&self) -> &'static str {
        match self {
            Broker::Embedded(_) => "embedded Kafka broker",
            Broker::External(_) => "Kafka cluster",
        }
    }

    /// Client settings for this broker, with topics (and groups) under `prefix`.
    pub fn kafka(&self, prefix: &str) -> KafkaArgs {
        let mut k = match self {
            Broker::Embedded(b) => KafkaArgs::new(b.bootstrap()),
            Broker::External(k) => k.clone(),
        };
        k.topic_prefix = prefix.to_string();
        k
    }

    /// Creates `topics` (or checks the existing ones, on a real cluster).
    pub fn create_topics(&self, topics: &[PlannedTopic]) -> anyhow::Result<()> {
        match self {
            Broker::Embedded(b) => topics
                .iter()
                .try_for_each(|t| b.create_topic(&t.name, t.partitions)),
            Broker::External(k) => ensure_topics(k, topics).map(|_| ()),
        }
    }
}

/// What [`ensure_topics`] did with one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensured {
    Created,
    /// It existed and can work as it is; the notes say where its settings differ harmlessly.
    Kept(Vec<String>),
}

fn admin(kafka: &KafkaArgs) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    kafka
        .admin()
        .create()
        .context("creating a Kafka admin client")
}

fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for admin requests")?;
    Ok(rt.block_on(f))
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The number of brokers, and the partition count of every existing topic.
fn describe_cluster(
    admin: &AdminClient<DefaultClientContext>,
) -> anyhow::Result<(usize, std::collections::HashMap<String, i32>)> {
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(15))
        .context("no metadata answer from the cluster (is it running? check --brokers)")?;
    let topics = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect();
    Ok((md.brokers().len(), topics))
}

/// Creates every topic of `topics` that does not exist, with its partitions and configs, and
/// checks those that do (see the module docs). Replication is 3 where the cluster has three
/// brokers or more, else the number of brokers. Returns what happened to each topic.
pub fn ensure_topics(
    kafka: &KafkaArgs,
    topics: &[PlannedTopic],
) -> anyhow::Result<Vec<(String, Ensured)>> {
    let admin = admin(kafka)?;
    let (brokers, existing) = describe_cluster(&admin)?;
    let replicas = brokers.clamp(1, 3) as i32;
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));

    let configs: Vec<Vec<(&str, String)>> = topics.iter().map(|t| t.configs(replicas)).collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&configs)
        .filter(|(t, _)| !existing.contains_key(&t.name))
        .map(|(t, c)| {
            c.iter().fold(
                NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(replicas)),
                |n, (k, v)| n.set(k, v),
            )
        })
        .collect();
    let mut created = Vec::new();
    if !new.is_empty() {
        for r in block_on(admin.create_topics(&new, &opts))?.context("CreateTopics")? {
            match r {
                Ok(name) => created.push(name),
                // Created meanwhile by someone else: checked below like any existing topic.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => bail!("creating topic {name}: {code}"),
            }
        }
    }
    wait_for_leaders(&admin, &created)?;

    let mut out = Vec::new();
    for t in topics {
        if created.contains(&t.name) {
            info!(topic = %t.name, partitions = t.partitions, replicas, "created topic");
            out.push((t.name.clone(), Ensured::Created));
        } else {
            let notes = check_existing(&admin, t, &opts)?;
            for n in &notes {
                warn!(topic = %t.name, "{n}");
            }
            out.push((t.name.clone(), Ensured::Kept(notes)));
        }
    }
    Ok(out)
}

/// Refuses an existing topic that cannot work; returns notes on harmless differences.
fn check_existing(
    admin: &AdminClient<DefaultClientContext>,
    t: &PlannedTopic,
    opts: &AdminOptions,
) -> anyhow::Result<Vec<String>> {
    let md = admin
        .inner()
        .fetch_metadata(Some(&t.name), Duration::from_secs(15))
        .with_context(|| format!("metadata of topic {}", t.name))?;
    let partitions = md
        .topics()
        .first()
        .map(|m| m.partitions().len() as i32)
        .unwrap_or(0);
    if partitions != t.partitions {
        bail!(
            "topic {} exists with {partitions} partitions, the layout needs {}: which partition \
             holds an instrument (or trader) is fixed by that count once the topic holds data. \
             Use a fresh --topic-prefix, delete the topic, or run with the layout it was made with",
            t.name,
            t.partitions
        );
    }
    let described = block_on(admin.describe_configs(&[ResourceSpecifier::Topic(&t.name)], opts))?
        .with_context(|| format!("DescribeConfigs of topic {}", t.name))?;
    let resource = described
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no configs returned for topic {}", t.name))?
        .map_err(|code| anyhow!("DescribeConfigs of topic {}: {code}", t.name))?;
    let value = |k: &str| resource.get(k).and_then(|e| e.value.clone());
    let policy = value("cleanup.policy").unwrap_or_else(|| "delete".into());
    if !t.spec.cleanup.accepts(&policy) {
        bail!(
            "topic {} exists with cleanup.policy={policy}: compaction would keep only the newest \
             record per key, and every record of this topic matters (it needs {}). Recreate it \
             or use a fresh --topic-prefix",
            t.name,
            t.spec.cleanup.policy()
        );
    }
    let mut notes = Vec::new();
    for (k, want) in t.spec.extra {
        let have = value(k);
        if have.as_deref() == Some(want) {
            continue;
        }
        if *k == "message.timestamp.type" {
            bail!(
                "topic {} exists with {k}={}: the pipeline needs {want} there (the broker's \
                 arrival stamp is the exchange's time; the client's stamp must not drive \
                 matching or windows). Fix it with: kafka-configs.sh --alter --entity-type topics \
                 --entity-name {} --add-config {k}={want}",
                t.name,
                have.unwrap_or_default(),
                t.name
            );
        }
        notes.push(format!(
            "{k} is {} (the layout says {want})",
            have.unwrap_or_else(|| "unset".into())
        ));
    }
    let retention = t.retention_ms.to_string();
    if value("retention.ms").as_deref() != Some(retention.as_str()) {
        notes.push(format!(
            "retention.ms is {} (the layout says {retention})",
            value("retention.ms").unwrap_or_else(|| "unset".into())
        ));
    }
    Ok(notes)
}

/// Waits until every partition of `topics` has a leader (CreateTopics answers before that).
fn wait_for_leaders(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[String],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    for name in topics {
        loop {
            let ready = admin
                .inner()
                .fetch_metadata(Some(name), Duration::from_secs(5))
                .ok()
                .and_then(|md| {
                    md.topics().first().map(|t| {
                        t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .unwrap_or(false);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("topic {name} was created but has no leader for every partition after {ADMIN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Deletes the topics of `names` that exist; returns those deleted.
pub fn delete_topics(kafka: &KafkaArgs, names: &[String]) -> anyhow::Result<Vec<String>> {
    let admin = admin(kafka)?;
    let (_, existing) = describe_cluster(&admin)?;
    let names: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| existing.contains_key(*n))
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let mut deleted = Vec::new();
    for r in block_on(admin.delete_topics(&names, &opts))?.context("DeleteTopics")? {
        match r {
            Ok(name) => deleted.push(name),
            Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => bail!("deleting topic {name}: {code}"),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    /// The local broker of scripts/kafka.sh is the Kafka release production runs.
    #[test]
    fn local_broker_version_is_the_one_k8s_deploys() {
        let root = env!("CARGO_MANIFEST_DIR");
        let pom = std::fs::read_to_string(format!("{root}/tools/kafka/pom.xml")).unwrap();
        let k8s = std::fs::read_to_string(format!("{root}/k8s/kafka.yaml")).unwrap();
        let local = pom
            .split("<kafka.version>")
            .nth(1)
            .and_then(|s| s.split("</kafka.version>").next())
            .expect("tools/kafka/pom.xml names <kafka.version>");
        let deployed = k8s
            .lines()
            .find_map(|l| l.trim().strip_prefix("version: "))
            .expect("k8s/kafka.yaml names spec.kafka.version");
        assert_eq!(local, deployed.trim());
    }
}
