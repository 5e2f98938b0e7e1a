//! Command-line definitions (clap). Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vaekit::device::DeviceChoice;

/// Train variational autoencoders and look at what they learned.
#[derive(Debug, Parser)]
#[command(name = "vaekit", version, about, propagate_version = true)]
pub struct Cli {
    /// Where tensors live: cpu (burn Flex), wgpu (Vulkan/Metal; build with --features wgpu) or
    /// cuda (build with --features cuda).
    #[arg(long, global = true, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceChoice,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (defaults: Fashion-MNIST, conv model, z = 20, 10 epochs), or resume one.
    Train(TrainArgs),
    /// Decode samples from the prior into a PNG grid.
    Sample(SampleArgs),
    /// Encode real images and decode them: originals above their reconstructions.
    Reconstruct(ReconstructArgs),
    /// Negative ELBO of a dataset split, in nats per image.
    Eval(EvalArgs),
    /// Manage datasets.
    #[command(subcommand)]
    Data(DataCommand),
}

/// Model families for `--model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// The article's convolutional VAE.
    Conv,
    /// The pytorch/examples MLP VAE (784-400-z-400-784).
    Mlp,
}

/// Observation models for `--likelihood`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LikelihoodArg {
    /// Bernoulli pixels (cross-entropy).
    Bernoulli,
    /// Gaussian pixels with a fixed std (squared error), 0.1 unless the config says otherwise.
    Gaussian,
}

/// Binarisation for `--binarize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BinarizeArg {
    /// Gray values as they are.
    None,
    /// A new Bernoulli draw of every training batch.
    Dynamic,
    /// One Bernoulli draw of the whole dataset, with a fixed seed.
    Static,
}

/// Dataset splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    /// Training images.
    Train,
    /// Test images.
    Test,
}

/// `vaekit train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Continue the run in this folder with its saved config, optimiser state and epoch count
    /// (only --epochs may change, to train longer).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// A TOML file with any part of the training config; flags override it.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// A named dataset: fashion-mnist or mnist.
    #[arg(long, value_name = "NAME", conflicts_with = "data_dir")]
    pub dataset: Option<String>,
    /// A folder with the four IDX files, or an image folder (one subfolder per class).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Model family.
    #[arg(long, value_enum)]
    pub model: Option<ModelArg>,
    /// Dimension of z.
    #[arg(long, value_name = "N")]
    pub latent: Option<usize>,
    /// Passes over the training set.
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Images per optimisation step.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Adam learning rate.
    #[arg(long, value_name = "X")]
    pub lr: Option<f64>,
    /// Seed of initialisation, shuffling, noise and binarisation.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Use only the first N training images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Binarisation of the pixels.
    #[arg(long, value_enum)]
    pub binarize: Option<BinarizeArg>,
    /// Observation model p(x|z).
    #[arg(long, value_enum)]
    pub likelihood: Option<LikelihoodArg>,
    /// Weight of the KL term (1 gives the ELBO).
    #[arg(long, value_name = "X")]
    pub beta: Option<f64>,
    /// The run folder to create (default: runs/DATASET-MODEL, numbered if taken).
    #[arg(long, value_name = "RUN_DIR")]
    pub out: Option<PathBuf>,
}

/// `vaekit sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Number of samples.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// The PNG to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// Seed of z ~ N(0, I).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `vaekit reconstruct`.
#[derive(Debug, Args)]
pub struct ReconstructArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Which split's first images to use.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Number of images.
    #[arg(long, default_value_t = 32)]
    pub n: usize,
    /// The PNG to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// Other data of the same shape instead of the run's dataset.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `vaekit eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Which split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Other data of the same shape instead of the run's dataset.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seed of the sampled z.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `vaekit data ...`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download a dataset's IDX files over HTTPS and verify their SHA-256 sums.
    Download(DownloadArgs),
}

/// `vaekit data download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// mnist or fashion-mnist.
    pub name: String,
    /// Folder to put the files in (default: the user cache folder, where vaekit looks).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// A mirror holding the same files, instead of the standard address.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
}
