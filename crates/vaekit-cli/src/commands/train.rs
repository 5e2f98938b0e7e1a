//! `vaekit train`: build the config (defaults < TOML file < flags), then train or resume.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use vaekit::config::{
    Architecture, Binarize, ClassPriorKind, Conditioning, DiscNorm, Equilibrium, LabelInput,
    Likelihood, MethodConfig, Objective, TopLatentConfig, TrainConfig, Upsample, VaeGanConfig,
};
use vaekit::data::load_data;
use vaekit::device::DeviceChoice;
use vaekit::metrics::EpochMetrics;
use vaekit::run::RunDir;
use vaekit::train::{Observer, Silent, StepStats, train_distributed};

use crate::cli::{
    ArchArg, BinarizeArg, ClassPriorArg, DiscNormArg, LabelArg, LikelihoodArg, ModelArg, TrainArgs,
    UpsampleArg,
};
use crate::progress::bar;

pub fn run(a: TrainArgs, device: DeviceChoice) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // First Ctrl-C, SIGTERM or SIGHUP: finish the step, checkpoint, exit 0. Second: leave
        // at once (the last checkpoint stays whole: it is switched to atomically).
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                crate::errln!("\ninterrupted again: exiting without saving");
                std::process::exit(130);
            }
            crate::errln!(
                "\nstopping after this step; saving a checkpoint (Ctrl-C or another signal to quit now)"
            );
        });
    }
    run_until(a, device, &stop).map(|_| ())
}

/// Trains or resumes as `vaekit train` does, stopping after the step during which `stop` is
/// set (with a checkpoint); returns the run folder. The caller owns the signals: `run`
/// installs the CLI's handlers, the Python package its own.
pub fn run_until(a: TrainArgs, device: DeviceChoice, stop: &Arc<AtomicBool>) -> Result<PathBuf> {
    // The processes of this job: one, or the ranks of mpirun.
    let ranks = crate::ranks::ranks()?;
    let (rank, world) = (ranks.rank(), ranks.size());
    let devices = match &a.devices {
        Some(list) => vaekit::device::parse_devices(list).context("--devices")?,
        None => vec![device.device()?],
    };
    if world > 1 && a.resume.is_none() && a.out.is_none() {
        bail!("under mpirun give --out RUN_DIR: every rank must name the same run folder");
    }
    let (run, cfg, data) = if rank == 0 {
        let prepared = match a.resume.clone() {
            Some(dir) => prepare_resume(&dir, &a),
            None => prepare_new(&a),
        };
        // The other ranks read the run rank 0 made (or checked): tell them it is there.
        let mut ready = [if prepared.is_ok() { 1.0 } else { 0.0 }];
        ranks.all_reduce_sum(&mut ready);
        prepared?
    } else {
        let mut ready = [0.0];
        ranks.all_reduce_sum(&mut ready);
        if ready[0] < 1.0 {
            bail!("rank 0 could not prepare the run (its message says why)");
        }
        follow_rank0(&a)?
    };
    if world > 1 && rank == 0 {
        crate::outln!(
            "MPI: {world} ranks of {} images each, {} images a step",
            cfg.batch_size,
            world * cfg.batch_size
        )?;
    }

    let mut obs = BarObserver {
        bar: None,
        stop: stop.clone(),
        output: None,
    };
    if rank > 0 {
        // Rank 0 shows the progress and writes the run; the others train in silence.
        train_distributed(&run, &cfg, &data, &devices, ranks, stop, &mut Silent)
            .with_context(|| format!("rank {rank} training run {}", run.root().display()))?;
        return Ok(run.root().to_path_buf());
    }
    if devices.len() > 1 {
        crate::outln!(
            "data-parallel over {} devices: each takes a share of every batch of {}",
            devices.len(),
            cfg.batch_size
        )?;
    }
    let outcome = match train_distributed(&run, &cfg, &data, &devices, ranks, stop, &mut obs) {
        Ok(o) => o,
        Err(e) => {
            let e = anyhow::Error::new(e);
            let e = if a.resume.is_none() && discard_unstarted(&run) {
                e.context(format!(
                    "training run {} (removed: it had no checkpoint yet)",
                    run.root().display()
                ))
            } else {
                e.context(format!("training run {}", run.root().display()))
            };
            return Err(e);
        }
    };
    if let Some(b) = obs.bar.take() {
        b.finish_and_clear();
    }
    let m = outcome.meta;
    if let Some(e) = obs.output {
        // Stdout went away (a closed pipe, a full disk): training stopped at the next step
        // with a checkpoint; say why (main stays quiet about a broken pipe).
        let said = if outcome.interrupted {
            format!(
                "stopped at epoch {} step {} with a checkpoint; continue with: vaekit train --resume {}",
                m.epoch + usize::from(m.epoch_step > 0),
                m.epoch_step,
                run.root().display()
            )
        } else {
            format!("finished {} epochs in {}", m.epoch, run.root().display())
        };
        return Err(anyhow::Error::new(e).context(said));
    }
    if outcome.interrupted {
        // After a hang-up the terminal is gone: the line is best effort.
        let _ = crate::outln!(
            "stopped at epoch {} step {} ({} steps in all); checkpoint saved. Continue with: vaekit train --resume {}",
            m.epoch + usize::from(m.epoch_step > 0),
            m.epoch_step,
            m.step,
            run.root().display()
        );
    } else {
        crate::outln!("finished {} epochs in {}", m.epoch, run.root().display())?;
        crate::outln!("  reconstructions.png, samples.png, metrics.jsonl, checkpoints/ are there")?;
    }
    Ok(run.root().to_path_buf())
}

