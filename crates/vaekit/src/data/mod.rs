//! Datasets: the IDX reader, image folders, packed files, lookup by name, downloads, batching
//! and the background threads that assemble batches.

pub mod batch;
pub mod dataset;
pub mod download;
pub mod idx;
pub mod image_folder;
pub mod mapped;
pub mod packed;
pub mod pixels;
pub mod prefetch;
pub mod source;
pub mod synthetic;

pub use batch::{HostBatch, batch_tensor, epoch_order, host_batch, one_hot};
pub use dataset::{Dataset, Split, Splits};
pub use pixels::Pixels;
pub use source::{load_data, load_source, locate};
