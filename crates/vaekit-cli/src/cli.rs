//! Command-line definitions (clap). Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vaekit::device::DeviceChoice;
use vaekit::ops::Precision;

/// Train variational autoencoders and look at what they learned.
#[derive(Debug, Parser)]
#[command(name = "vaekit", version, about, propagate_version = true)]
pub struct Cli {
    /// Where tensors live: cpu (burn Flex), wgpu (Vulkan/Metal; build with --features wgpu) or
    /// cuda (build with --features cuda).
    #[arg(long, global = true, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// Matrix products of the CPU kernels: fp32, or bf16 with fp32 accumulation and fp32
    /// weights (CPUs with AVX512-BF16; elsewhere fp32, said once).
    #[arg(long, global = true, default_value = "fp32", value_parser = parse_precision)]
    pub precision: Precision,
    #[command(subcommand)]
    pub command: Command,
}

impl Command {
    /// Whether the main thread should join the CPU kernels' thread pool
    /// ([`vaekit::ops::pool`]): it runs every command's loop, except the server's (requests run
    /// on tokio's threads) and data-parallel training over several devices (each device's share
    /// runs on a thread of its own).
    pub fn runs_kernels_on_main_thread(&self) -> bool {
        match self {
            Command::Serve(_) => false,
            Command::Train(a) => a.devices.as_deref().is_none_or(|d| !d.contains(',')),
            _ => true,
        }
    }
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

fn parse_precision(s: &str) -> Result<Precision, String> {
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
    /// Score a model: ELBO, importance-sampled log-likelihood, latent statistics, Frechet distance.
    Eval(EvalArgs),
    /// Decode the path between the latent codes of two images (linear or spherical).
    Interpolate(InterpolateArgs),
    /// Sweep one latent dimension at a time around an image's code.
    Traverse(TraverseArgs),
    /// For a 2-D latent: decode a grid of codes spaced by the Gaussian's quantiles.
    Manifold(ManifoldArgs),
    /// Plot the latent means of a split in 2-D (PCA beyond 2 dimensions), coloured by label.
    Scatter(ScatterArgs),
    /// Write the posterior (means and log-variances) of every image of a split as CSV.
    Encode(EncodeArgs),
    /// Decode latent codes read from a CSV file into a PNG grid.
    Decode(DecodeArgs),
    /// Render one code at any size (models trained with --decoder cppn), in tiles.
    Render(RenderArgs),
    /// An animated GIF along the path between two images' codes.
    Morph(MorphArgs),
    /// Plot training and test loss, reconstruction and KL per epoch from metrics.jsonl.
    Plot(PlotArgs),
    /// The evaluation classifier used by `eval --fid`.
    #[command(subcommand)]
    Classifier(ClassifierCommand),
    /// Manage datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Time training steps, sampling and the IS estimate (medians over repetitions), and peak
    /// memory; `bench/compare.py --bench` runs PyTorch on the same and prints the ratios.
    Bench(BenchArgs),
    /// Explore a trained model's latent space in the browser (sliders, a 2-D pad, sampling,
    /// drawing, interpolation), with a JSON API; read-only, on 127.0.0.1 unless --host is given.
    Serve(ServeArgs),
    /// Export a run's model for use outside vaekit: ONNX graphs (encoder, decoder, and the
    /// prior's where it is learned) or a PyTorch module file with its weights.
    Export(ExportArgs),
}

/// `vaekit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// onnx: encoder.onnx, decoder.onnx (and prior.onnx) for onnxruntime; torch:
    /// vaekit_model.py, weights.safetensors and config.json for PyTorch.
    #[arg(long, value_enum)]
    pub format: ExportFormatArg,
    /// The folder to write into (created if missing; not the run's own folder).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// ONNX of a CPPN decoder: the size the decoder renders, width x height (default: the
    /// training size).
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    /// ONNX (opset 17) for onnxruntime and other ONNX runtimes.
    Onnx,
    /// A PyTorch nn.Module file and its weights.
    Torch,
}

/// `vaekit serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// The address to listen on (0.0.0.0 exposes the model to your network).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