/// A rank other than 0: the run rank 0 created or checked, read only, with the flags a resume
/// may change applied as rank 0 applied them.
fn follow_rank0(a: &TrainArgs) -> Result<(RunDir, TrainConfig, vaekit::data::Splits)> {
    let dir = a
        .resume
        .clone()
        .or_else(|| a.out.clone())
        .expect("checked: --resume or --out under mpirun");
    let run = RunDir::open(&dir)?;
    let mut cfg = run.config()?;
    if let (Some(e), Some(_)) = (a.epochs, &a.resume) {
        cfg.epochs = e;
    }
    if let Some(t) = a.loader_threads {
        cfg.data.loader_threads = t;
    }
    let data = load_data(&cfg.data, Some(cfg.model.image), cfg.seed)?;
    Ok((run, cfg, data))
}

/// A new run: the config from defaults, the TOML file and the flags, validated before any work.
fn prepare_new(a: &TrainArgs) -> Result<(RunDir, TrainConfig, vaekit::data::Splits)> {
    let (mut cfg, image_given) = match &a.config {
        Some(p) => read_toml(p)?,
        None => (TrainConfig::default(), false),
    };
    apply_flags(&mut cfg, a)?;
    let data = load_data(&cfg.data, image_given.then_some(cfg.model.image), cfg.seed)?;
    if data.train.is_empty() || data.test.is_empty() {
        bail!(
            "{}: holds {} training and {} test images; training needs both",
            data.source,
            data.train.len(),
            data.test.len()
        );
    }
    if !image_given {
        cfg.model.image = data.train.shape;
    }
    if a.model == Some(ModelArg::Cvae) {
        cfg.model.classes = data.train.classes.len().max(data.test.classes.len());
    }
    set_conditioning(&mut cfg, a)?;
    cfg.validate_training()?;
    let out = match &a.out {
        Some(o) => o.clone(),
        None => default_out(&cfg),
    };
    let run = RunDir::create(&out, &cfg)?.locked()?;
    let said = crate::outln!(
        "training {} {} (z = {}) on {} ({} train / {} test images) into {}{}",
        cfg.model.architecture.name(),
        family(&cfg),
        match &cfg.model.top {
            Some(t) => format!("{}, z2 = {}", cfg.model.latent_dim, t.latent_dim),
            None => cfg.model.latent_dim.to_string(),
        },
        data.source,
        data.train.len(),
        data.test.len(),
        out.display(),
        match vaekit::ops::precision() {
            vaekit::ops::Precision::Bf16 => ", bf16 products",
            vaekit::ops::Precision::Fp32 => "",
        }
    );
    if let Err(e) = said {
        discard_unstarted(&run);
        return Err(e.into());
    }
    Ok((run, cfg, data))
}

/// Removes a new run's folder that holds no checkpoint yet (training stopped before its first
/// save: a bad dataset, a divergence, a closed stdout), so no half-made run is left behind.
/// Returns whether it was removed.
fn discard_unstarted(run: &RunDir) -> bool {
    !run.meta_path().exists() && std::fs::remove_dir_all(run.root()).is_ok()
}

