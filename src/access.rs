//! Least privilege on Kafka: each job's identity and exactly the ACLs it needs, derived from the
//! jobs themselves — the topics a consume-process-produce job reads and writes come from its
//! [`Job`] implementation (input, outputs, state outputs) and its loop options (changelog, group,
//! transactional id), market-view's from [`crate::serving::feed::inputs`] and its order sink.
//! `k8s/users.yaml` (Strimzi KafkaUsers) is generated from here by `kappa topics users`, and a
//! test fails when the file differs: a job that starts reading or writing another topic changes
//! its ACLs in the same commit, and nothing has more than it uses.
//!
//! What a processor job does with each resource (src/runtime/processor.rs):
//! - input: Read (consume), Describe (metadata, watermarks);
//! - sequenced outputs: Write, and Read: recovery scans their tails for the last published
//!   sequence numbers;
//! - state outputs (the book): Write only;
//! - changelog (snapshots): Read and Write;
//! - consumer group: Read (join, commit through the transaction), Describe (lag);
//! - transactional ids `<group>-…` (pod name or `<group>-<host>-<pid>-<n>`): Write, Describe;
//! - the readers' group [`READER_GROUP`] (assignment only: librdkafka looks up its coordinator):
//!   Describe, for every job.
//!
//! Idempotent producers need no cluster permission from Kafka 2.8 on (KIP-679): Write on a topic
//! is enough. No job creates topics (the KafkaTopic resources do), so none has Create.

use crate::analytics::{profit::ProfitJob, sma::SmaJob, AnalyticsArgs};
use crate::matchmaker::{MatchMaker, Options as MatchOptions};
use crate::runtime::job::Job;
use crate::runtime::kafka::{KafkaArgs, READER_GROUP};
use crate::runtime::processor::{LoopArgs, Options};
use crate::topics::LOAD_TEST_PREFIX;
use kappa_engine::Instruments;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// A kind of Kafka resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Topic,
    Group,
    TransactionalId,
}

impl Kind {
    fn strimzi(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Group => "group",
            Kind::TransactionalId => "transactionalId",
        }
    }
}

/// An ACL's resource: a name, literal or a prefix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    pub kind: Kind,
    pub name: String,
    pub prefix: bool,
}

/// An operation allowed on a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Read,
    Write,
    Describe,
}

/// One job's identity and its ACLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The KafkaUser (and the Secret holding its password).
    pub user: String,
    /// Who uses it.
    pub about: String,
    pub acls: BTreeMap<Resource, BTreeSet<Op>>,
}

impl Access {
    fn new(user: &str, about: &str) -> Self {
        Access {
            user: user.to_string(),
            about: about.to_string(),
            acls: BTreeMap::new(),
        }
    }

    fn allow(&mut self, kind: Kind, name: &str, prefix: bool, ops: &[Op]) {
        let r = Resource {
            kind,
            name: name.to_string(),
            prefix,
        };
        self.acls.entry(r).or_default().extend(ops);
    }

    /// Readers' coordinator lookup ([`KafkaArgs::reader`]): Describe on their group only.
    fn reader(&mut self, kafka: &KafkaArgs) {
        self.allow(
            Kind::Group,
            &kafka.group_id(READER_GROUP),
            false,
            &[Op::Describe],
        );
    }

    fn read_topic(&mut self, name: &str) {
        self.allow(Kind::Topic, name, false, &[Op::Read, Op::Describe]);
    }

    fn write_topic(&mut self, name: &str) {
        self.allow(Kind::Topic, name, false, &[Op::Write, Op::Describe]);
    }

    /// A processor job's resources: `job` with loop options `opts` (group and transactional ids
    /// `opts.group` taken as a prefix when `group_prefix`, for the DAGs' per-run groups).
    fn processor<J: Job>(
        &mut self,
        job: &J,
        kafka: &KafkaArgs,
        opts: &Options,
        group_prefix: bool,
    ) {
        self.reader(kafka);
        self.read_topic(&job.input());
        for t in job.outputs() {
            self.read_topic(&t);
            self.write_topic(&t);
        }
        for t in job.state_outputs() {
            self.write_topic(&t);
        }
        self.read_topic(&opts.changelog);
        self.write_topic(&opts.changelog);
        let group = kafka.group_id(&opts.group);
        self.allow(Kind::Group, &group, group_prefix, &[Op::Read, Op::Describe]);
        if opts.transactional_id.is_some() {
            // `<group>-<pod or host>-…`: the id's first part is always the group (for the
            // DAGs, the group prefix already ends in `-`).
            let ids = match group_prefix {
                true => kafka.transactional_id(&opts.group),
                false => kafka.transactional_id(&format!("{}-", opts.group)),
            };
            self.allow(
                Kind::TransactionalId,
                &ids,
                true,
                &[Op::Write, Op::Describe],
            );
        }
    }