/// `vaekit bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The model to time: conv (batch 100) or mlp (batch 128), the article's and pytorch/examples'
    /// networks, on the ELBO.
    #[arg(long, value_enum, default_value = "conv")]
    pub model: BenchModel,
    /// A named dataset (Fashion-MNIST by default).
    #[arg(long, value_name = "NAME", conflicts_with = "data_dir")]
    pub dataset: Option<String>,
    /// A folder with the four IDX files, or an image folder.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Images per training step (default: 100 for conv, 128 for mlp).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Timed training steps per repetition.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub steps: usize,
    /// Repetitions of every measurement (the median is reported).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub reps: usize,
    /// Untimed training steps first.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub warmup: usize,
    /// One JSON line instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Models `vaekit bench` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchModel {
    /// The article's conv VAE, batch 100.
    Conv,
    /// The 784-400-20-400-784 MLP VAE, batch 128.
    Mlp,
    /// The VAE-GAN `train --model vaegan` trains (conv VAE and discriminator), batch 100.
    Vaegan,
}

/// Model families for `--model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// The article's convolutional VAE.
    Conv,
    /// The pytorch/examples MLP VAE (784-400-z-400-784).
    Mlp,
    /// An importance-weighted autoencoder (Burda et al. 2016): the network of --arch (conv by
    /// default) trained on the k-sample bound of --k.
    Iwae,
    /// A conditional VAE: the one-hot label enters encoder and decoder (network of --arch), so
    /// `sample --class C` draws that class.
    Cvae,
    /// A hierarchical VAE with two stochastic layers (the IWAE paper's two-layer model): the
    /// network of --arch gives z (--latent) and tanh MLPs put z2 (--latent2) above it.
    Hvae,
    /// VAE-GAN (Larsen et al. 2016): the VAE of --arch with a discriminator whose features
    /// replace the pixels in the reconstruction term, for sharper samples (Adam lr 3e-4,
    /// beta1 0.5 and --upsample resize unless set).
    Vaegan,
}

/// Decoders for `--decoder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecoderArg {
    /// The mirror of the encoder's network.
    Mirror,
    /// hardmaru's CPPN (hidden 32, 3 tanh layers, coordinates in [-8, 8]).
    Cppn,
}

/// The VAE-GAN discriminator's normalisation, for `--disc-norm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiscNormArg {
    /// Batch normalisation after each stride-2 convolution.
    Batch,
    /// Each layer's weight divided by its largest singular value (Miyato et al. 2018).
    Spectral,
}

/// How the conv decoder doubles the side, for `--upsample`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UpsampleArg {
    /// Stride-2 transposed convolutions (the article's decoder).
    Transposed,
    /// Nearest-neighbour doubling, then a stride-1 convolution: no checkerboard pattern.
    Resize,
}

/// Priors of a conditional VAE for `--class-prior`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClassPriorArg {
    /// N(0, I) for every class (vaekit 0.1's conditional VAE).
    Standard,
    /// Learned per class: a mixture of --prior-components Gaussians (default 10).
    Learned,
}

/// Where a conditional decoder takes its label, for `--label-at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LabelArg {
    /// Beside z at the decoder's input only (default).
    BesideZ,
    /// Beside z and as a learned bias per class on every decoder layer.
    EveryLayer,
}

/// Networks for `--arch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    /// The article's convolutional encoder and decoder.
    Conv,
    /// The MLP encoder and decoder.
    Mlp,
}

