//! The embedded Kafka broker: librdkafka's mock cluster, a real Kafka-protocol broker on
//! 127.0.0.1 that other processes and `kcat` can use while this process lives.
//!
//! Limits to keep in mind (measured): each partition keeps at most 5 MiB / 100 k batches and
//! silently drops older data; topics must be created here (CreateTopics is not supported);
//! transactions are accepted but not exactly-once. `MockCluster` is `!Send`, so a dedicated
//! thread owns it and parks until the handle is dropped.

use anyhow::{anyhow, Context};
use rdkafka::mocking::MockCluster;
use std::sync::mpsc;
use std::thread::JoinHandle;

enum Request {
    CreateTopic(String, i32, mpsc::Sender<anyhow::Result<()>>),
    Stop,
}

/// A running embedded broker; stops when dropped.
pub struct EmbeddedKafka {
    bootstrap: String,
    requests: mpsc::Sender<Request>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedKafka {
    /// Starts a one-broker mock cluster and creates `topics`.
    pub fn start(topics: &[(String, i32)]) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<String>>();
        let (req_tx, req_rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("starting mock cluster: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                while let Ok(req) = req_rx.recv() {
                    match req {
                        Request::CreateTopic(name, partitions, reply) => {
                            let r = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|e| anyhow!("creating topic {name}: {e}"));
                            let _ = reply.send(r);
                        }
                        Request::Stop => break,
                    }
                }
            })
            .context("spawning the embedded broker thread")?;
        let bootstrap = ready_rx.recv().context("embedded broker thread died")??;
        let broker = EmbeddedKafka {
            bootstrap,
            requests: req_tx,
            thread: Some(thread),
        };
        for (name, partitions) in topics {
            broker.create_topic(name, *partitions)?;
        }
        Ok(broker)
    }

    /// Creates a topic on the running broker.
    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .send(Request::CreateTopic(name.to_string(), partitions, tx))
            .map_err(|_| anyhow!("embedded broker stopped"))?;
        rx.recv().map_err(|_| anyhow!("embedded broker stopped"))?
    }

    /// The `bootstrap.servers` address (127.0.0.1:PORT).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
