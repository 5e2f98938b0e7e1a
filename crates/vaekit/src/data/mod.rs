//! Datasets: the IDX reader, image folders, lookup by name, downloads and batching.

pub mod batch;
pub mod dataset;
pub mod download;
pub mod idx;
pub mod image_folder;
pub mod source;
pub mod synthetic;

pub use batch::{batch_tensor, epoch_order, one_hot};
pub use dataset::{Dataset, Split, Splits};
pub use source::{load_data, load_source, locate};