    /// The topics this identity may touch with `op`.
    pub fn topics(&self, op: Op) -> BTreeSet<&str> {
        self.acls
            .iter()
            .filter(|(r, ops)| r.kind == Kind::Topic && ops.contains(&op))
            .map(|(r, _)| r.name.as_str())
            .collect()
    }
}

fn match_maker(access: &mut Access, kafka: &KafkaArgs, instruments: &Instruments) {
    let defaults = MatchOptions::default();
    let job = MatchMaker::new(
        instruments,
        kafka.topics().orders,
        kafka.output_topics(None),
        1,
        defaults.engine,
    );
    let changelog = kafka.changelog_topic(None, job.name());
    let opts = Options::new(&defaults.group, changelog, &LoopArgs::default());
    access.processor(&job, kafka, &opts, false);
}

/// The SMA calculator with `args` (group taken as a prefix when `group_prefix`).
fn sma(
    access: &mut Access,
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: &AnalyticsArgs,
    group_prefix: bool,
) {
    let job = SmaJob::new(instruments.clone(), args.clone(), args.topics(kafka));
    let opts = args.loop_options(kafka, job.name());
    access.processor(&job, kafka, &opts, group_prefix);
}

/// The profit calculator with `args` (group taken as a prefix when `group_prefix`).
fn profit(
    access: &mut Access,
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: &AnalyticsArgs,
    group_prefix: bool,
) {
    let job = ProfitJob::new(instruments.clone(), args.clone(), args.topics(kafka));
    let opts = args.loop_options(kafka, job.name());
    access.processor(&job, kafka, &opts, group_prefix);
}

/// A side run of the analytics (`--output-prefix side`, groups `group-…`). The DAG owns the
/// `side` namespace: a run with other settings writes under a longer prefix (`replay.1m.`), so
/// the topics derived from the jobs under `side` become one prefixed grant.
fn side_analytics(access: &mut Access, instruments: &Instruments, side: &str, group: &str) {
    let args = AnalyticsArgs {
        output_prefix: Some(side.to_string()),
        group: Some(group.to_string()),
        ..AnalyticsArgs::default()
    };
    let kafka = KafkaArgs::new("");
    sma(access, &kafka, instruments, &args, true);
    profit(access, &kafka, instruments, &args, true);
    let mut namespace = BTreeSet::new();
    access.acls.retain(|r, ops| {
        let inside = r.kind == Kind::Topic && r.name.starts_with(side);
        if inside {
            namespace.extend(ops.iter().copied());
        }
        !inside
    });
    let ops: Vec<Op> = namespace.into_iter().collect();
    access.allow(Kind::Topic, side, true, &ops);
}

/// Every identity of the deployment (k8s/ and the Airflow DAGs).
pub fn identities(instruments: &Instruments) -> Vec<Access> {
    let kafka = KafkaArgs::new("");
    let topics = kafka.topics();
    let mut out = Vec::new();

    let mut a = Access::new("kappa-match-maker", "the match-maker Deployment");
    match_maker(&mut a, &kafka, instruments);
    out.push(a);

    let defaults = AnalyticsArgs::default();
    let mut a = Access::new("kappa-sma-calculator", "the sma-calculator Deployment");
    sma(&mut a, &kafka, instruments, &defaults, false);
    out.push(a);

    let mut a = Access::new(
        "kappa-profit-calculator",
        "the profit-calculator Deployment",
    );
    profit(&mut a, &kafka, instruments, &defaults, false);
    out.push(a);

    let mut a = Access::new(
        "kappa-market-view",
        "the market-view Deployment (internet-facing: reads the outputs by assignment, joins no \
         group, and writes only orders)",
    );
    a.reader(&kafka);
    for t in crate::serving::feed::inputs(&topics) {
        a.read_topic(t);
    }
    a.write_topic(&topics.orders);
    out.push(a);

    let mut a = Access::new(
        "kappa-fix-gateway",
        "the fix-gateway Deployment (traders' FIX sessions: reads order-events by assignment, \
         joins no group, writes only orders and reads them back to settle a lost acknowledgement)",
    );
    a.reader(&kafka);
    a.read_topic(crate::fix::server::input(&topics));
    a.write_topic(crate::fix::server::output(&topics));
    a.read_topic(crate::fix::server::output(&topics));
    out.push(a);

    let mut a = Access::new(
        "kappa-analytics-reader",
        "traders' and quants' programs reading the analytics serving topic \
         (examples/python/analytics_to_polars.py): read by assignment, nothing else",
    );
    a.reader(&kafka);
    a.read_topic(&topics.analytics);
    out.push(a);

    let mut a = Access::new("kappa-order-generator", "the order generator (demo flow)");
    a.reader(&kafka);
    a.write_topic(&topics.orders);
    out.push(a);

    let mut a = Access::new(
        "kappa-replay",
        "the Airflow analytics replay DAG (reads trades, writes replay.*)",
    );
    side_analytics(&mut a, instruments, "replay.", "replay-");
    out.push(a);

    let mut a = Access::new(
        "kappa-report",
        "the Airflow daily report DAG (reads trades, writes report.*)",
    );
    side_analytics(&mut a, instruments, "report.", "report-");
    out.push(a);

    let mut a = Access::new(
        "kappa-load-test",
        "the Airflow load-test DAG: its own generator and match maker under loadtest.*, never \
         the production topics",
    );
    let load = KafkaArgs {
        topic_prefix: LOAD_TEST_PREFIX.to_string(),
        ..KafkaArgs::new("")
    };
    a.write_topic(&load.topics().orders);
    match_maker(&mut a, &load, instruments);
    out.push(a);
    out
}