/// A resumed run: the saved config; only `--epochs` may change it.
fn prepare_resume(
    dir: &Path,
    a: &TrainArgs,
) -> Result<(RunDir, TrainConfig, vaekit::data::Splits)> {
    let others = [
        a.config.is_some(),
        a.dataset.is_some(),
        a.data_dir.is_some(),
        a.model.is_some(),
        a.arch.is_some(),
        a.k.is_some(),
        a.latent.is_some(),
        a.latent2.is_some(),
        a.batch_size.is_some(),
        a.lr.is_some(),
        a.seed.is_some(),
        a.limit.is_some(),
        a.binarize.is_some(),
        a.likelihood.is_some(),
        a.beta.is_some(),
        a.kl_warmup.is_some(),
        a.free_bits.is_some(),
        a.gamma.is_some(),
        a.feature_layer.is_some(),
        a.no_equilibrium,
        a.equilibrium,
        a.pixel_weight.is_some(),
        a.real_weight.is_some(),
        a.disc_norm.is_some(),
        a.ema.is_some(),
        a.upsample.is_some(),
        a.decoder.is_some(),
        a.class_prior.is_some(),
        a.label_at.is_some(),
        a.prior_components.is_some(),
        a.out.is_some(),
    ];
    if others.iter().any(|&x| x) {
        bail!(
            "--resume continues with the run's saved config.json; only --epochs and --loader-threads may be given with it"
        );
    }
    // Locked before anything is read or written: a second trainer stops here with one line.
    let run = RunDir::open(dir)?.locked()?;
    let mut cfg = run.config()?;
    let meta = run.meta()?;
    if let Some(e) = a.epochs {
        cfg.epochs = e;
    }
    if let Some(t) = a.loader_threads {
        cfg.data.loader_threads = t;
    }
    let done = meta.as_ref().map_or(0, |m| m.epoch);
    if done >= cfg.epochs {
        bail!(
            "{} has already trained {done} of {} epochs; pass --epochs N with N > {done} to train longer",
            dir.display(),
            cfg.epochs
        );
    }
    let data = load_data(&cfg.data, Some(cfg.model.image), cfg.seed)?;
    // config.json (with the new --epochs) is written by training once the checkpoint loads.
    match meta {
        Some(m) => crate::outln!(
            "resuming {} at epoch {} (step {}) of {}",
            dir.display(),
            m.epoch + 1,
            m.step,
            cfg.epochs
        ),
        None => crate::outln!(
            "resuming {} from the start (it had no checkpoint)",
            dir.display()
        ),
    }?;
    Ok((run, cfg, data))
}

/// A VAE-GAN's Adam learning rate and beta1 unless set: GAN practice (DCGAN, Larsen et al.), a
/// lower rate and less momentum.
const VAEGAN_ADAM: (f64, f32) = (3e-4, 0.5);

/// Makes `cfg` a VAE-GAN with its defaults: [`VaeGanConfig::default`], [`VAEGAN_ADAM`], and a
/// conv decoder that doubles the side by resizing (the discriminator's gradient otherwise
/// amplifies the transposed convolutions' checkerboard).
pub(crate) fn make_vaegan(cfg: &mut TrainConfig) {
    cfg.method = MethodConfig::Vaegan(VaeGanConfig::default());
    (cfg.optim.lr, cfg.optim.beta1) = VAEGAN_ADAM;
    if let Architecture::Conv { upsample, .. } = &mut cfg.model.architecture {
        *upsample = Upsample::Resize;
    }
}

/// The dotted key of the first nan or infinite float in a TOML value, if any.
fn non_finite_key(v: &toml::Value, at: &str) -> Option<String> {
    let key = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        toml::Value::Float(f) if !f.is_finite() => Some(at.to_string()),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| non_finite_key(v, &key(k))),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite_key(v, &format!("{at}[{i}]"))),
        _ => None,
    }
}

