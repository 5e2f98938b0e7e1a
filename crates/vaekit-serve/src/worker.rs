//! The model's own thread: it loads the run, answers one job at a time, and never blocks the
//! async threads. Jobs wait in a bounded queue; a full queue is refused at once (503), so the
//! work in flight is bounded however many clients ask.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;
use tokio::sync::oneshot;
use vaekit::checkpoint::load_model;
use vaekit::config::{MethodConfig, Objective, TrainConfig};
use vaekit::data::{Dataset, Split, batch_tensor, load_data, one_hot};
use vaekit::device::DeviceChoice;
use vaekit::image::Grid;
use vaekit::inspect::codes::encode_dataset;
use vaekit::inspect::pca::Pca;
use vaekit::inspect::{prior_z, sample_labels};
use vaekit::model::Vae;
use vaekit::run::RunDir;

use crate::error::ApiError;

/// Jobs that may wait for the model at once; one more is refused as busy.
pub const QUEUE: usize = 64;

/// Test images encoded at start for the 2-D pad, the class means and the sliders' spreads.
pub const ATLAS_IMAGES: usize = 2000;

/// What `GET /api/model` says about the run.
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    /// conv, mlp, iwae, cvae, hvae or vaegan.
    pub kind: String,
    /// The code length (z's dimension).
    pub latent: usize,
    /// Classes of a conditional model (0: unconditional).
    pub classes: usize,
    /// The dataset's class names, when its test set was found.
    pub class_names: Vec<String>,
    /// `[channels, height, width]`.
    pub image: [usize; 3],
    /// Epochs trained.
    pub epoch: usize,
    /// Test images the page can pick by index (0 when the dataset was not found).
    pub test_images: usize,
}

/// The test set's codes: what the 2-D pad draws and the sliders show.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Atlas {
    /// Posterior means, one row per image.
    pub means: Vec<Vec<f32>>,
    /// Each image's label.
    pub labels: Vec<u32>,
    /// Mean KL(q(z|x) || N(0, I)) per dimension, nats: the sliders' order.
    pub kl_per_dim: Vec<f64>,
    /// Mean posterior standard deviation per dimension (the spread a slider shows).
    pub spread: Vec<f64>,
    /// Mean code of each class present (the attribute vectors' ends).
    pub class_means: Vec<Option<Vec<f32>>>,
    /// The codes' mean and two leading principal directions (the PCA plane).
    pub pca_mean: Vec<f64>,
    /// Two rows of `latent` values.
    pub pca_components: Vec<Vec<f64>>,
    /// Each image's place in the PCA plane.
    pub pca_points: Vec<[f64; 2]>,
}

/// The bytes of a PNG file.
pub type Png = Vec<u8>;

type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// One unit of work for the model.
pub enum Job {
    /// Decode codes (row-major, `latent` each) under labels (conditional models) to a grid of
    /// `columns` columns.
    Decode {
        codes: Vec<f32>,
        labels: Vec<u32>,
        columns: usize,
        reply: Reply<Png>,
    },
    /// Encode one image (CHW bytes of the model's shape): mean and log-variance.
    Encode {
        pixels: Vec<u8>,
        label: u32,
        reply: Reply<(Vec<f32>, Vec<f32>)>,
    },
    /// Draw `n` codes from the prior (seeded, tempered); for a conditional model of `class` or
    /// of every class in turn.
    SampleCodes {
        n: usize,
        seed: u64,
        temperature: f64,
        class: Option<u32>,
        reply: Reply<(Vec<Vec<f32>>, Vec<u32>)>,
    },
    /// The posterior means of test images `indices` and their labels.
    TestCodes {
        indices: Vec<usize>,
        reply: Reply<(Vec<Vec<f32>>, Vec<u32>)>,
    },
    /// Test image `index` as a PNG.
    TestImage { index: usize, reply: Reply<Png> },
}

/// The handle the routes hold: the run's description, its atlas, and the queue to the model.
#[derive(Clone)]
pub struct Model {
    tx: SyncSender<Job>,
    /// The run.
    pub info: std::sync::Arc<Info>,
    /// The test set's codes (empty when the dataset was not found).
    pub atlas: std::sync::Arc<Atlas>,
}

