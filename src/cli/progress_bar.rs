//! A terminal progress bar behind the library's [`Progress`] trait.

use std::sync::Mutex;
use std::time::Duration;

use edgeconv::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws one bar per task on stderr. Use only when stderr is a terminal.
#[derive(Default)]
pub struct TerminalBar {
    current: Mutex<Option<ProgressBar>>,
}

impl TerminalBar {
    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        // A panic elsewhere while holding the lock must not silence later tasks.
        let mut guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }
}

impl Progress for TerminalBar {
    fn start(&self, task: &str, total: u64) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg} [{wide_bar}] {percent}% {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(task.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        self.with_bar(|current| {
            if let Some(previous) = current.replace(bar) {
                previous.finish_and_clear();
            }
        });
    }

    fn advance(&self, n: u64) {
        self.with_bar(|current| {
            if let Some(bar) = current {
                bar.inc(n);
            }
        });
    }

    fn finish(&self) {
        self.with_bar(|current| {
            if let Some(bar) = current.take() {
                bar.finish_and_clear();
            }
        });
    }
}
