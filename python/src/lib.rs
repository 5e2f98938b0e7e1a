//! `vaekit._vaekit`: the Python binding, a thin layer over the vaekit library (and the CLI's
//! own `train`): numpy arrays in and out, the GIL released while the model works, every error a
//! Python exception with the CLI's one-line message. The Python side (`vaekit/__init__.py`)
//! adds keyword arguments for `train` and type stubs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use clap::Parser;
use numpy::ndarray::{Array2, Array4};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray4, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use vaekit::burn::tensor::{Device, Tensor, TensorData};
use vaekit::checkpoint::load_model;
use vaekit::config::TrainConfig;
use vaekit::eval::EVAL_BATCH;
use vaekit::eval::elbo::elbo_terms;
use vaekit::eval::nll::{IW_BATCH, log_likelihood_images};
use vaekit::inspect::{sample, sample_labelled};
use vaekit::model::Vae;
use vaekit::run::RunDir;

/// Rust's allocations in the extension (tensors, numpy results) go to mimalloc, which keeps
/// freed memory for reuse (see [`keep_freed_memory`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_purge_delay`.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never hand freed memory back to the kernel, as the CLI does: decoding a batch of 256 MLP
/// images ran at about 110-130k images/s with glibc's allocator, ~150-190k with mimalloc (AMD
/// EPYC with AVX2, no AVX-512).
fn keep_freed_memory() {
    // SAFETY: sets one of mimalloc's options, which it reads atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

pyo3::create_exception!(
    vaekit,
    VaekitError,
    PyException,
    "A vaekit error: a corrupt or unreadable file, a run that cannot be used, a failed training. The message is the CLI's, naming the file."
);

/// The Python exception for a library error: `FileNotFoundError` where the file or folder it
/// names does not exist, `ValueError` for an invalid setting, [`VaekitError`] for the rest.
fn lib_err(e: vaekit::Error) -> PyErr {
    lib_err_with(&e, e.to_string())
}

/// [`lib_err`]'s exception type for `e`, with the message `msg`.
fn lib_err_with(e: &vaekit::Error, msg: String) -> PyErr {
    let missing = |p: &std::path::Path| !p.exists();
    match e {
        vaekit::Error::NotARun { path, .. } | vaekit::Error::BadDataset { path, .. }
            if missing(path) =>
        {
            PyFileNotFoundError::new_err(msg)
        }
        vaekit::Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(msg)
        }
        vaekit::Error::DatasetNotFound { .. } => PyFileNotFoundError::new_err(msg),
        vaekit::Error::InvalidConfig(_) => PyValueError::new_err(msg),
        _ => VaekitError::new_err(msg),
    }
}

fn export_err(e: vaekit_export::ExportError) -> PyErr {
    match e {
        vaekit_export::ExportError::Vaekit(e) => lib_err(e),
        vaekit_export::ExportError::Unsupported(m) => PyValueError::new_err(m),
        e => VaekitError::new_err(e.to_string()),
    }
}

/// The training thread's kernel pool: a rayon pool (`RAYON_NUM_THREADS` threads, else one per
/// logical CPU) that the training runs inside, so that each layer is split from one of the
/// pool's own threads, which takes its share, as the CLI has its main thread in the pool (see
/// `vaekit::ops::pool`). Inference calls run on the calling thread with rayon's global pool:
/// moving each call into a pool cost more than it saved (conv decoding of one image ~7,700
/// images/s against ~13,800 on the calling thread, MLP decoding of 256 no faster, on an AMD
/// EPYC with AVX2, no AVX-512).
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("vaekit-{i}"))
            .build()
            .expect("the kernels' threads start")
    })
}

/// Runs `f` with the GIL released.
fn compute<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> T {
    py.detach(f)
}

/// Images per pass through the model: bounds the memory of any batch from Python.
const CHUNK: usize = EVAL_BATCH;

/// A trained model, loaded from a run folder (see `vaekit.load`).
#[pyclass(module = "vaekit", name = "Model", frozen)]
struct Model {
    vae: Mutex<Vae>,
    cfg: TrainConfig,
    run: PathBuf,
    epoch: usize,
    device: Device,
}

