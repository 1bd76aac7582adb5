//! Loading shared configuration: the instrument table.
//!
//! Jobs take `--instruments PATH` (env `KAPPA_INSTRUMENTS`); without it they use the copy of
//! `data/instruments.toml` compiled into the binary, so every job agrees on the same table.

use anyhow::Context;
use kappa_engine::Instruments;
use std::path::Path;

/// The instrument file shipped in `data/`, compiled in.
pub const DEFAULT_INSTRUMENTS: &str = include_str!("../data/instruments.toml");

/// Loads the instrument table from `path`, or the compiled-in default.
pub fn load_instruments(path: Option<&Path>) -> anyhow::Result<Instruments> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading instrument file {}", p.display()))?;
            Instruments::from_toml_str(&text).with_context(|| format!("in {}", p.display()))
        }
        None => Ok(Instruments::from_toml_str(DEFAULT_INSTRUMENTS)?),
    }
}

/// Settings every job binary shares: the instrument table and the log format.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct JobArgs {
    /// Instrument table (TOML); defaults to the compiled-in data/instruments.toml.
    #[arg(long, env = "KAPPA_INSTRUMENTS")]
    pub instrument_file: Option<std::path::PathBuf>,
    /// Log as JSON lines (for log shippers).
    #[arg(long, env = "LOG_JSON")]
    pub log_json: bool,
}

impl JobArgs {
    /// Sets up logging and loads the instrument table.
    pub fn init(&self) -> anyhow::Result<Instruments> {
        crate::telemetry::init_logging(self.log_json);
        load_instruments(self.instrument_file.as_deref())
    }
}

/// The instrument table as canonical text (specs in id order), for state fingerprints: equal
/// tables give equal text in every process.
pub fn instruments_fingerprint(instruments: &Instruments) -> String {
    let specs: Vec<&kappa_engine::InstrumentSpec> =
        instruments.ids().map(|i| instruments.spec(i)).collect();
    serde_json::to_string(&specs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instruments_fingerprint_is_the_same_for_every_load() {
        // The table holds a hash map; its iteration order differs between instances, so the
        // fingerprint must not depend on it (a snapshot was refused by the next process).
        let a = instruments_fingerprint(&load_instruments(None).unwrap());
        for _ in 0..20 {
            assert_eq!(a, instruments_fingerprint(&load_instruments(None).unwrap()));
        }
        assert!(a.contains("\"TCS\""));
    }
}
