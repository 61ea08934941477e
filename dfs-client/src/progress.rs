//! Progress of long work for people (#26): a progress bar (indicatif) when stderr is a
//! terminal, otherwise a plain line on stderr at most once a second and one at the end, so
//! logs and pipes get readable lines instead of control characters.
//!
//! Shared by `dfs-mount` (storing unstored files at exit) and the `dfs` command (`dfs tx`
//! uploads), with `size`, how both show a number of bytes.
//!
//! Owns: how progress is drawn. Must not decide what is long work or do any of it.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A size in bytes, for people: "5.00 KiB", "1.21 GiB", "512 B".
pub fn size(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY)
}

/// What is counted: bytes (shown in binary units) or items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items,
}

/// One piece of long work: `what` done out of `total`.
pub struct Progress {
    what: String,
    unit: Unit,
    total: u64,
    bar: Option<indicatif::ProgressBar>,
    last_line: Mutex<Option<Instant>>,
}

impl Progress {
    /// Starts showing `what` (e.g. "uploading /a/b"), out of `total`.
    pub fn new(what: impl Into<String>, unit: Unit, total: u64) -> Progress {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let template = match unit {
                Unit::Bytes => "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
                Unit::Items => "{msg} [{bar:30}] {pos}/{len} eta {eta}",
            };
            let style = indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
            let b = indicatif::ProgressBar::new(total).with_style(style);
            b.set_message(what.clone());
            b
        });
        Progress {
            what,
            unit,
            total,
            bar,
            last_line: Mutex::new(None),
        }
    }

    fn amount(&self, n: u64) -> String {
        match self.unit {
            Unit::Bytes => size(n),
            Unit::Items => n.to_string(),
        }
    }

    /// `done` of the total are done now.
    pub fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due && done < self.total {
            let pct = done * 100 / self.total.max(1);
            eprintln!(
                "{}: {pct}% ({} of {})",
                self.what,
                self.amount(done),
                self.amount(self.total)
            );
            *last = Some(Instant::now());
        }
    }

    /// The work ended with `done` of the total done, and `outcome` ("done", "3 left").
    pub fn finish(&self, done: u64, outcome: &str) {
        match &self.bar {
            Some(b) => {
                b.set_position(done);
                b.finish_with_message(format!("{}: {outcome}", self.what));
            }
            None => eprintln!(
                "{}: {outcome} ({} of {})",
                self.what,
                self.amount(done),
                self.amount(self.total)
            ),
        }
    }
}
