//! One file per subcommand.

mod bench;
mod classifier;
mod codes;
mod data;
mod eval;
mod explore;
mod export;
mod plot;
mod reconstruct;
mod render;
mod sample;
mod serve;
pub mod train;

use crate::cli::{BinarizeArg, ClassifierCommand, Cli, Command, DataCommand, SplitArg};
use vaekit::config::Binarize;
use vaekit::data::Split;

/// Dispatches to the subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a, cli.device),
        Command::Sample(a) => sample::run(a, cli.device),
        Command::Reconstruct(a) => reconstruct::run(a, cli.device),
        Command::Eval(a) => eval::run(a, cli.device),
        Command::Interpolate(a) => explore::interpolate(a, cli.device),
        Command::Traverse(a) => explore::traverse(a, cli.device),
        Command::Manifold(a) => explore::manifold(a, cli.device),
        Command::Scatter(a) => plot::scatter(a, cli.device),
        Command::Encode(a) => codes::encode(a, cli.device),
        Command::Decode(a) => codes::decode(a, cli.device),
        Command::Render(a) => render::render(a, cli.device),
        Command::Morph(a) => render::morph(a, cli.device),
        Command::Plot(a) => plot::curves(a),
        Command::Bench(a) => bench::run(a, cli.device),
        Command::Serve(a) => serve::run(a, cli.device),
        Command::Export(a) => export::run(a),
        Command::Classifier(ClassifierCommand::Train(a)) => classifier::train(a, cli.device),
        Command::Data(DataCommand::Download(a)) => data::download(a),
        Command::Data(DataCommand::Bars(a)) => data::bars(a),
        Command::Data(DataCommand::Pack(a)) => data::pack(a),
        Command::Data(DataCommand::Info(a)) => data::info(a),
    }
}

/// `WxH` in pixels, e.g. `2048x2048`, as [height, width]; `flag` names it in errors.
pub fn parse_wxh(flag: &str, s: &str) -> anyhow::Result<[usize; 2]> {
    let parsed = s.split_once(['x', 'X']).and_then(|(w, h)| {
        Some((
            w.trim().parse::<usize>().ok()?,
            h.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((w, h)) if w > 0 && h > 0 => Ok([h, w]),
        _ => anyhow::bail!("{flag} {s}: give width x height in pixels, e.g. 64x64"),
    }
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
        }
    }
}

impl From<BinarizeArg> for Binarize {
    fn from(b: BinarizeArg) -> Binarize {
        match b {
            BinarizeArg::None => Binarize::None,
            BinarizeArg::Dynamic => Binarize::Dynamic,
            BinarizeArg::Static => Binarize::Static,
        }
    }
}

/// The split's name as users type it.
fn split_name(s: SplitArg) -> &'static str {
    match s {
        SplitArg::Train => "train",
        SplitArg::Test => "test",
    }
}

/// Loads the data a run was trained on (or `data_dir` instead), shaped for its model, as gray
/// values (commands that score binary images binarise their own copy).
fn run_data(
    cfg: &vaekit::config::TrainConfig,
    data_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<vaekit::data::Splits> {
    let mut data_cfg = cfg.data.clone();
    if let Some(d) = data_dir {
        data_cfg.dir = Some(d);
    }
    data_cfg.limit = None;
    data_cfg.binarize = Binarize::None;
    let data = vaekit::data::load_data(&data_cfg, Some(cfg.model.image), cfg.seed)?;
    let classes = cfg.model.classes;
    if let Some(l) = data
        .train
        .labels
        .iter()
        .chain(&data.test.labels)
        .find(|&&l| classes > 0 && l as usize >= classes)
    {
        anyhow::bail!(
            "{}: label {l} is outside the conditional model's {classes} classes",
            data.source
        );
    }
    Ok(data)
}

/// Checks the class given with `flag` against a model of `classes` classes (0: unconditional).
fn check_class(classes: usize, class: Option<u32>, flag: &str) -> anyhow::Result<Option<u32>> {
    match class {
        Some(_) if classes == 0 => {
            anyhow::bail!("{flag} needs a conditional model (train with --model cvae)")
        }
        Some(k) if k as usize >= classes => {
            anyhow::bail!(
                "{flag} {k} is out of range: the model knows {classes} classes (0..{})",
                classes - 1
            )
        }
        _ => Ok(class),
    }
}

/// Most images one picture command draws into one PNG (a 100x100 grid of 28x28 images is
/// about 3000x3000 pixels; more is not a picture anyone looks at, and it is built in memory).
pub(crate) const MAX_CELLS: usize = 10_000;

/// Checks that a picture of `cells` images is within [`MAX_CELLS`]; `what` names the flag(s)
/// that set the count.
fn check_cells(cells: usize, what: &str) -> anyhow::Result<()> {
    if cells > MAX_CELLS {
        anyhow::bail!(
            "{what} would draw {cells} images into one picture; the most is {MAX_CELLS} (a 100x100 grid): draw several pictures (e.g. other --seed values), or use `encode`/`eval` for figures over many images"
        );
    }
    Ok(())
}

/// Checks a `--temperature` (a positive scale of the prior noise).
fn check_temperature(t: f64) -> anyhow::Result<()> {
    if !(t > 0.0 && t.is_finite()) {
        anyhow::bail!("--temperature must be positive, got {t}");
    }
    Ok(())
}

/// Everything an inspection command needs from a run: model, configs, progress, device.
struct Loaded {
    model: vaekit::model::Vae,
    cfg: vaekit::config::TrainConfig,
    meta: vaekit::run::Meta,
    device: vaekit::burn::tensor::Device,
}

/// Opens a run and loads its current checkpoint on `device`.
fn load_run(run: &std::path::Path, device: vaekit::device::DeviceChoice) -> anyhow::Result<Loaded> {
    let device = device.device()?;
    let dir = vaekit::run::RunDir::open(run)?;
    let cfg = dir.config()?;
    let (model, _, meta) = vaekit::checkpoint::load_model(&dir, &device)?;
    Ok(Loaded {
        model,
        cfg,
        meta,
        device,
    })
}

/// Image `i` of a split, with a clear error when out of range.
fn check_index(
    i: usize,
    ds: &vaekit::data::Dataset,
    split: SplitArg,
    flag: &str,
) -> anyhow::Result<()> {
    if i >= ds.len() {
        anyhow::bail!(
            "{flag} {i} is out of range: the {} split has {} images (0..{})",
            split_name(split),
            ds.len(),
            ds.len().saturating_sub(1)
        );
    }
    Ok(())
}

/// Applies the border and label options to a grid.
fn style_grid(
    grid: vaekit::image::Grid,
    opts: &crate::cli::GridArgs,
    labels: Vec<String>,
) -> vaekit::image::Grid {
    let g = grid.with_border(opts.border);
    if opts.no_labels {
        g
    } else {
        g.with_row_labels(labels)
    }
}

/// The posterior of the first `limit` images (all by default) of a run's split, with the split.
fn encode_split(
    run: &std::path::Path,
    split: SplitArg,
    limit: Option<usize>,
    device: vaekit::device::DeviceChoice,
) -> anyhow::Result<(vaekit::data::Dataset, vaekit::inspect::Codes)> {
    let l = load_run(run, device)?;
    let data = run_data(&l.cfg, None)?;
    let mut ds = data.get(Split::from(split)).clone();
    ds.truncate(limit.unwrap_or(ds.len()));
    let codes =
        vaekit::inspect::encode_dataset(&l.model, &ds, None, vaekit::eval::EVAL_BATCH, &l.device);
    Ok((ds, codes))
}