impl Model {
    /// Loads `run` on `device` in a new thread and encodes the atlas there; returns once the
    /// model is ready, or the load's error. A missing dataset is not an error: `warn` gets one
    /// line and the page works without test images.
    pub fn start(run: &Path, device: DeviceChoice, warn: impl Fn(String)) -> Result<Model, String> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let run: PathBuf = run.to_path_buf();
        std::thread::Builder::new()
            .name("vaekit-model".into())
            .spawn(move || {
                let ctx = match Ctx::load(&run, device) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((ctx.info.clone(), ctx.atlas(), ctx.data_error.clone())));
                while let Ok(job) = rx.recv() {
                    ctx.run(job);
                }
            })
            .map_err(|e| format!("cannot start the model's thread: {e}"))?;
        let (info, atlas, data_error) = ready_rx
            .recv()
            .map_err(|_| "the model's thread ended while loading".to_string())??;
        if let Some(e) = data_error {
            warn(format!(
                "no test images ({e}): the page works without the 2-D pad's dots and picking by index"
            ));
        }
        Ok(Model {
            tx,
            info: std::sync::Arc::new(info),
            atlas: std::sync::Arc::new(atlas),
        })
    }

    /// Queues a job built around a reply channel and waits for its answer; a full queue is
    /// [`ApiError::Busy`].
    pub async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(job(reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ApiError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::Internal("the model's thread has ended".into()));
            }
        }
        rx.await
            .map_err(|_| ApiError::Internal("the model's thread dropped a job".into()))?
    }
}

/// What the model's thread owns.
struct Ctx {
    model: Vae,
    device: Device,
    info: Info,
    test: Option<Dataset>,
    data_error: Option<String>,
}

/// The model kind a run's config describes, as `GET /api/model` names it.
pub fn kind(cfg: &TrainConfig) -> String {
    if matches!(cfg.method, MethodConfig::Vaegan(_)) {
        return "vaegan".into();
    }
    if cfg.model.top.is_some() {
        return "hvae".into();
    }
    if cfg.model.classes > 0 {
        return "cvae".into();
    }
    if matches!(cfg.objective, Objective::Iwae { .. }) {
        return "iwae".into();
    }
    cfg.model.architecture.name().to_string()
}

