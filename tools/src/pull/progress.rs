// What a pull shows while it works: the `Ui` trait, an indicatif bar (bytes + files; hidden
// when stderr is not a terminal, notes still printed), and a recording UI for tests.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::cell::{Cell, RefCell};

/// Receives progress and notes from [`super::pull`].
pub trait Ui {
    /// Transfers are about to start: this many bytes in this many files.
    fn start(&self, total_bytes: u64, total_files: usize);
    /// A file transfer begins (`run/path`).
    fn file_started(&self, name: &str);
    /// The current file's `.partial` holds this many bytes.
    fn file_progress(&self, bytes_in_file: u64);
    /// The current file verified (its size).
    fn file_done(&self, bytes: u64);
    /// A line for the user (warnings start with `warning:`).
    fn note(&self, msg: &str);
    /// All transfers ended.
    fn finish(&self);
}

/// The terminal UI: one indicatif bar with bytes, rate and files done.
pub struct BarUi {
    bar: ProgressBar,
    files_total: Cell<usize>,
    files_done: Cell<usize>,
    bytes_done: Cell<u64>,
}

impl BarUi {
    /// A bar on stderr; `quiet` hides it (notes are still printed).
    pub fn new(quiet: bool) -> BarUi {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            // indicatif hides a stderr target by itself when stderr is not a terminal.
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta} files {msg}",
            )
            .expect("static template"),
        );
        BarUi {
            bar,
            files_total: Cell::new(0),
            files_done: Cell::new(0),
            bytes_done: Cell::new(0),
        }
    }

    fn message(&self, current: &str) {
        self.bar.set_message(format!(
            "{}/{} {current}",
            self.files_done.get(),
            self.files_total.get()
        ));
    }
}

impl Ui for BarUi {
    fn start(&self, total_bytes: u64, total_files: usize) {
        self.bar.set_length(total_bytes);
        self.files_total.set(total_files);
        self.message("");
    }
    fn file_started(&self, name: &str) {
        self.message(name);
    }
    fn file_progress(&self, bytes_in_file: u64) {
        self.bar.set_position(self.bytes_done.get() + bytes_in_file);
    }
    fn file_done(&self, bytes: u64) {
        self.bytes_done.set(self.bytes_done.get() + bytes);
        self.files_done.set(self.files_done.get() + 1);
        self.bar.set_position(self.bytes_done.get());
        self.message("");
    }
    fn note(&self, msg: &str) {
        self.bar.suspend(|| eprintln!("{msg}"));
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Keeps notes and counts (tests).
#[derive(Default)]
pub struct RecordingUi {
    /// Every note, in order.
    pub notes: RefCell<Vec<String>>,
    /// Files reported done.
    pub files_done: Cell<usize>,
    /// Totals announced by `start`.
    pub totals: Cell<(u64, usize)>,
}

impl Ui for RecordingUi {
    fn start(&self, total_bytes: u64, total_files: usize) {
        self.totals.set((total_bytes, total_files));
    }
    fn file_started(&self, _name: &str) {}
    fn file_progress(&self, _bytes_in_file: u64) {}
    fn file_done(&self, _bytes: u64) {
        self.files_done.set(self.files_done.get() + 1);
    }
    fn note(&self, msg: &str) {
        self.notes.borrow_mut().push(msg.to_string());
    }
    fn finish(&self) {}
}