/// `k8s/users.yaml`: one Strimzi KafkaUser per identity, for the cluster named `cluster`.
pub fn strimzi_users(identities: &[Access], cluster: &str) -> String {
    let mut out = String::from(
        "---\n\
         # Generated by `kappa topics users` from src/access.rs, which derives each job's ACLs from\n\
         # the job's own code (a test fails when this file differs). One identity per job, exactly\n\
         # its topics, groups and transactional ids. The User Operator creates a Secret named after\n\
         # each user (key `password`); the job reads it through KAFKA_SASL_PASSWORD, and its name\n\
         # through KAFKA_SASL_USERNAME.\n",
    );
    for (i, a) in identities.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        // The comment, wrapped at 100 columns.
        let mut line = String::from("#");
        for word in format!("{}: {}.", a.user, a.about).split_whitespace() {
            if line.len() + 1 + word.len() > 100 {
                let _ = writeln!(out, "{line}");
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        let _ = writeln!(out, "{line}");
        let _ = write!(
            out,
            "apiVersion: kafka.strimzi.io/v1beta2\n\
             kind: KafkaUser\n\
             metadata:\n  name: {}\n  labels:\n    strimzi.io/cluster: {cluster}\n\
             spec:\n  authentication:\n    type: scram-sha-512\n  authorization:\n    type: simple\n    acls:\n",
            a.user
        );
        for (r, ops) in &a.acls {
            let _ = write!(
                out,
                "      - resource:\n          type: {}\n          name: {}\n          patternType: {}\n        operations:\n",
                r.kind.strimzi(),
                r.name,
                if r.prefix { "prefix" } else { "literal" }
            );
            for op in ops {
                let _ = writeln!(out, "          - {op:?}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_instruments;
    use crate::topics::TopicLayout;

    fn users() -> Vec<Access> {
        identities(&load_instruments(None).unwrap())
    }

    fn user<'a>(all: &'a [Access], name: &str) -> &'a Access {
        all.iter().find(|a| a.user == name).unwrap()
    }

    fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
        names.iter().copied().collect()
    }

    #[test]
    fn k8s_users_yaml_is_generated_from_the_jobs() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/users.yaml");
        let on_disk = std::fs::read_to_string(path).unwrap();
        assert!(
            on_disk == strimzi_users(&users(), "kappa"),
            "k8s/users.yaml is stale: run `cargo run -- topics users > k8s/users.yaml`"
        );
    }

    #[test]
    fn each_job_has_exactly_its_topics() {
        let all = users();
        let names: BTreeSet<&str> = all.iter().map(|a| a.user.as_str()).collect();
        assert_eq!(names.len(), all.len(), "one identity per job");
        // The internet-facing server cannot forge trades, analytics or anyone's state.
        let mv = user(&all, "kappa-market-view");
        assert_eq!(mv.topics(Op::Write), set(&["orders"]));
        assert_eq!(
            mv.topics(Op::Read),
            set(&["book", "trades", "order-events", "analytics"])
        );
        let not_topics: Vec<(&Resource, &BTreeSet<Op>)> = mv
            .acls
            .iter()
            .filter(|(r, _)| r.kind != Kind::Topic)
            .collect();
        let reader = Resource {
            kind: Kind::Group,
            name: READER_GROUP.into(),
            prefix: false,
        };
        assert_eq!(
            not_topics,
            [(&reader, &[Op::Describe].into())],
            "no group to join, no transactions"
        );
        // The FIX gateway: orders in, its traders' order events back; nothing else.
        let fg = user(&all, "kappa-fix-gateway");
        assert_eq!(fg.topics(Op::Write), set(&["orders"]));
        assert_eq!(fg.topics(Op::Read), set(&["order-events", "orders"]));
        assert!(fg
            .acls
            .keys()
            .all(|r| r.kind == Kind::Topic || *r == reader));
        let mm = user(&all, "kappa-match-maker");
        assert_eq!(
            mm.topics(Op::Write),
            set(&[
                "trades",
                "order-events",
                "rejects",
                "book",
                "match-maker-snapshots"
            ])
        );
        assert_eq!(
            mm.topics(Op::Read),
            set(&[
                "orders",
                "trades",
                "order-events",
                "rejects",
                "match-maker-snapshots"
            ])
        );
        let sma = user(&all, "kappa-sma-calculator");
        assert_eq!(
            sma.topics(Op::Write),
            set(&["analytics", "rejects", "sma-calculator-snapshots"])
        );
        assert!(sma.topics(Op::Read).contains("trades"));
        assert!(!sma.topics(Op::Write).contains("trades"));
        assert_eq!(
            user(&all, "kappa-order-generator").topics(Op::Write),
            set(&["orders"])
        );
        // The DAGs write only their prefixed topics; the load test never touches production.
        for (u, side) in [("kappa-replay", "replay."), ("kappa-report", "report.")] {
            let a = user(&all, u);
            assert_eq!(a.topics(Op::Write), set(&[side]), "{u}: its namespace only");
            assert_eq!(a.topics(Op::Read), set(&[side, "trades"]), "{u}");
            let namespace = Resource {
                kind: Kind::Topic,
                name: side.into(),
                prefix: true,
            };
            assert_eq!(
                a.acls[&namespace],
                [Op::Read, Op::Write, Op::Describe].into()
            );
        }
        let load = user(&all, "kappa-load-test");
        assert!(
            load.acls
                .keys()
                .all(|r| r.name.starts_with(LOAD_TEST_PREFIX)),
            "{load:?}"
        );
        // No wildcard anywhere, and every topic named is one the deployment creates.
        let layout = TopicLayout::production();
        let planned: BTreeSet<String> = layout
            .plan("")
            .into_iter()
            .chain(layout.side_outputs(""))
            .map(|t| t.name)
            .collect();
        for a in &all {
            for r in a.acls.keys() {
                assert!(!r.name.contains('*') && !r.name.is_empty(), "{r:?}");
                if r.kind == Kind::Topic && !r.prefix {
                    assert!(
                        planned.contains(&r.name),
                        "{}: {} is not a KafkaTopic",
                        a.user,
                        r.name
                    );
                }
                if r.kind == Kind::Topic && r.prefix {
                    assert!(["replay.", "report."].contains(&r.name.as_str()), "{r:?}");
                }
            }
        }
    }

    #[test]
    fn processor_jobs_get_their_group_and_transactional_ids_only() {
        let all = users();
        let mm = user(&all, "kappa-match-maker");
        let others: Vec<&Resource> = mm.acls.keys().filter(|r| r.kind != Kind::Topic).collect();
        assert_eq!(
            others,
            [
                &Resource {
                    kind: Kind::Group,
                    name: READER_GROUP.into(),
                    prefix: false
                },
                &Resource {
                    kind: Kind::Group,
                    name: "match-maker".into(),
                    prefix: false
                },
                &Resource {
                    kind: Kind::TransactionalId,
                    name: "match-maker-".into(),
                    prefix: true
                }
            ]
        );
        // The default transactional id starts with that prefix (k8s sets the pod name, which
        // starts with the Deployment's name, the group).
        let id = LoopArgs::default().transactional_id("match-maker").unwrap();
        assert!(id.starts_with("match-maker-"), "{id}");
        let load = user(&all, "kappa-load-test");
        assert!(load
            .acls
            .keys()
            .any(|r| r.kind == Kind::Group && r.name == "loadtest.match-maker"));
        // A DAG's per-run groups (`replay-bars-<run>`) and their transactional ids share a prefix.
        let replay = user(&all, "kappa-replay");
        let prefixes: BTreeSet<(Kind, &str)> = replay
            .acls
            .keys()
            .filter(|r| r.kind != Kind::Topic && r.name != READER_GROUP)
            .map(|r| {
                assert!(r.prefix, "{r:?}");
                (r.kind, r.name.as_str())
            })
            .collect();
        assert_eq!(
            prefixes,
            [(Kind::Group, "replay-"), (Kind::TransactionalId, "replay-")].into()
        );
        let id = LoopArgs::default()
            .transactional_id("replay-bars-run1")
            .unwrap();
        assert!(id.starts_with("replay-"), "{id}");
    }
}
