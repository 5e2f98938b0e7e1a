//! The library's error type. Every variant that concerns a file names it.

use std::path::PathBuf;

/// Everything that can go wrong in vaekit, with the file or value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error (in the message, not a separate source: printed with
        /// its causes the message would say it twice).
        error: std::io::Error,
    },
    /// An IDX file (the MNIST format) is malformed: wrong magic number, truncated, inconsistent.
    #[error("{}: not a valid IDX file: {reason}", path.display())]
    BadIdx {
        /// The IDX file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An image could not be decoded or encoded.
    #[error("{}: {reason}", path.display())]
    BadImage {
        /// The image file.
        path: PathBuf,
        /// The decoder's or encoder's message.
        reason: String,
    },
    /// A named dataset was not found in any of the places vaekit looks.
    #[error("dataset '{name}' not found (looked in: {searched}); {hint}")]
    DatasetNotFound {
        /// The dataset's name, e.g. `fashion-mnist`.
        name: String,
        /// The folders searched, in order.
        searched: String,
        /// How to get it.
        hint: String,
    },
    /// A dataset folder exists but its contents are not usable.
    #[error("{}: {reason}", path.display())]
    BadDataset {
        /// The dataset folder or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A JSON or TOML document (config, meta, metrics) could not be read.
    #[error("{}: {reason}", path.display())]
    BadConfig {
        /// The document.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A checkpoint file cannot be used: unreadable, of another model than the run's config
    /// describes, or not finite.
    #[error("{}: {reason}", path.display())]
    CheckpointMismatch {
        /// The weights file.
        path: PathBuf,
        /// Which tensors were missing, extra, or of another shape.
        reason: String,
    },
    /// A folder is not a vaekit run directory.
    #[error("{}: not a vaekit run directory ({reason})", path.display())]
    NotARun {
        /// The folder.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// Another process holds the run folder's lock (it is training into it).
    #[error("{}: in use by another vaekit process (training into it); wait for it to finish or stop it", path.display())]
    RunInUse {
        /// The run folder.
        path: PathBuf,
    },
    /// An output would be written over a run's own file (config, meta, metrics, checkpoints),
    /// which only training writes.
    #[error("{}: is one of the run {}'s own files (config, meta, metrics or checkpoints), which only training writes; choose another output path", path.display(), run.display())]
    RunFile {
        /// The output path given.
        path: PathBuf,
        /// The run folder it belongs to.
        run: PathBuf,
    },
    /// A folder is not a trained evaluation classifier.
    #[error("{}: not a vaekit classifier ({reason})", path.display())]
    NotAClassifier {
        /// The folder.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A download failed or its checksum did not match.
    #[error("{url}: {reason}")]
    Download {
        /// The address fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Training produced a NaN or infinite loss.
    #[error("loss became {value} at epoch {epoch}, step {step}; stopped: {kept}")]
    NonFiniteLoss {
        /// The offending value.
        value: f64,
        /// The epoch (1-based).
        epoch: usize,
        /// The global optimisation step.
        step: usize,
        /// Which checkpoint is kept, in words.
        kept: String,
    },
    /// At the end of an epoch the model was not finite (its weights or its test ELBO): the
    /// epoch was not checkpointed.
    #[error("{what} at the end of epoch {epoch}; stopped without saving it: {kept}")]
    Diverged {
        /// The epoch (1-based).
        epoch: usize,
        /// What was not finite.
        what: String,
        /// Which checkpoint is kept, in words.
        kept: String,
    },
    /// A device was asked for that this build cannot provide.
    #[error("device '{0}' is not available in this build: {1}")]
    DeviceUnavailable(String, String),
    /// A long job (packing a dataset) was stopped by a signal before it finished; nothing was
    /// left at the path.
    #[error("{}: stopped before it was finished; nothing was written", .0.display())]
    Interrupted(PathBuf),
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |error| Error::Io { path, error }
    }
}
