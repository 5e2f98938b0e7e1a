//! # vaekit
//!
//! Variational autoencoders on [burn](https://burn.dev): datasets in the MNIST IDX format and
//! image folders, the convolutional VAE of Kevin Frans' "Variational autoencoders explained"
//! and the MLP VAE of pytorch/examples, a resumable training loop, checkpoints in
//! safetensors, evaluation in nats, and PNG grids of samples and reconstructions.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use vaekit::{config::TrainConfig, data::load_data, run::RunDir, train::{train, Silent}};
//!
//! let cfg = TrainConfig::default(); // conv VAE, z = 20, Fashion-MNIST, 10 epochs
//! let data = load_data(&cfg.data, Some(cfg.model.image), cfg.seed)?;
//! let run = RunDir::create("runs/example".as_ref(), &cfg)?;
//! let device = burn::tensor::Device::flex();
//! train(&run, &cfg, &data, &device, &AtomicBool::new(false), &mut Silent)?;
//! # Ok::<(), vaekit::Error>(())
//! ```

pub mod bench;
pub mod checkpoint;
pub mod classifier;
pub mod collective;
pub mod config;
pub mod data;
pub mod device;
pub mod distribution;
pub mod error;
pub mod eval;
pub mod fsutil;
pub mod image;
pub mod inspect;
pub mod likelihood;
pub mod linalg;
pub mod loss;
pub mod memory;
pub mod method;
pub mod metrics;
pub mod model;
pub mod objective;
pub mod ops;
pub mod plot;
pub mod rng;
pub mod run;
pub mod train;
pub mod weights;

pub use burn;
pub use error::{Error, Result};

/// This crate's version, recorded in every checkpoint's `meta.json`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