/// Values of a float32 (or float64, converted) numpy array, with its shape.
fn floats(arg: &str, x: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, Vec<usize>)> {
    let py = x.py();
    let Ok(arr) = x.cast::<PyUntypedArray>() else {
        return Err(PyTypeError::new_err(format!(
            "{arg}: expected a numpy array of float32, got {}",
            x.get_type().name()?
        )));
    };
    let shape = arr.shape().to_vec();
    let dtype = arr.dtype();
    let values: Vec<f32> = if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
        let a = x.cast::<PyArrayDyn<f32>>()?.readonly();
        a.as_array().iter().copied().collect()
    } else if dtype.is_equiv_to(&numpy::dtype::<f64>(py)) {
        let a = x.cast::<PyArrayDyn<f64>>()?.readonly();
        a.as_array().iter().map(|&v| v as f32).collect()
    } else {
        return Err(PyTypeError::new_err(format!(
            "{arg}: expected float32 values, got dtype {} (images: divide 8-bit pixels by 255)",
            dtype.str()?
        )));
    };
    if values.iter().any(|v| !v.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "{arg}: contains NaN or infinite values"
        )));
    }
    Ok((values, shape))
}

fn shape_text(s: &[usize]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl Model {
    /// A batch of images `[n, C, H, W]` in [0, 1], checked against the model.
    fn images(&self, arg: &str, x: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, usize)> {
        let (v, shape) = floats(arg, x)?;
        let s = self.cfg.model.image;
        if shape.len() != 4 || shape[1..] != [s.channels, s.height, s.width] {
            return Err(PyValueError::new_err(format!(
                "{arg}: expected shape [N, {}, {}, {}] (images in [0, 1]), got {}",
                s.channels,
                s.height,
                s.width,
                shape_text(&shape)
            )));
        }
        if v.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(PyValueError::new_err(format!(
                "{arg}: pixel values must lie in [0, 1]"
            )));
        }
        Ok((v, shape[0]))
    }

    /// Codes `[n, latent]`.
    fn codes(&self, arg: &str, z: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, usize)> {
        let (v, shape) = floats(arg, z)?;
        let l = self.cfg.model.latent_dim;
        if shape.len() != 2 || shape[1] != l {
            return Err(PyValueError::new_err(format!(
                "{arg}: expected shape [N, {l}], got {}",
                shape_text(&shape)
            )));
        }
        Ok((v, shape[0]))
    }

    /// The class of each of `n` items: none for an unconditional model; from an int (all the
    /// same) or a sequence of `n` ints for a conditional one. `required`: a conditional model
    /// must be given them.
    fn labels(
        &self,
        classes: Option<&Bound<'_, PyAny>>,
        n: usize,
        required: bool,
    ) -> PyResult<Option<Vec<u32>>> {
        let c = self.cfg.model.classes;
        let Some(classes) = classes.filter(|v| !v.is_none()) else {
            if c > 0 && required {
                return Err(PyValueError::new_err(format!(
                    "classes: this conditional model ({c} classes) needs the class of each item"
                )));
            }
            return Ok(None);
        };
        if c == 0 {
            return Err(PyValueError::new_err(
                "classes: this model is unconditional; give no classes",
            ));
        }
        let list: Vec<i64> = match classes.extract::<i64>() {
            Ok(one) => vec![one; n],
            Err(_) => classes.extract::<Vec<i64>>().map_err(|_| {
                PyTypeError::new_err("classes: expected an int or a sequence of ints")
            })?,
        };
        if list.len() != n {
            return Err(PyValueError::new_err(format!(
                "classes: expected {n} classes (one per item), got {}",
                list.len()
            )));
        }
        list.iter()
            .map(|&v| {
                u32::try_from(v)
                    .ok()
                    .filter(|&v| (v as usize) < c)
                    .ok_or_else(|| {
                        PyValueError::new_err(format!(
                            "classes: {v} is not a class of this model (0 to {})",
                            c - 1
                        ))
                    })
            })
            .collect::<PyResult<Vec<u32>>>()
            .map(Some)
    }

    fn tensor4(&self, v: &[f32], n: usize) -> Tensor<4> {
        let s = self.cfg.model.image;
        Tensor::from_data(
            TensorData::new(v.to_vec(), [n, s.channels, s.height, s.width]),
            &self.device,
        )
    }

    fn vae(&self) -> std::sync::MutexGuard<'_, Vae> {
        self.vae.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn image_array<'py>(
        &self,
        py: Python<'py>,
        v: Vec<f32>,
        n: usize,
    ) -> Bound<'py, PyArray4<f32>> {
        let s = self.cfg.model.image;
        Array4::from_shape_vec((n, s.channels, s.height, s.width), v)
            .expect("the model's images have its shape")
            .into_pyarray(py)
    }
}