/// Reads a TOML config; returns it and whether it fixes the image shape.
fn read_toml(path: &Path) -> Result<(TrainConfig, bool)> {
    let text = vaekit::fsutil::read_text(path)?;
    let value: toml::Table = toml::from_str(&text).map_err(|e| {
        // The message and the place, not the offending line (which may be megabytes long).
        let at = e.span().map_or(String::new(), |s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {column}")
        });
        let message: String = e.message().chars().take(200).collect();
        anyhow::anyhow!("{}: not valid TOML{at}: {}", path.display(), message.trim())
    })?;
    if let Some(key) = non_finite_key(&toml::Value::Table(value.clone()), "") {
        bail!(
            "{}: {key} is not a finite number (nan and inf are not valid settings)",
            path.display()
        );
    }
    let image_given = value.get("model").and_then(|m| m.get("image")).is_some();
    // Start from the defaults as JSON and overlay the file's tables, so a file may set only
    // what it changes; unknown keys are still rejected by the typed config.
    let mut merged = serde_json::to_value(TrainConfig::default())?;
    let overlay = serde_json::to_value(&value)?;
    if overlay.pointer("/method/kind").and_then(|k| k.as_str()) == Some("vaegan") {
        // As `--model vaegan`: the VAE-GAN's defaults under whatever the file sets.
        let mut base = TrainConfig::default();
        make_vaegan(&mut base);
        merged = serde_json::to_value(base)?;
    }
    merge(&mut merged, overlay);
    let cfg: TrainConfig =
        serde_json::from_value(merged).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((cfg, image_given))
}