/// Observation models for `--likelihood`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LikelihoodArg {
    /// Bernoulli pixels (cross-entropy).
    Bernoulli,
    /// Gaussian pixels with a fixed std (squared error), 0.1 unless the config says otherwise.
    Gaussian,
    /// Gaussian pixels with a learned std per pixel.
    GaussianLearned,
    /// Gaussian pixels with one learned std per channel.
    GaussianGlobal,
    /// The discretised logistic over 256 levels (8-bit images, PixelCNN++).
    Logistic,
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
    /// The network, for families that can use either (--model iwae, cvae, hvae).
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Importance samples per image of the IWAE bound (--model iwae).
    #[arg(long, value_name = "K")]
    pub k: Option<usize>,
    /// Dimension of z.
    #[arg(long, value_name = "N")]
    pub latent: Option<usize>,
    /// Dimension of z2, the upper stochastic layer (--model hvae). Default 10.
    #[arg(long, value_name = "N")]
    pub latent2: Option<usize>,
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
    /// Weight of the KL term (1 gives the ELBO; above 1 a beta-VAE).
    #[arg(long, value_name = "X")]
    pub beta: Option<f64>,
    /// Linear KL warm-up: the KL weight grows from 0 to beta over N epochs.
    #[arg(long, value_name = "N")]
    pub kl_warmup: Option<usize>,
    /// Free bits: a floor, in nats, on each latent dimension's batch-averaged KL.
    #[arg(long, value_name = "X")]
    pub free_bits: Option<f64>,
    /// VAE-GAN: weight of the feature term in the decoder's loss, gamma * feature + GAN
    /// (default 0.05).
    #[arg(long, value_name = "X")]
    pub gamma: Option<f64>,
    /// VAE-GAN: the discriminator's convolution (0-based) whose output before its
    /// normalisation gives the features (default: the last).
    #[arg(long, value_name = "N")]
    pub feature_layer: Option<usize>,
    /// VAE-GAN: weight of the pixel likelihood's reconstruction term beside the feature term
    /// (default 0: features only, as Larsen et al.).
    #[arg(long, value_name = "X")]
    pub pixel_weight: Option<f64>,
    /// VAE-GAN: share of the discriminator's loss on real images, the rest on generated ones
    /// (default 0.5).
    #[arg(long, value_name = "W")]
    pub real_weight: Option<f64>,
    /// VAE-GAN: update every network at every step (no equilibrium rule; the default).
    #[arg(long, conflicts_with = "equilibrium")]
    pub no_equilibrium: bool,
    /// VAE-GAN: Larsen et al.'s equilibrium rule: pause the discriminator while its
    /// cross-entropy on real or generated images is below 0.68 - 0.35, the decoder while either
    /// is above 0.68 + 0.35.
    #[arg(long)]
    pub equilibrium: bool,
    /// VAE-GAN: decode with an exponential moving average of the decoder's weights, of decay D
    /// (e.g. 0.999), updated after every decoder step (default: the decoder as trained).
    #[arg(long, value_name = "D")]
    pub ema: Option<f64>,
    /// VAE-GAN: the discriminator's normalisation: batch normalisation after its stride-2
    /// convolutions (Larsen et al.'s), or spectral normalisation of every layer.
    #[arg(long, value_enum, value_name = "NORM")]
    pub disc_norm: Option<DiscNormArg>,
    /// Threads that read training batches ahead of the step (default 2; 0: on the training
    /// thread). Allowed with --resume: it changes how batches are read, not what they hold.
    #[arg(long, value_name = "N")]
    pub loader_threads: Option<usize>,
    /// Data-parallel training over several devices, e.g. wgpu:0,wgpu:1 (cpu, wgpu, wgpu:N,
    /// cuda:N): each computes the gradients of its share of every batch, summed on the first
    /// before one optimiser step. Overrides --device; allowed with --resume.
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,
    /// The decoder: the mirror of the encoder (default), or hardmaru's CPPN, a function of
    /// pixel coordinates and z that `vaekit render` draws at any size.
    #[arg(long, value_enum)]
    pub decoder: Option<DecoderArg>,
    /// How each layer of the conv decoder doubles the side: a transposed convolution, or a
    /// nearest-neighbour resize and a convolution (no checkerboard; default: transposed).
    #[arg(long, value_enum)]
    pub upsample: Option<UpsampleArg>,
    /// Conditional VAE (--model cvae): the prior of z given the class (default: learned, a
    /// mixture of 10 Gaussians per class).
    #[arg(long, value_enum)]
    pub class_prior: Option<ClassPriorArg>,
    /// Conditional VAE (--model cvae): where the decoder takes the label (default: beside-z).
    #[arg(long, value_enum)]
    pub label_at: Option<LabelArg>,
    /// Conditional VAE with a learned prior: Gaussians per class (default 10; 1: one Gaussian).
    #[arg(long, value_name = "K")]
    pub prior_components: Option<usize>,
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
    /// For a conditional model: draw this class only (default: every class in turn).
    #[arg(long, value_name = "C")]
    pub class: Option<u32>,
    /// Scale of the prior noise: 1 samples the model, below 1 gives more typical, less varied
    /// images.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    pub temperature: f64,
    /// Pixels of gray border between and around the images (0 for none, at most 64).
    #[arg(long, value_name = "PX", default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_BORDER))]
    pub border: usize,
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
    /// Pixels of gray border between and around the images (0 for none, at most 64).
    #[arg(long, value_name = "PX", default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_BORDER))]
    pub border: usize,
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
    /// Seed of everything random in the evaluation: the binarised draw of the images, the
    /// sampled z of the ELBO, the importance samples and the prior samples of --fid.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How to binarise the images before scoring (default: as the run was trained). `dynamic`
    /// and `static` both score one fixed binary draw of the split from --seed, the standard
    /// protocol for binarised MNIST.
    #[arg(long, value_enum)]
    pub binarize: Option<BinarizeArg>,
    /// Also estimate -log p(x) with K importance samples per image (Burda et al. 2016).
    #[arg(long, value_name = "K")]
    pub iw: Option<usize>,
    /// Evaluate only the first N images of the split (a quick estimate).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Also compute the Frechet distance between classifier features of prior samples and of
    /// the split's images, and the classifier's accuracy on reconstructions.
    #[arg(long)]
    pub fid: bool,
    /// The classifier for --fid (default: runs/classifier-DATASET, made by `vaekit classifier
    /// train`).
    #[arg(long, value_name = "DIR")]
    pub classifier: Option<PathBuf>,
    /// Prior samples for --fid.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub fid_samples: usize,
    /// Temperature of the prior samples for --fid (see `sample --temperature`).
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    pub temperature: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Widest `--border` (pixels).
pub const MAX_BORDER: u64 = 64;