/// A tensor of any rank as a float32 numpy array.
fn tensor_array<'py, const D: usize>(py: Python<'py>, t: Tensor<D>) -> PyResult<Bound<'py, PyAny>> {
    let dims = t.dims().to_vec();
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values");
    Ok(numpy::PyArray1::from_vec(py, v).reshape(dims)?.into_any())
}

/// Runs `f` on `items` (`per` values each, with their `labels` where the model takes them) in
/// batches of `batch`: `f(index, values, count, labels)` for each batch, the results in order.
fn batched<R>(
    items: &[f32],
    per: usize,
    batch: usize,
    labels: &[u32],
    mut f: impl FnMut(usize, &[f32], usize, &[u32]) -> R,
) -> Vec<R> {
    let per = per.max(1);
    items
        .chunks(batch * per)
        .enumerate()
        .map(|(b, chunk)| {
            let m = chunk.len() / per;
            f(
                b,
                chunk,
                m,
                labels.get(b * batch..b * batch + m).unwrap_or(&[]),
            )
        })
        .collect()
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values")
}

#[pymethods]
impl Model {
    /// q(z|x): the posterior mean and log-variance `[N, latent]` of images `x` `[N, C, H, W]`
    /// (float32 in [0, 1]); a conditional model takes each image's class.
    #[pyo3(signature = (x, classes=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        classes: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>)> {
        let (v, n) = self.images("x", x)?;
        let labels = self.labels(classes, n, true)?.unwrap_or_default();
        let per = self.cfg.model.image.numel();
        let (mean, logvar): (Vec<_>, Vec<_>) = compute(py, || {
            let vae = self.vae();
            batched(&v, per, CHUNK, &labels, |_, chunk, m, lab| {
                let q = vae.encode(self.tensor4(chunk, m), vae.condition(lab, &self.device));
                let rows = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().expect("f32");
                (rows(q.mean), rows(q.logvar))
            })
            .into_iter()
            .unzip()
        });
        let (mean, logvar) = (mean.concat(), logvar.concat());
        let l = self.cfg.model.latent_dim;
        let arr = |v| {
            Array2::from_shape_vec((n, l), v)
                .expect("codes")
                .into_pyarray(py)
        };
        Ok((arr(mean), arr(logvar)))
    }

    /// The mean images `[N, C, H, W]` in [0, 1] decoded from codes `z` `[N, latent]`.
    #[pyo3(signature = (z, classes=None))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        z: &Bound<'py, PyAny>,
        classes: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        let (v, n) = self.codes("z", z)?;
        let labels = self.labels(classes, n, true)?.unwrap_or_default();
        let l = self.cfg.model.latent_dim;
        let out = compute(py, || {
            let vae = self.vae();
            batched(&v, l, CHUNK, &labels, |_, chunk, _, lab| {
                values(vaekit::inspect::decode_codes(
                    &vae,
                    chunk,
                    lab,
                    &self.device,
                ))
            })
            .concat()
        });
        Ok(self.image_array(py, out, n))
    }

    /// The parameters of p(x|z) the decoder gives for codes `z` `[N, latent]`: logits (or
    /// means) `[N, C, H, W]`, then the log-scale maps for the likelihoods that have them
    /// (`[N, 2C, H, W]` in all), as the ONNX decoder's and the PyTorch module's `decode`.
    #[pyo3(signature = (z, classes=None))]
    fn decode_params<'py>(
        &self,
        py: Python<'py>,
        z: &Bound<'py, PyAny>,
        classes: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        let (v, n) = self.codes("z", z)?;
        let labels = self.labels(classes, n, true)?.unwrap_or_default();
        let l = self.cfg.model.latent_dim;
        let out = compute(py, || {
            let vae = self.vae();
            batched(&v, l, CHUNK, &labels, |_, chunk, m, lab| {
                let z =
                    Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [m, l]), &self.device);
                values(vae.decode(z, vae.condition(lab, &self.device)))
            })
            .concat()
        });
        let s = self.cfg.model.image;
        let maps = s.channels * self.cfg.model.likelihood.params_per_pixel();
        Ok(Array4::from_shape_vec((n, maps, s.height, s.width), out)
            .expect("the decoder's maps have the likelihood's shape")
            .into_pyarray(py))
    }

    /// The learned prior's parameters, as `prior.onnx` gives them: for a hierarchical VAE the
    /// mean and log-variance of p(z|z2) for `z2` `[N, latent2]`; for a learned class prior the
    /// means and log-variances `[N, K, latent]` of the K components of each of `classes`, and
    /// their log weights `[N, K]`. None for N(0, I).
    #[pyo3(signature = (z2=None, classes=None))]
    fn prior_params<'py>(
        &self,
        py: Python<'py>,
        z2: Option<&Bound<'py, PyAny>>,
        classes: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Vec<Bound<'py, PyAny>>>> {
        use vaekit::model::Prior;
        let vae = self.vae();
        match &vae.prior {
            Prior::StandardNormal(_) => Ok(None),
            Prior::TwoLayer(t) => {
                let Some(z2) = z2 else {
                    return Err(PyValueError::new_err(
                        "z2: a hierarchical model's prior takes z2",
                    ));
                };
                let (v, shape) = floats("z2", z2)?;
                if shape.len() != 2 || shape[1] != t.latent() {
                    return Err(PyValueError::new_err(format!(
                        "z2: expected shape [N, {}], got {}",
                        t.latent(),
                        shape_text(&shape)
                    )));
                }
                let z2 =
                    Tensor::<2>::from_data(TensorData::new(v, [shape[0], shape[1]]), &self.device);
                let p = t.prior(z2);
                Ok(Some(vec![
                    tensor_array(py, p.mean)?,
                    tensor_array(py, p.logvar)?,
                ]))
            }
            Prior::Class(p) => {
                let Some(c) = classes else {
                    return Err(PyValueError::new_err(
                        "classes: a class prior takes classes",
                    ));
                };
                let n = c.len().unwrap_or(1);
                let labels = self.labels(Some(c), n, true)?.unwrap_or_default();
                let y = vae
                    .condition(&labels, &self.device)
                    .expect("a conditional model");
                let (m, lv, lw) = p.mixture(y);
                Ok(Some(vec![
                    tensor_array(py, m)?,
                    tensor_array(py, lv)?,
                    tensor_array(py, lw)?,
                ]))
            }
        }
    }

    /// `n` images decoded from the prior, the same as `vaekit sample --n N --seed S
    /// [--temperature T] [--class C]` draws: `classes` an int (all of that class), a sequence
    /// of `n` classes, or None (every class in turn, for a conditional model).
    #[pyo3(signature = (n, seed=0, temperature=1.0, classes=None))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        seed: u64,
        temperature: f64,
        classes: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        if n == 0 || n > 1_000_000 {
            return Err(PyValueError::new_err(format!(
                "n: {n} samples; give 1 to 1000000"
            )));
        }
        if !(temperature.is_finite() && temperature > 0.0 && temperature <= 100.0) {
            return Err(PyValueError::new_err(format!(
                "temperature: {temperature}; give a value above 0 and at most 100"
            )));
        }
        let one = classes.and_then(|c| c.extract::<i64>().ok());
        let labels = self.labels(classes, n, false)?;
        let out = compute(py, || {
            let vae = self.vae();
            let x = match (labels, one) {
                (Some(l), None) => sample_labelled(&vae, n, &l, seed, 0, temperature, &self.device),
                (Some(_), Some(c)) => {
                    sample(&vae, n, seed, Some(c as u32), temperature, &self.device)
                }
                (None, _) => sample(&vae, n, seed, None, temperature, &self.device),
            };
            values(x)
        });
        Ok(self.image_array(py, out, n))
    }

    /// Encodes images and decodes their posterior means (`vaekit reconstruct`'s images).
    #[pyo3(signature = (x, classes=None))]
    fn reconstruct<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        classes: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        let (v, n) = self.images("x", x)?;
        let labels = self.labels(classes, n, true)?.unwrap_or_default();
        let per = self.cfg.model.image.numel();
        let out = compute(py, || {
            let vae = self.vae();
            batched(&v, per, CHUNK, &labels, |_, chunk, m, lab| {
                values(vaekit::inspect::reconstruct(
                    &vae,
                    self.tensor4(chunk, m),
                    lab,
                ))
            })
            .concat()
        });
        Ok(self.image_array(py, out, n))
    }

    /// The ELBO of each image in nats (one sampled z per image, from `seed`): the negative of
    /// the per-image figure whose mean `vaekit eval` reports as neg_elbo for the same images in
    /// the same order.
    #[pyo3(signature = (x, classes=None, seed=0))]
    fn elbo<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        classes: Option<&Bound<'py, PyAny>>,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let (v, n) = self.images("x", x)?;
        let labels = self.labels(classes, n, true)?.unwrap_or_default();
        let per = self.cfg.model.image.numel();
        let likelihood = self.cfg.model.likelihood;
        let out = compute(py, || {
            let vae = self.vae();
            batched(&v, per, EVAL_BATCH, &labels, |b, chunk, m, lab| {
                let y = vae.condition(lab, &self.device);
                let (recon, kl) = elbo_terms(
                    &vae,
                    self.tensor4(chunk, m),
                    y,
                    likelihood,
                    seed,
                    b,
                    &self.device,
                );
                let recon = recon.into_data().try_into_vec::<f32>().expect("f32");
                let kl = kl
                    .sum_dim(1)
                    .into_data()
                    .try_into_vec::<f32>()
                    .expect("f32");
                recon
                    .iter()
                    .zip(&kl)
                    .map(|(r, k)| -(*r as f64 + *k as f64))
                    .collect::<Vec<_>>()
            })
            .concat()
        });
        Ok(out.into_pyarray(py))
    }

    /// log p(x) of each image in nats, estimated with `samples` importance samples from `seed`
    /// (`vaekit eval --iw K`'s estimator, per image).
    #[pyo3(signature = (x, classes=None, samples=1000, seed=0))]
    fn log_likelihood<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        classes: Option<&Bound<'py, PyAny>>,
        samples: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        if samples == 0 || samples > 1_000_000 {
            return Err(PyValueError::new_err(format!(
                "samples: {samples}; give 1 to 1000000"
            )));
        }
        let (v, n) = self.images("x", x)?;
        let labels = self.labels(classes, n, true)?.unwrap_or_default();
        let per = self.cfg.model.image.numel();
        let likelihood = self.cfg.model.likelihood;
        let out = compute(py, || {
            let vae = self.vae();
            batched(&v, per, IW_BATCH, &labels, |b, chunk, m, lab| {
                let y = vae.condition(lab, &self.device);
                let x = self.tensor4(chunk, m);
                log_likelihood_images(
                    &vae,
                    x,
                    y,
                    likelihood,
                    samples,
                    seed,
                    b as u64,
                    &self.device,
                )
            })
            .concat()
        });
        Ok(out.into_pyarray(py))
    }

    /// Dimension of z.
    #[getter]
    fn latent_dim(&self) -> usize {
        self.cfg.model.latent_dim
    }

    /// (channels, height, width) of the images.
    #[getter]
    fn image_shape(&self) -> (usize, usize, usize) {
        let s = self.cfg.model.image;
        (s.channels, s.height, s.width)
    }

    /// Classes of a conditional model (0: unconditional).
    #[getter]
    fn classes(&self) -> usize {
        self.cfg.model.classes
    }

    /// Epochs the loaded checkpoint has trained.
    #[getter]
    fn epoch(&self) -> usize {
        self.epoch
    }

    /// The run folder.
    #[getter]
    fn run(&self) -> String {
        self.run.display().to_string()
    }

    /// The run's config (its `config.json`) as JSON text.
    #[getter]
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).expect("a config serialises")
    }

    /// The run's config (its `config.json`) as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (self.config_json(),))
    }

    fn __repr__(&self) -> String {
        let s = self.cfg.model.image;
        format!(
            "vaekit.Model(run={:?}, {} {}, z={}, classes={}, epoch={})",
            self.run.display().to_string(),
            self.cfg.model.architecture.name(),
            s,
            self.cfg.model.latent_dim,
            self.cfg.model.classes,
            self.epoch
        )
    }
}