impl Ctx {
    fn load(run: &Path, choice: DeviceChoice) -> Result<Ctx, String> {
        let device = choice.device().map_err(|e| e.to_string())?;
        let dir = RunDir::open(run).map_err(|e| e.to_string())?;
        let cfg = dir.config().map_err(|e| e.to_string())?;
        let (model, mcfg, meta) = load_model(&dir, &device).map_err(|e| e.to_string())?;
        let (test, data_error) = match load_data(&cfg.data, Some(mcfg.image), cfg.seed) {
            Ok(s) => (Some(s.get(Split::Test).clone()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let s = mcfg.image;
        let info = Info {
            kind: kind(&cfg),
            latent: model.latent_dim(),
            classes: model.classes(),
            class_names: test.as_ref().map(|t| t.classes.clone()).unwrap_or_default(),
            image: [s.channels, s.height, s.width],
            epoch: meta.epoch,
            test_images: test.as_ref().map_or(0, |t| t.len()),
        };
        Ok(Ctx {
            model,
            device,
            info,
            test,
            data_error,
        })
    }

    /// Encodes the first [`ATLAS_IMAGES`] test images and summarises their codes.
    fn atlas(&self) -> Atlas {
        let Some(test) = &self.test else {
            return Atlas::default();
        };
        let n = test.len().min(ATLAS_IMAGES);
        if n < 2 {
            return Atlas::default();
        }
        let idx: Vec<usize> = (0..n).collect();
        let codes = encode_dataset(&self.model, test, Some(&idx), 250, &self.device);
        let d = codes.latent;
        let mut kl = vec![0.0; d];
        let mut spread = vec![0.0; d];
        for (m, lv) in codes.mean.chunks(d).zip(codes.logvar.chunks(d)) {
            for j in 0..d {
                let (m, lv) = (m[j] as f64, lv[j] as f64);
                kl[j] += 0.5 * (m * m + lv.exp() - 1.0 - lv) / n as f64;
                spread[j] += (0.5 * lv).exp() / n as f64;
            }
        }
        let classes = test.classes.len().max(self.info.classes);
        let mut sums = vec![(vec![0.0f64; d], 0usize); classes];
        for (i, &l) in codes.labels.iter().enumerate() {
            if let Some((s, c)) = sums.get_mut(l as usize) {
                for (a, &v) in s.iter_mut().zip(codes.mean_of(i)) {
                    *a += v as f64;
                }
                *c += 1;
            }
        }
        let class_means = sums
            .into_iter()
            .map(|(s, c)| (c > 0).then(|| s.iter().map(|v| (v / c as f64) as f32).collect()))
            .collect();
        let pca = Pca::fit(&codes.mean, d, 2);
        let pca_points = (0..n)
            .map(|i| {
                let p = pca.project(codes.mean_of(i));
                [p[0], p.get(1).copied().unwrap_or(0.0)]
            })
            .collect();
        Atlas {
            means: codes.mean.chunks(d).map(|c| c.to_vec()).collect(),
            labels: codes.labels.clone(),
            kl_per_dim: kl,
            spread,
            class_means,
            pca_mean: pca.mean,
            pca_components: pca.components,
            pca_points,
        }
    }

    fn run(&self, job: Job) {
        match job {
            Job::Decode {
                codes,
                labels,
                columns,
                reply,
            } => {
                let _ = reply.send(self.decode(&codes, &labels, columns));
            }
            Job::Encode {
                pixels,
                label,
                reply,
            } => {
                let _ = reply.send(Ok(self.encode(pixels, label)));
            }
            Job::SampleCodes {
                n,
                seed,
                temperature,
                class,
                reply,
            } => {
                let _ = reply.send(Ok(self.sample_codes(n, seed, temperature, class)));
            }
            Job::TestCodes { indices, reply } => {
                let _ = reply.send(self.test_codes(&indices));
            }
            Job::TestImage { index, reply } => {
                let _ = reply.send(self.test_image(index));
            }
        }
    }

    fn decode(&self, codes: &[f32], labels: &[u32], columns: usize) -> Result<Png, ApiError> {
        let d = self.model.latent_dim();
        let n = codes.len() / d;
        let z = Tensor::<2>::from_data(TensorData::new(codes.to_vec(), [n, d]), &self.device);
        let c = self.model.classes();
        let y = (c > 0).then(|| {
            Tensor::<2>::from_data(TensorData::new(one_hot(labels, c), [n, c]), &self.device)
        });
        png_grid(self.model.decode_mean(z, y), columns.clamp(1, n.max(1)))
    }

    fn encode(&self, pixels: Vec<u8>, label: u32) -> (Vec<f32>, Vec<f32>) {
        let s = self.info.image;
        let ds = Dataset {
            shape: vaekit::config::ImageShape {
                channels: s[0],
                height: s[1],
                width: s[2],
            },
            pixels: pixels.into(),
            labels: vec![label],
            classes: Vec::new(),
        };
        let x = batch_tensor(&ds, &[0], None, &self.device);
        let q = self
            .model
            .encode(x, self.model.condition(&[label], &self.device));
        let v = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap_or_default();
        (v(q.mean), v(q.logvar))
    }

    fn sample_codes(
        &self,
        n: usize,
        seed: u64,
        temperature: f64,
        class: Option<u32>,
    ) -> (Vec<Vec<f32>>, Vec<u32>) {
        let labels = sample_labels(&self.model, n, class, 0);
        let noise = prior_z(n, self.model.noise_dim(), seed, &self.device);
        let noise = self.model.prior.temper(noise, temperature);
        let y = self.model.condition(&labels, &self.device);
        let z = self.model.prior_sample(noise, y);
        let d = self.model.latent_dim();
        let v = z.into_data().try_into_vec::<f32>().unwrap_or_default();
        (v.chunks(d).map(|c| c.to_vec()).collect(), labels)
    }

    fn test_set(&self) -> Result<&Dataset, ApiError> {
        self.test.as_ref().ok_or_else(|| {
            ApiError::NotFound("this run's test images were not found on the server".into())
        })
    }

    fn test_codes(&self, indices: &[usize]) -> Result<(Vec<Vec<f32>>, Vec<u32>), ApiError> {
        let test = self.test_set()?;
        check_indices(indices, test.len())?;
        let codes = encode_dataset(&self.model, test, Some(indices), 250, &self.device);
        let d = codes.latent;
        Ok((
            codes.mean.chunks(d).map(|c| c.to_vec()).collect(),
            codes.labels,
        ))
    }

    fn test_image(&self, index: usize) -> Result<Png, ApiError> {
        let test = self.test_set()?;
        check_indices(&[index], test.len())?;
        png_grid(batch_tensor(test, &[index], None, &self.device), 1)
    }
}

fn check_indices(indices: &[usize], len: usize) -> Result<(), ApiError> {
    match indices.iter().find(|&&i| i >= len) {
        Some(i) => Err(ApiError::BadRequest(format!(
            "test image {i} does not exist (the test set has {len})"
        ))),
        None => Ok(()),
    }
}

/// Images `[n, c, h, w]` in [0, 1] as one PNG grid of `columns` columns without borders.
pub fn png_grid(images: Tensor<4>, columns: usize) -> Result<Png, ApiError> {
    let img = Grid::from_tensor(images, columns.max(1))
        .with_border(0)
        .render();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| ApiError::Internal(format!("PNG encoding failed: {e}")))?;
    Ok(out.into_inner())
}