/// Options of every command that writes an image grid.
#[derive(Debug, Args)]
pub struct GridArgs {
    /// Pixels of gray border between and around the images (0 for none, at most 64).
    #[arg(long, value_name = "PX", default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_BORDER))]
    pub border: usize,
    /// Leave out the text labels beside the rows.
    #[arg(long)]
    pub no_labels: bool,
}

/// `vaekit interpolate`.
#[derive(Debug, Args)]
pub struct InterpolateArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Index of the first image in the split.
    #[arg(long, value_name = "I")]
    pub from: usize,
    /// Index of the second image in the split.
    #[arg(
        long,
        value_name = "J",
        required_unless_present = "to_class",
        conflicts_with = "to_class"
    )]
    pub to: Option<usize>,
    /// For a conditional model: keep image I's style (its code z) and move the label from
    /// its class to class C.
    #[arg(long, value_name = "C")]
    pub to_class: Option<u32>,
    /// Codes along the path, both ends included.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Follow the great circle between the codes (slerp) instead of the straight line.
    #[arg(long)]
    pub slerp: bool,
    /// Which split the images come from.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// The PNG to write: the two originals framing the decoded path.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    #[command(flatten)]
    pub grid: GridArgs,
}

/// `vaekit render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Width x height of the image, e.g. 2048x2048 (default: the training size).
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,
    /// Seed of the prior draw rendered (when no --codes is given).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A codes CSV (as `vaekit encode` writes) to take the code from.
    #[arg(long, value_name = "FILE.csv")]
    pub codes: Option<PathBuf>,
    /// The row of --codes to render.
    #[arg(long, value_name = "I", default_value_t = 0, requires = "codes")]
    pub row: usize,
    /// For a conditional model: the class.
    #[arg(long, value_name = "C")]
    pub class: Option<u32>,
    /// Zoom out (2 shows twice the plane) or in (0.5); 1e-6 to 1e6.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub scale: f64,
    /// The PNG to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
}

/// `vaekit morph`.
#[derive(Debug, Args)]
pub struct MorphArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Index of the first image in the split.
    #[arg(long, value_name = "I")]
    pub from: usize,
    /// Index of the second image in the split.
    #[arg(long, value_name = "J")]
    pub to: usize,
    /// Frames from one code to the other and back.
    #[arg(long, default_value_t = 24)]
    pub frames: usize,
    /// Width x height of the frames (default: the training size).
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,
    /// Milliseconds per frame.
    #[arg(long, default_value_t = 80)]
    pub delay: u32,
    /// Which split the images come from.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// The GIF to write.
    #[arg(long, value_name = "FILE.gif")]
    pub out: PathBuf,
}

/// `vaekit traverse`.
#[derive(Debug, Args)]
pub struct TraverseArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Index of the image in the split whose code is the starting point.
    #[arg(long, value_name = "I", default_value_t = 0)]
    pub image: usize,
    /// Dimensions to sweep: `all` or a list such as 0,3,5.
    #[arg(long, default_value = "all")]
    pub dims: String,
    /// Each swept dimension takes values from -R to +R (the prior is N(0, 1)).
    #[arg(long, value_name = "R", default_value_t = 3.0)]
    pub range: f64,
    /// Values per dimension.
    #[arg(long, default_value_t = 9)]
    pub steps: usize,
    /// Which split the image comes from.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// The PNG to write: one row per dimension.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    #[command(flatten)]
    pub grid: GridArgs,
}