/// The model of the run folder `run`, on the CPU.
#[pyfunction]
fn load(py: Python<'_>, run: PathBuf) -> PyResult<Model> {
    compute(py, || {
        let device = Device::flex();
        let dir = RunDir::open(&run)?;
        let cfg = dir.config()?;
        let (vae, _, meta) = load_model(&dir, &device)?;
        Ok(Model {
            vae: Mutex::new(vae),
            cfg,
            run: run.clone(),
            epoch: meta.epoch,
            device,
        })
    })
    .map_err(lib_err)
}

/// The epochs' metrics of a run as JSON lines (`metrics.jsonl`, validated).
#[pyfunction]
fn metrics_json(run: PathBuf) -> PyResult<Vec<String>> {
    let dir = RunDir::open(&run).map_err(lib_err)?;
    let m = dir.metrics().map_err(lib_err)?;
    Ok(m.iter()
        .map(|e| serde_json::to_string(e).expect("metrics serialise"))
        .collect())
}

/// Exports the run (see `vaekit export`); returns the files written.
#[pyfunction]
#[pyo3(signature = (run, format, out, size=None))]
fn export(
    py: Python<'_>,
    run: PathBuf,
    format: &str,
    out: PathBuf,
    size: Option<(usize, usize)>,
) -> PyResult<Vec<String>> {
    let format = match format {
        "onnx" => vaekit_export::Format::Onnx,
        "torch" => vaekit_export::Format::Torch,
        f => {
            return Err(PyValueError::new_err(format!(
                "format: {f:?}; give \"onnx\" or \"torch\""
            )));
        }
    };
    let size = size.map(|(h, w)| [h, w]);
    let files =
        compute(py, || vaekit_export::export_run(&run, format, &out, size)).map_err(export_err)?;
    Ok(files.iter().map(|p| p.display().to_string()).collect())
}