/// Overlays `b` on `a`, recursing into objects, except where `b` switches an enum's `kind`.
fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                let switches_kind = matches!((a.get(&k), &v), (Some(Value::Object(old)), Value::Object(new))
                    if new.get("kind").is_some() && new.get("kind") != old.get("kind"));
                match a.get_mut(&k) {
                    Some(slot) if !switches_kind => merge(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A new conditional model gets [`Conditioning::default`] unless its config says otherwise,
/// with `--class-prior` and `--label-at` on top; an unconditional one none.
fn set_conditioning(cfg: &mut TrainConfig, a: &TrainArgs) -> Result<()> {
    if cfg.model.classes == 0 {
        if a.class_prior.is_some() || a.label_at.is_some() || a.prior_components.is_some() {
            bail!(
                "--class-prior, --label-at and --prior-components are for conditional models (--model cvae)"
            );
        }
        cfg.model.conditioning = None;
        return Ok(());
    }
    let vaegan = matches!(cfg.method, MethodConfig::Vaegan(_));
    let c = cfg.model.conditioning.get_or_insert_with(|| match vaegan {
        // A VAE-GAN's networks train with the N(0, I) prior.
        true => Conditioning::BESIDE_Z,
        false => Conditioning::default(),
    });
    if let Some(p) = a.class_prior {
        (c.prior, c.components) = match p {
            ClassPriorArg::Standard => (ClassPriorKind::Standard, 1),
            ClassPriorArg::Learned if c.prior == ClassPriorKind::Learned => {
                (ClassPriorKind::Learned, c.components)
            }
            ClassPriorArg::Learned => (ClassPriorKind::Learned, Conditioning::default().components),
        };
    }
    if let Some(k) = a.prior_components {
        c.components = k;
    }
    if let Some(l) = a.label_at {
        c.decoder = match l {
            LabelArg::BesideZ => LabelInput::BesideZ,
            LabelArg::EveryLayer => LabelInput::EveryLayer,
        };
    }
    Ok(())
}

fn apply_flags(cfg: &mut TrainConfig, a: &TrainArgs) -> Result<()> {
    if let Some(d) = &a.dataset {
        cfg.data.dataset = d.clone();
        cfg.data.dir = None;
    }
    if let Some(d) = &a.data_dir {
        cfg.data.dir = Some(d.clone());
        cfg.data.dataset = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
    }
    let arch = match a.model {
        Some(ModelArg::Conv) => Some(ArchArg::Conv),
        Some(ModelArg::Mlp) => Some(ArchArg::Mlp),
        _ => None,
    };
    if let Some(m) = a.arch.or(arch) {
        let same = matches!(
            (m, &cfg.model.architecture),
            (ArchArg::Conv, Architecture::Conv { .. }) | (ArchArg::Mlp, Architecture::Mlp { .. })
        );
        if !same {
            cfg.model.architecture = match m {
                ArchArg::Conv => Architecture::default_conv(),
                ArchArg::Mlp => Architecture::default_mlp(),
            };
        }
    }
    if matches!(a.model, Some(ModelArg::Conv | ModelArg::Mlp)) {
        cfg.objective = Objective::Elbo;
        cfg.model.classes = 0;
    }
    if a.model.is_some() && a.model != Some(ModelArg::Vaegan) {
        cfg.method = MethodConfig::Vae;
    }
    if a.model == Some(ModelArg::Vaegan) {
        if !matches!(cfg.method, MethodConfig::Vaegan(_)) {
            make_vaegan(cfg);
        }
        cfg.objective = Objective::Elbo;
        cfg.model.top = None;
    }
    if let Some(u) = a.upsample {
        let up = match u {
            UpsampleArg::Transposed => Upsample::Transposed,
            UpsampleArg::Resize => Upsample::Resize,
        };
        match &mut cfg.model.architecture {
            Architecture::Conv { upsample, .. } => *upsample = up,
            Architecture::Mlp { .. } => bail!("--upsample is for the conv decoder (--arch conv)"),
        }
    }
    match a.decoder {
        Some(crate::cli::DecoderArg::Cppn) => {
            if cfg.model.decoder.is_none() {
                cfg.model.decoder = Some(vaekit::config::DecoderArchitecture::default_cppn());
            }
        }
        Some(crate::cli::DecoderArg::Mirror) => cfg.model.decoder = None,
        None => {}
    }
    if a.upsample.is_some() && cfg.model.decoder.is_some() {
        bail!("--upsample is for the conv decoder, not --decoder cppn");
    }
    if let MethodConfig::Vaegan(g) = &mut cfg.method {
        if let Some(x) = a.gamma {
            g.gamma = x;
        }
        if a.feature_layer.is_some() {
            g.feature_layer = a.feature_layer;
        }
        if a.no_equilibrium {
            g.equilibrium = None;
        }
        if a.equilibrium {
            g.equilibrium = Some(Equilibrium::default());
        }
        if let Some(w) = a.pixel_weight {
            g.pixel_weight = w;
        }
        if let Some(w) = a.real_weight {
            g.real_weight = w;
        }
        if a.ema.is_some() {
            g.ema = a.ema;
        }
        if let Some(n) = a.disc_norm {
            g.norm = match n {
                DiscNormArg::Batch => DiscNorm::Batch,
                DiscNormArg::Spectral => DiscNorm::Spectral,
            };
        }
    } else {
        let gan_flags = [
            ("--gamma", a.gamma.is_some()),
            ("--feature-layer", a.feature_layer.is_some()),
            ("--no-equilibrium", a.no_equilibrium),
            ("--equilibrium", a.equilibrium),
            ("--pixel-weight", a.pixel_weight.is_some()),
            ("--real-weight", a.real_weight.is_some()),
            ("--disc-norm", a.disc_norm.is_some()),
            ("--ema", a.ema.is_some()),
        ];
        if let Some((flag, _)) = gan_flags.iter().find(|f| f.1) {
            bail!("{flag} is for the VAE-GAN (--model vaegan)");
        }
    }
    if matches!(
        a.model,
        Some(ModelArg::Conv | ModelArg::Mlp | ModelArg::Cvae | ModelArg::Vaegan)
    ) {
        cfg.model.top = None;
    }
    if a.model == Some(ModelArg::Hvae) || a.latent2.is_some() {
        let top = cfg.model.top.get_or_insert_with(TopLatentConfig::default);
        if let Some(d) = a.latent2 {
            top.latent_dim = d;
        }
    }
    if a.model == Some(ModelArg::Iwae) || a.k.is_some() {
        let k = a.k.unwrap_or(match cfg.objective {
            Objective::Iwae { k } => k,
            Objective::Elbo => 5,
        });
        cfg.objective = Objective::Iwae { k };
    }
    if let Some(l) = a.likelihood {
        cfg.model.likelihood = match (l, cfg.model.likelihood) {
            (LikelihoodArg::Bernoulli, _) => Likelihood::Bernoulli,
            (LikelihoodArg::Gaussian, g @ Likelihood::Gaussian { .. }) => g,
            (LikelihoodArg::Gaussian, _) => Likelihood::Gaussian {
                std: Likelihood::DEFAULT_GAUSSIAN_STD,
            },
            (LikelihoodArg::GaussianLearned, _) => Likelihood::GaussianLearned,
            (LikelihoodArg::GaussianGlobal, _) => Likelihood::GaussianGlobal,
            (LikelihoodArg::Logistic, _) => Likelihood::Logistic,
        };
    }
    if let Some(b) = a.binarize {
        cfg.data.binarize = match b {
            BinarizeArg::None => Binarize::None,
            BinarizeArg::Dynamic => Binarize::Dynamic,
            BinarizeArg::Static => Binarize::Static,
        };
    }
    macro_rules! set {
        ($flag:ident => $($field:tt)+) => {
            if let Some(v) = a.$flag { cfg.$($field)+ = v; }
        };
    }
    set!(latent => model.latent_dim);
    set!(epochs => epochs);
    set!(batch_size => batch_size);
    set!(lr => optim.lr);
    set!(seed => seed);
    set!(beta => beta);
    set!(kl_warmup => kl_warmup_epochs);
    set!(free_bits => free_bits);
    if let Some(l) = a.limit {
        cfg.data.limit = Some(l);
    }
    if let Some(t) = a.loader_threads {
        cfg.data.loader_threads = t;
    }
    Ok(())
}

/// The model family in words, for the first line of a run.
fn family(cfg: &TrainConfig) -> String {
    let base = match (cfg.model.classes, &cfg.model.top) {
        (_, Some(_)) => "hierarchical VAE".to_string(),
        (0, None) => "VAE".to_string(),
        (c, None) => format!("conditional VAE ({c} classes)"),
    };
    if matches!(cfg.method, MethodConfig::Vaegan(_)) {
        return format!("{base}-GAN");
    }
    match cfg.objective {
        Objective::Iwae { k } if cfg.model.top.is_none() && cfg.model.classes == 0 => {
            format!("IWAE (k = {k})")
        }
        Objective::Iwae { k } => format!("{base} on the IWAE bound (k = {k})"),
        Objective::Elbo => base,
    }
}

/// `runs/DATASET-MODEL`, or `-2`, `-3`, ... if taken.
fn default_out(cfg: &TrainConfig) -> PathBuf {
    let family = match (cfg.objective, cfg.model.classes, &cfg.model.top) {
        (Objective::Iwae { k }, _, None) => format!("iwae{k}-"),
        (Objective::Iwae { k }, _, Some(_)) => format!("hvae-iwae{k}-"),
        (Objective::Elbo, _, Some(_)) => "hvae-".into(),
        (Objective::Elbo, 0, None) => String::new(),
        (Objective::Elbo, _, None) => "cvae-".into(),
    };
    let family = match cfg.method {
        MethodConfig::Vaegan(_) => format!("vaegan-{family}"),
        MethodConfig::Vae => family,
    };
    let base = format!(
        "{}-{family}{}",
        cfg.data.dataset,
        cfg.model.architecture.name()
    );
    let root = PathBuf::from("runs");
    let mut p = root.join(&base);
    let mut k = 2;
    while p.exists() {
        p = root.join(format!("{base}-{k}"));
        k += 1;
    }
    p
}

/// Shows a bar per epoch and prints a line when an epoch ends.
struct BarObserver {
    bar: Option<ProgressBar>,
    /// Set when standard output fails, so training stops at the next step with a checkpoint.
    stop: Arc<AtomicBool>,
    /// The first failure to write standard output.
    output: Option<std::io::Error>,
}

impl Observer for BarObserver {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize, first: usize) {
        let pb = bar(steps as u64, &format!("epoch {epoch}/{epochs}"), false);
        pb.set_position(first as u64);
        self.bar = Some(pb);
    }

    fn step(&mut self, s: &StepStats) {
        if let Some(pb) = &self.bar {
            pb.set_position(s.epoch_step as u64);
            if s.epoch_step % 10 == 0 || s.epoch_step == s.steps_per_epoch {
                pb.set_message(s.metrics.summary(2));
            }
        }
    }

    fn evaluating(&mut self, _epoch: usize) {
        if let Some(pb) = &self.bar {
            pb.set_message("evaluating on the test set".to_string());
        }
    }

    fn epoch_end(&mut self, m: &EpochMetrics) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
        // "train loss 1.00 recon 0.50 kl 0.50 | test neg_elbo ... | 6000 img/s"
        let part = |prefix: &str| {
            m.values
                .iter()
                .filter_map(|(n, v)| n.strip_prefix(prefix).map(|n| format!("{n} {v:.2}")))
                .collect::<Vec<_>>()
                .join(" ")
        };
        // Input that held the step back for more than 2% of the epoch is worth a word.
        let waited = match (m.get("data_wait_seconds"), m.get("seconds")) {
            (Some(w), Some(s)) if w > 0.02 * s => format!(" (waited {w:.1} s for data)"),
            _ => String::new(),
        };
        let written = crate::outln!(
            "epoch {:>3}: train {} | test {} | {:.0} img/s{waited}",
            m.epoch,
            part("train_"),
            part("test_"),
            m.get("images_per_sec").unwrap_or(f64::NAN)
        );
        if let Err(e) = written {
            if self.output.is_none() {
                self.stop.store(true, Ordering::SeqCst);
                self.output = Some(e);
            }
        }
    }
}
