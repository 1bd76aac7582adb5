//! Graceful shutdown: SIGINT/SIGTERM set a flag that job loops check between batches, so they
//! can flush producers and commit offsets before exiting. A second signal exits immediately.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cloneable stop flag.
#[derive(Clone, Default, Debug)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder of this flag to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Resolves once the flag is triggered (checked every 100 ms), for async servers' graceful
    /// shutdown.
    pub async fn triggered(&self) {
        while !self.is_triggered() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// A flag that is triggered by SIGINT or SIGTERM (handled on a small background thread).
    pub fn on_signals() -> anyhow::Result<Self> {
        let flag = Shutdown::new();
        let f = flag.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            rt.block_on(async move {
                #[cfg(unix)]
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                for round in 0..2 {
                    #[cfg(unix)]
                    {
                        let term_recv = async {
                            match term.as_mut() {
                                Some(t) => {
                                    t.recv().await;
                                }
                                None => std::future::pending::<()>().await,
                            }
                        };
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term_recv => {}
                        }
                    }
                    #[cfg(not(unix))]
                    let _ = tokio::signal::ctrl_c().await;
                    if round == 0 {
                        tracing::info!("shutdown requested; finishing the current batch (signal again to exit now)");
                        f.trigger();
                    } else {
                        std::process::exit(130);
                    }
                }
            });
        })?;
        Ok(flag)
    }
}