/// Trains as `vaekit train ARGS...` does (the arguments after `train`, and the global ones
/// before it), in a thread of its own; Ctrl-C (KeyboardInterrupt) stops it after the current
/// step with a checkpoint, as in the CLI, and is raised once the run is saved. Returns the run
/// folder.
#[pyfunction]
fn train_args(py: Python<'_>, args: Vec<String>) -> PyResult<String> {
    let cli = vaekit_cli::cli::Cli::try_parse_from(args).map_err(|e| {
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        PyTypeError::new_err(first.to_string())
    })?;
    let vaekit_cli::cli::Command::Train(a) = cli.command else {
        return Err(PyValueError::new_err("train: not a training command"));
    };
    if cli.precision == vaekit::ops::Precision::Bf16 {
        vaekit::ops::set_precision(vaekit::ops::Precision::Bf16);
    }
    let device = cli.device;
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("vaekit-train".into())
            .spawn(move || {
                pool().install(|| vaekit_cli::commands::train::run_until(a, device, &stop))
            })
            .map_err(|e| VaekitError::new_err(format!("cannot start the training thread: {e}")))?
    };
    let mut interrupted = None;
    while !worker.is_finished() {
        py.detach(|| std::thread::sleep(Duration::from_millis(50)));
        if let Err(e) = py.check_signals() {
            if interrupted.is_none() {
                stop.store(true, Ordering::SeqCst);
                eprintln!("\nstopping after this step; saving a checkpoint");
                interrupted = Some(e);
            }
        }
    }
    let result = worker
        .join()
        .map_err(|_| VaekitError::new_err("the training thread panicked"))?;
    if let Some(e) = interrupted {
        return Err(e);
    }
    match result {
        Ok(run) => Ok(run.display().to_string()),
        Err(e) => {
            let msg = format!("{e:#}");
            Err(match e.downcast_ref::<vaekit::Error>() {
                Some(inner) => lib_err_with(inner, msg),
                None => VaekitError::new_err(msg),
            })
        }
    }
}

#[pymodule]
fn _vaekit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    keep_freed_memory();
    m.add("__version__", vaekit::VERSION)?;
    m.add("VaekitError", m.py().get_type::<VaekitError>())?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(metrics_json, m)?)?;
    m.add_function(wrap_pyfunction!(export, m)?)?;
    m.add_function(wrap_pyfunction!(train_args, m)?)?;
    Ok(())
}