/// `vaekit manifold`.
#[derive(Debug, Args)]
pub struct ManifoldArgs {
    /// The run folder (its model must have a 2-D latent).
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Codes per side of the grid.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// For a conditional model: the class to decode with (default 0).
    #[arg(long, value_name = "C")]
    pub class: Option<u32>,
    /// The PNG to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    #[command(flatten)]
    pub grid: GridArgs,
}

/// `vaekit scatter`.
#[derive(Debug, Args)]
pub struct ScatterArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Which split to encode.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Use only the first N images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// The PNG to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
}

/// `vaekit encode`.
#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Which split to encode.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Use only the first N images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// The CSV file to write: index, label, class, mean_0.., logvar_0..
    #[arg(long, value_name = "FILE.csv")]
    pub out: PathBuf,
}

/// `vaekit decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// CSV with one code per row: `mean_N` columns (as `encode` writes), `z_N` columns, or
    /// plain numbers.
    #[arg(long, value_name = "FILE.csv")]
    pub codes: PathBuf,
    /// Images per row of the grid (default: a square grid).
    #[arg(long, value_name = "N")]
    pub columns: Option<usize>,
    /// For a conditional model: decode every code with this class (default: the file's
    /// `label` column).
    #[arg(long, value_name = "C")]
    pub class: Option<u32>,
    /// The PNG to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    #[command(flatten)]
    pub grid: GridArgs,
}

/// `vaekit plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// The PNG to write.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// Metrics to plot, by name as in metrics.jsonl, with or without the train_/test_ prefix
    /// (default: every one but images_per_sec, seconds, data_wait_seconds, allreduce_seconds, beta,
    /// skipped_steps).
    #[arg(long, value_name = "NAME,NAME", value_delimiter = ',')]
    pub metrics: Option<Vec<String>>,
}

/// `vaekit classifier ...`.
#[derive(Debug, Subcommand)]
pub enum ClassifierCommand {
    /// Train the small CNN that `eval --fid` takes its features from (stored in its own folder).
    Train(ClassifierTrainArgs),
}

/// `vaekit classifier train`.
#[derive(Debug, Args)]
pub struct ClassifierTrainArgs {
    /// A named dataset: fashion-mnist or mnist.
    #[arg(long, value_name = "NAME", conflicts_with = "data_dir")]
    pub dataset: Option<String>,
    /// A folder with the four IDX files, or an image folder (one subfolder per class).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub epochs: usize,
    /// Images per step.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub batch_size: usize,
    /// Use only the first N training images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Seed of initialisation and shuffling.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// The folder to create (default: runs/classifier-DATASET).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `vaekit data ...`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download a dataset's IDX files over HTTPS and verify their SHA-256 sums.
    Download(DownloadArgs),
    /// Write a small generated dataset (class-dependent bars on noise, 28x28, 10 classes) as
    /// four IDX files: for quick trials without a download.
    Bars(BarsArgs),
    /// Decode an image folder (or IDX files) once into one packed file that training maps
    /// instead of decoding: `train --data-dir DATA.vkd`.
    Pack(PackArgs),
    /// Show what a packed file holds.
    Info(InfoArgs),
}

/// `vaekit data pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// An image folder (class subfolders, optionally under train/ and test/), a folder of IDX
    /// files, or a dataset name (fashion-mnist, mnist).
    pub src: PathBuf,
    /// Image size, width x height (default: 28x28 for image folders, the IDX files' own).
    #[arg(long, value_name = "WxH")]
    pub size: Option<String>,
    /// 1 (gray) or 3 (RGB) (default: as the first image; 1 for IDX files).
    #[arg(long, value_name = "1|3")]
    pub channels: Option<usize>,
    /// The packed file to write (it must not exist; by convention DATA.vkd).
    #[arg(long, value_name = "DATA.vkd")]
    pub out: PathBuf,
}

/// `vaekit data info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A packed file.
    pub file: PathBuf,
    /// Print the header as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `vaekit data bars`.
#[derive(Debug, Args)]
pub struct BarsArgs {
    /// The folder to write the four IDX files into.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Training images.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub train: usize,
    /// Test images.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub test: usize,
    /// Seed of the generator.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Replace the IDX files of a dataset already in --dir (refused without it).
    #[arg(long)]
    pub force: bool,
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
