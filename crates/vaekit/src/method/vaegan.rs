//! VAE-GAN (Larsen et al. 2016, arXiv 1512.09300; their code andersbll/autoencoding_beyond_pixels):
//! the VAE's encoder and decoder with a discriminator D whose features at one layer, Dis_l,
//! define the reconstruction term. Per step, with x~ = Dec(z), z ~ q(z|x), and x_p = Dec(z_p),
//! z_p ~ N(0, I):
//!
//! - feature = -log N(Dis_l(x) | Dis_l(x~), I) = 0.5 ||Dis_l(x) - Dis_l(x~)||^2 per image (the
//!   constant dropped);
//! - encoder: KL(q(z|x) || N(0, I)) + feature (no GAN gradient reaches it);
//! - decoder: gamma * feature + GAN, GAN = -log D(x~) - log D(x_p) (the non-saturating form);
//! - discriminator: w (-log D(x)) + (1 - w) (-log(1 - D(x~)) - log(1 - D(x_p))) / 2, w the
//!   share of real images (`real_weight`, 0.5 as their code).
//!
//! D always judges x, x~ and x_p together in one batch, as their code does: its batch
//! normalisation then normalises every pass's images by the same statistics.
//!
//! Each network has its own Adam and is updated only from its own loss. One forward pass and one
//! backward pass compute all three networks' gradients, each from its own loss (see
//! [`VaeGanMethod::gradients`] for how the graph routes them). With `ema`, the run's model
//! decodes with a moving average of the decoder's weights. The
//! equilibrium rule of their code, when on, pauses the discriminator while it wins by the margin
//! and the decoder while the discriminator loses by it. By default the rule is off and the
//! discriminator spectrally normalised, whose power-iteration vectors advance after each of its
//! updates (see [`crate::config::VaeGanConfig`]). A step whose losses or gradients are not finite
//! updates nothing.

use std::path::Path;

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use super::{Batch, Method, StepOutcome, adam};
use crate::checkpoint::{MODEL, Parts, load_optimizer, load_weights, network_file, optimizer_file};
use crate::config::{Equilibrium, MethodConfig, TrainConfig, VaeGanConfig};
use crate::error::Result;
use crate::likelihood::reconstruction_nll;
use crate::metrics::Metrics;
use crate::model::{Decoder, Discriminator, DiscriminatorConfig, Judgement, Vae, init_seeded};
use crate::ops;
use crate::rng::{Stream, normals, stream_rng};

/// Name of the discriminator's network and optimiser in a checkpoint.
pub const DISCRIMINATOR: &str = "discriminator";
/// Name of the encoder's optimiser in a checkpoint.
pub const ENCODER: &str = "encoder";
/// Name of the decoder's optimiser in a checkpoint.
pub const DECODER: &str = "decoder";

/// Name of the decoder being trained in a checkpoint of a run with an average of its weights
/// (`ema`): the run's model holds the average.
pub const TRAINED_DECODER: &str = "decoder_trained";

/// First parameter id of the discriminator: apart from the VAE's 1, 2, 3, ...
const DISCRIMINATOR_IDS: u64 = 1 << 32;

/// The discriminator `gan` describes for images of `cfg`'s shape.
pub fn discriminator_config(cfg: &TrainConfig, gan: &VaeGanConfig) -> DiscriminatorConfig {
    DiscriminatorConfig {
        image: cfg.model.image,
        channels: gan.channels.clone(),
        kernel: gan.kernel,
        hidden: gan.hidden,
        feature_layer: gan.feature_layer(),
        norm: gan.norm,
    }
}

/// The VAE-GAN's three networks (the VAE holds encoder and decoder) and three optimisers.
pub struct VaeGanMethod {
    /// Both always `Some` between steps.
    vae: Option<Vae>,
    disc: Option<Discriminator>,
    opt_encoder: ModuleOptimizer,
    opt_decoder: ModuleOptimizer,
    opt_disc: ModuleOptimizer,
    cfg: TrainConfig,
    gan: VaeGanConfig,
    device: Device,
    /// The moving average of the decoder's weights (`gan.ema`), without gradients.
    ema: Option<Decoder>,
}

/// `average * decay + current * (1 - decay)`, parameter by parameter (the two share parameter
/// ids: the average starts as a copy of the decoder). The result has no gradient.
pub fn moving_average(average: Decoder, current: &Decoder, decay: f64) -> Decoder {
    struct Collect(HashMap<ParamId, Tensor<1>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val().detach();
            let n = t.shape().num_elements();
            self.0.insert(param.id, t.reshape([n]));
        }
    }
    struct Blend {
        current: HashMap<ParamId, Tensor<1>>,
        decay: f64,
    }
    impl ModuleMapper for Blend {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(now) = self.current.remove(&param.id) else {
                return param;
            };
            let decay = self.decay;
            param.map(|avg| {
                let dims = avg.dims();
                (avg.detach().mul_scalar(decay) + now.reshape(dims).mul_scalar(1.0 - decay))
                    .set_require_grad(false)
            })
        }
    }
    let mut c = Collect(HashMap::new());
    current.visit(&mut c);
    average.map(&mut Blend {
        current: c.0,
        decay,
    })
}

/// Which networks a step updated (the equilibrium rule may pause two of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Updates {
    /// The decoder took its step.
    pub decoder: bool,
    /// The discriminator took its step.
    pub discriminator: bool,
}

/// The equilibrium rule: from the discriminator's mean cross-entropy on real images and on
/// generated ones (nats per image, before this step's updates).
pub fn equilibrium(rule: Option<Equilibrium>, real_cost: f64, fake_cost: f64) -> Updates {
    let Some(Equilibrium {
        equilibrium: e,
        margin: m,
    }) = rule
    else {
        return Updates {
            decoder: true,
            discriminator: true,
        };
    };
    let discriminator = !(real_cost < e - m || fake_cost < e - m);
    let decoder = !(real_cost > e + m || fake_cost > e + m);
    if !discriminator && !decoder {
        Updates {
            decoder: true,
            discriminator: true,
        }
    } else {
        Updates {
            decoder,
            discriminator,
        }
    }
}

/// Mean cross-entropy of logits against one target (1: real, 0: generated).
///
/// # Shapes
/// `logits`: `[n]` -> `[1]`
fn bce(logits: Tensor<1>, target: f32) -> Tensor<1> {
    let n = logits.dims()[0];
    let t = Tensor::<2>::full([n, 1], target, &logits.device());
    ops::bce_with_logits(logits.reshape([n, 1]), t).mean()
}

/// 0.5 ||a - b||^2 per image, averaged over the batch: the negative Gaussian log-likelihood
/// (unit variance, constant dropped) of features `a` under means `b`.
///
/// # Shapes
/// `a`, `b`: `[n, features]` -> `[1]`
fn feature_nll(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let d = a - b;
    (d.clone() * d).sum_dim(1).mean().mul_scalar(0.5)
}

/// The discriminator's judgement of one batch of real images, their reconstructions and the
/// prior's samples, in that order and always together, as Larsen et al.'s code judges them: its
/// batch normalisation then sees the same batch in each of the step's passes, so that the decoder
/// is trained against the discriminator the discriminator's own step trains (a batch of generated
/// images alone would be normalised by their own statistics).
///
/// # Shapes
/// `x`, `x_rec`, `x_p`: `[batch, c, h, w]` -> logits `[3 batch]`, features `[3 batch, f]`
fn judge(disc: &Discriminator, x: Tensor<4>, x_rec: Tensor<4>, x_p: Tensor<4>) -> Judgement {
    disc.forward(Tensor::cat(vec![x, x_rec, x_p], 0))
}

/// Sum of squares of the gradients of `module`'s parameters (0 for none): finite or not.
pub fn grad_norm_sq<M: Module>(grads: &GradientsParams, module: &M) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl ModuleVisitor for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.sum += (g.clone() * g).sum().into_scalar::<f32>() as f64;
            }
        }
    }
    let mut v = Norm { grads, sum: 0.0 };
    module.visit(&mut v);
    v.sum
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// What one step computed before updating anything.
pub struct StepGrads {
    /// The encoder's gradients (from KL + feature).
    pub encoder: GradientsParams,
    /// The decoder's gradients (from gamma * feature + GAN).
    pub decoder: GradientsParams,
    /// The discriminator's gradients (from its cross-entropy).
    pub discriminator: GradientsParams,
    /// Which updates the equilibrium rule allows.
    pub updates: Updates,
    /// Named values: kl, feature, gan (decoder), disc (discriminator), d_real, d_fake.
    pub metrics: Metrics,
}

impl VaeGanMethod {
    /// The networks of `cfg` (whose method must be VAE-GAN), initialised from its seed, on the
    /// autodiff device `device`.
    pub fn new(cfg: &TrainConfig, device: &Device) -> VaeGanMethod {
        let gan = match &cfg.method {
            MethodConfig::Vaegan(g) => g.clone(),
            MethodConfig::Vae => VaeGanConfig::default(),
        };
        let dcfg = discriminator_config(cfg, &gan);
        let vae = Vae::init(&cfg.model, cfg.seed, device);
        VaeGanMethod {
            ema: gan.ema.map(|_| vae.decoder.clone().no_grad()),
            vae: Some(vae),
            disc: Some(init_seeded(
                cfg.seed.wrapping_add(1),
                DISCRIMINATOR_IDS,
                device,
                || dcfg.init(device),
            )),
            opt_encoder: adam(&cfg.optim),
            opt_decoder: adam(&cfg.optim),
            opt_disc: adam(&cfg.optim),
            cfg: cfg.clone(),
            gan,
            device: device.clone(),
        }
    }

    /// The VAE (encoder, decoder, prior, likelihood) as it is now, with autodiff.
    pub fn vae(&self) -> &Vae {
        self.vae.as_ref().expect("put back after every step")
    }

    /// The discriminator as it is now.
    pub fn discriminator(&self) -> &Discriminator {
        self.disc.as_ref().expect("put back after every step")
    }

    /// The noise of `batch`'s step: eps for the reparameterised codes and the prior's codes.
    ///
    /// # Shapes
    /// -> `[batch, latent]` each
    fn noise(&self, batch: &Batch) -> (Tensor<2>, Tensor<2>) {
        let (b, latent) = (batch.len(), self.vae().latent_dim());
        let noise = |stream| {
            let v = normals(
                &mut stream_rng(self.cfg.seed, stream, batch.step as u64),
                b * latent,
            );
            Tensor::<2>::from_data(TensorData::new(v, [b, latent]), &self.device)
        };
        (noise(Stream::TrainNoise), noise(Stream::TrainPrior))
    }

    /// The three losses of `batch` and each network's gradients from its own loss, in one
    /// forward pass of each network's images and one backward pass.
    ///
    /// The routing that keeps each network on its own loss is in the graph: the decoder runs on
    /// `[z, z_p]` with `z` detached (its loss does not reach the encoder); the encoder's terms
    /// reach it through the decoder with the decoder's weights as constants (a second, weightless
    /// path: only input gradients); the discriminator's loss judges the images as constants; the
    /// generator's terms judge them with the discriminator's weights as constants. Every
    /// gradient the backward pass computes is one a network takes: none for the images, none for
    /// constant weights. The three losses are summed into one backward pass; each network's
    /// gradient is its own loss's, as with three graphs (equal to float rounding: the test
    /// `the_fused_step_equals_three_graphs`).
    ///
    /// A spectrally normalised discriminator judges each image on its own, so the generator's
    /// terms judge `[x~, x_p, x~]` (the second x~ on the encoder's path) in one batch; with batch
    /// normalisation each judgement is of `[x, x~, x_p]`, as in the discriminator's own pass, so
    /// that every pass normalises by the same statistics.
    pub fn gradients(&self, batch: &Batch) -> StepGrads {
        let (vae, disc, dev) = (self.vae(), self.discriminator(), &self.device);
        let b = batch.len();
        let (eps, z_p) = self.noise(batch);
        let y = vae.condition(&batch.labels, dev);
        let x = batch.x.clone();
        let likelihood = self.cfg.model.likelihood;
        let lambda = self.gan.pixel_weight;

        // The encoder: q(z|x) and z = mean + std * eps.
        let q = vae.encode(x.clone(), y.clone());
        let z = q.rsample(eps);
        let kl = q.kl_terms_per_item().sum_dim(1).mean();

        // The decoder, once over [z, z_p]: x~ and the prior's samples x_p.
        let y2 = y.clone().map(|y| Tensor::cat(vec![y.clone(), y], 0));
        let params = vae.decode(Tensor::cat(vec![z.clone().detach(), z_p], 0), y2);
        let x_gen = vae.likelihood.mean_image(params.clone()); // [2b, c, h, w]
        let x_rec = x_gen.clone().narrow(0, 0, b);
        let x_p = x_gen.narrow(0, b, b);

        // The encoder's path through the decoder, whose weights are constants here.
        let mut frozen = vae.clone();
        frozen.decoder = frozen.decoder.no_grad();
        let params_e = frozen.decode(z, y);
        // The pixel likelihood's NLL of the reconstruction (reported; trained on with weight
        // `pixel_weight` beside the feature term).
        let pixel = reconstruction_nll(params_e.clone(), x.clone(), likelihood).mean();
        let x_rec_e = vae.likelihood.mean_image(params_e);

        // The discriminator's loss: real against both kinds of generated images, as constants.
        let j = judge(
            disc,
            x.clone(),
            x_rec.clone().detach(),
            x_p.clone().detach(),
        );
        let f_real = j.features.narrow(0, 0, b).detach();
        let real = bce(j.logits.clone().narrow(0, 0, b), 1.0);
        let fake = bce(j.logits.narrow(0, b, 2 * b), 0.0);
        let w = self.gan.real_weight;
        let dis_loss = real.clone().mul_scalar(w) + fake.clone().mul_scalar(1.0 - w);

        // The generator's terms, judged by the discriminator's weights as constants: the
        // decoder's GAN logits of [x~, x_p] and features of x~, and the encoder's features of x~.
        let judge_g = disc.clone().no_grad();
        let (gan_logits, f_dec, f_enc) = if disc.judges_each_image_alone() {
            let j = judge_g.forward(Tensor::cat(vec![x_rec, x_p, x_rec_e], 0));
            let f = j.features;
            (
                j.logits.narrow(0, 0, 2 * b),
                f.clone().narrow(0, 0, b),
                f.narrow(0, 2 * b, b),
            )
        } else {
            let jd = judge(&judge_g, x.clone(), x_rec, x_p.clone());
            let je = judge(&judge_g, x.clone(), x_rec_e, x_p.detach());
            (
                jd.logits.narrow(0, b, 2 * b),
                jd.features.narrow(0, b, b),
                je.features.narrow(0, b, b),
            )
        };
        let gan = bce(gan_logits, 1.0);
        let feature = feature_nll(f_real.clone(), f_enc);
        // The ELBO's KL weight, as for a VAE (beta, warm-up).
        let beta = self.cfg.beta_at(batch.step + 1, batch.steps_per_epoch);
        let mut enc_loss = kl.clone().mul_scalar(beta) + feature.clone();
        let mut dec_loss = feature_nll(f_real, f_dec).mul_scalar(self.gan.gamma) + gan.clone();
        if lambda > 0.0 {
            enc_loss = enc_loss + pixel.clone().mul_scalar(lambda);
            let pixel_d = reconstruction_nll(params.narrow(0, 0, b), x, likelihood).mean();
            dec_loss = dec_loss + pixel_d.mul_scalar(lambda);
        }

        let mut grads = (enc_loss.clone() + dec_loss + dis_loss.clone()).backward();
        let encoder = GradientsParams::from_module(&mut grads, &vae.encoder);
        let decoder = GradientsParams::from_module(&mut grads, &vae.decoder);
        let discriminator = GradientsParams::from_module(&mut grads, disc);

        let (real, fake) = (scalar(real), scalar(fake));
        let metrics = Metrics::new()
            .with("loss", scalar(enc_loss))
            .with("kl", scalar(kl))
            .with("feature", scalar(feature))
            .with("pixel", scalar(pixel))
            .with("gan", scalar(gan))
            .with("disc", scalar(dis_loss))
            .with("d_real", real)
            .with("d_fake", fake);
        StepGrads {
            encoder,
            decoder,
            discriminator,
            updates: equilibrium(self.gan.equilibrium, real, fake),
            metrics,
        }
    }
}

impl Method for VaeGanMethod {
    /// [`VaeGanMethod::gradients`], then each network's Adam step (those the equilibrium rule
    /// allows); nothing is updated when a loss or a gradient is not finite. Step values: loss
    /// (the encoder's, KL + feature), kl, feature, gan, disc, d_real and d_fake (the
    /// discriminator's cross-entropy on real and on generated images), and dec_update /
    /// disc_update (1 when that network took its step).
    fn step(&mut self, batch: &Batch) -> StepOutcome {
        let g = self.gradients(batch);
        let mut metrics = g.metrics;
        let (vae, disc) = (self.vae(), self.discriminator());
        let finite = metrics.first_non_finite().is_none()
            && grad_norm_sq(&g.encoder, &vae.encoder).is_finite()
            && grad_norm_sq(&g.decoder, &vae.decoder).is_finite()
            && grad_norm_sq(&g.discriminator, disc).is_finite();
        if !finite {
            if metrics.first_non_finite().is_none() {
                metrics.push("gradient", f64::NAN);
            }
            return StepOutcome {
                metrics,
                skipped: true,
            };
        }
        let lr = self.cfg.optim.lr;
        let mut vae = self.vae.take().expect("put back after every step");
        vae = self.opt_encoder.step(lr, vae, g.encoder);
        if g.updates.decoder {
            vae = self.opt_decoder.step(lr, vae, g.decoder);
            if let (Some(avg), Some(decay)) = (self.ema.take(), self.gan.ema) {
                self.ema = Some(moving_average(avg, &vae.decoder, decay));
            }
        }
        self.vae = Some(vae);
        if g.updates.discriminator {
            let disc = self.disc.take().expect("put back after every step");
            let disc = self.opt_disc.step(lr, disc, g.discriminator);
            self.disc = Some(disc.advance_power_iteration());
        }
        metrics.push("dec_update", f64::from(u8::from(g.updates.decoder)));
        metrics.push("disc_update", f64::from(u8::from(g.updates.discriminator)));
        StepOutcome {
            metrics,
            skipped: false,
        }
    }

    /// The VAE, decoding with the average of the decoder's weights where the run keeps one.
    fn model(&self) -> Vae {
        let mut vae = self.vae().valid();
        if let Some(avg) = &self.ema {
            vae.decoder = avg.valid();
        }
        vae
    }

    fn labels(&self) -> Vec<(String, String)> {
        vec![("objective".into(), "vaegan".into())]
    }

    fn max_skipped_steps(&self) -> usize {
        self.gan.max_skipped_steps
    }

    /// The model (with the averaged decoder, if any), the discriminator, the decoder being
    /// trained where the model holds an average, and the three optimisers.
    fn parts(&self) -> Result<Parts> {
        let mut parts = Parts::default()
            .network(MODEL, &self.model())
            .network(DISCRIMINATOR, &self.discriminator().valid());
        if self.ema.is_some() {
            parts = parts.network(TRAINED_DECODER, &self.vae().decoder.valid());
        }
        parts
            .optimizer(ENCODER, &self.opt_encoder)?
            .optimizer(DECODER, &self.opt_decoder)?
            .optimizer(DISCRIMINATOR, &self.opt_disc)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let mut vae = load_weights(self.vae().clone(), &dir.join(network_file(MODEL)))?;
        let ema = match self.ema {
            Some(_) => {
                let avg = vae.decoder.clone().no_grad();
                let trained = dir.join(network_file(TRAINED_DECODER));
                vae.decoder = load_weights(vae.decoder, &trained)?;
                Some(avg)
            }
            None => None,
        };
        let disc = load_weights(
            self.discriminator().clone(),
            &dir.join(network_file(DISCRIMINATOR)),
        )?;
        let path = |name: &str| dir.join(optimizer_file(name));
        let a = || adam(&self.cfg.optim);
        let (e, d, s) = (
            load_optimizer(a(), &path(ENCODER), &vae.encoder)?,
            load_optimizer(a(), &path(DECODER), &vae.decoder)?,
            load_optimizer(a(), &path(DISCRIMINATOR), &disc)?,
        );
        self.vae = Some(vae);
        self.disc = Some(disc);
        self.ema = ema;
        (self.opt_encoder, self.opt_decoder, self.opt_disc) = (e, d, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{ModuleMapper, Param};

    use super::*;
    use crate::checkpoint::weights_to_bytes;
    use crate::config::DiscNorm;
    use crate::data::synthetic::bars_splits;

    fn setup(equilibrium: Option<Equilibrium>) -> (VaeGanMethod, Batch) {
        setup_with(equilibrium, DiscNorm::Batch)
    }

    fn setup_with(equilibrium: Option<Equilibrium>, norm: DiscNorm) -> (VaeGanMethod, Batch) {
        let dev = Device::flex().autodiff();
        let cfg = TrainConfig {
            method: MethodConfig::Vaegan(VaeGanConfig {
                channels: vec![4, 8],
                hidden: 16,
                equilibrium,
                norm,
                ..VaeGanConfig::default()
            }),
            batch_size: 8,
            ..TrainConfig::default()
        };
        let data = bars_splits(8, 1, 0);
        let idx: Vec<usize> = (0..8).collect();
        let batch = Batch::new(&cfg, &data.train, &idx, 0, 1, &dev);
        (VaeGanMethod::new(&cfg, &dev), batch)
    }

    /// The step before the fused one: three graphs, one per network's loss, each with the
    /// others' outputs detached, each backward pass computing every gradient of its graph. The
    /// reference the fused step must equal.
    fn three_graphs(m: &VaeGanMethod, batch: &Batch) -> StepGrads {
        let (vae, disc, dev) = (m.vae(), m.discriminator(), &m.device);
        let b = batch.len();
        let (eps, z_p) = m.noise(batch);
        let y = vae.condition(&batch.labels, dev);
        let x = batch.x.clone();
        // The prior's samples, in the decoder's graph (a constant in the other two).
        let x_p = vae.decode_mean(z_p, y.clone());

        // The encoder: KL + feature, through x~ = Dec(z); only its own gradients are kept.
        let q = vae.encode(x.clone(), y.clone());
        let z = q.rsample(eps);
        let kl = q.kl_terms_per_item().sum_dim(1).mean();
        let likelihood = m.cfg.model.likelihood;
        let (lambda, params) = (m.gan.pixel_weight, vae.decode(z.clone(), y.clone()));
        // The pixel likelihood's NLL of the reconstruction (reported; trained on with weight
        // `pixel_weight` beside the feature term).
        let pixel = reconstruction_nll(params.clone(), x.clone(), likelihood).mean();
        let x_rec = vae.likelihood.mean_image(params);
        let f = judge(disc, x.clone(), x_rec, x_p.clone().detach()).features;
        let f_real = f.clone().narrow(0, 0, b).detach();
        let feature = feature_nll(f_real.clone(), f.narrow(0, b, b));
        // The ELBO's KL weight, as for a VAE (beta, warm-up).
        let beta = m.cfg.beta_at(batch.step + 1, batch.steps_per_epoch);
        let mut enc_loss = kl.clone().mul_scalar(beta) + feature.clone();
        if lambda > 0.0 {
            enc_loss = enc_loss + pixel.clone().mul_scalar(lambda);
        }
        let encoder = GradientsParams::from_grads(enc_loss.backward(), &vae.encoder);

        // The decoder: gamma * feature + GAN at the same z, detached from the encoder.
        let params = vae.decode(z.detach(), y);
        let x_rec = vae.likelihood.mean_image(params.clone());
        let j = judge(disc, x.clone(), x_rec.clone(), x_p.clone());
        let feature_d = feature_nll(f_real, j.features.narrow(0, b, b));
        let gan = bce(j.logits.narrow(0, b, 2 * b), 1.0);
        let mut dec_loss = feature_d.mul_scalar(m.gan.gamma) + gan.clone();
        if lambda > 0.0 {
            dec_loss = dec_loss
                + reconstruction_nll(params, x.clone(), likelihood)
                    .mean()
                    .mul_scalar(lambda);
        }
        let decoder = GradientsParams::from_grads(dec_loss.backward(), &vae.decoder);

        // The discriminator: real against both kinds of generated images, detached.
        let j = judge(disc, x, x_rec.detach(), x_p.detach());
        let real = bce(j.logits.clone().narrow(0, 0, b), 1.0);
        let fake = bce(j.logits.narrow(0, b, 2 * b), 0.0);
        let w = m.gan.real_weight;
        let dis_loss = real.clone().mul_scalar(w) + fake.clone().mul_scalar(1.0 - w);
        let discriminator = GradientsParams::from_grads(dis_loss.backward(), disc);

        let (real, fake) = (scalar(real), scalar(fake));
        let metrics = Metrics::new()
            .with("loss", scalar(enc_loss))
            .with("kl", scalar(kl))
            .with("feature", scalar(feature))
            .with("pixel", scalar(pixel))
            .with("gan", scalar(gan))
            .with("disc", scalar(dis_loss))
            .with("d_real", real)
            .with("d_fake", fake);
        StepGrads {
            encoder,
            decoder,
            discriminator,
            updates: equilibrium(m.gan.equilibrium, real, fake),
            metrics,
        }
    }

    /// Every gradient of `module`'s parameters in `grads`, flattened, in visiting order (a
    /// parameter without a gradient gives an empty vector).
    fn grads_of<M: Module>(grads: &GradientsParams, module: &M) -> Vec<Vec<f32>> {
        struct Collect<'a> {
            grads: &'a GradientsParams,
            out: Vec<Vec<f32>>,
        }
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let g = self.grads.get::<D>(param.id);
                self.out
                    .push(g.map_or_else(Vec::new, |g| g.into_data().try_to_vec::<f32>().unwrap()));
            }
        }
        let mut v = Collect {
            grads,
            out: Vec::new(),
        };
        module.visit(&mut v);
        v.out
    }

    /// Each gradient tensor of `a` within `tol` of `b`'s, relative to `b`'s norm.
    fn assert_close(what: &str, a: &[Vec<f32>], b: &[Vec<f32>], tol: f64) {
        assert_eq!(a.len(), b.len(), "{what}: parameter count");
        let mut with_grad = 0;
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            assert_eq!(
                a.len(),
                b.len(),
                "{what}: parameter {i} has a gradient in one only"
            );
            let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
            let diff = norm(&mut a.iter().zip(b).map(|(x, y)| f64::from(x - y)));
            let size = norm(&mut b.iter().map(|&y| f64::from(y)));
            assert!(
                diff <= tol * size.max(1e-12),
                "{what}: parameter {i}: |fused - three graphs| {diff:e} against |three graphs| {size:e}"
            );
            with_grad += usize::from(!b.is_empty());
        }
        assert!(with_grad > 0, "{what}: no gradient at all");
    }

    #[test]
    fn the_fused_step_equals_three_graphs() {
        for norm in [DiscNorm::Spectral, DiscNorm::Batch] {
            for (pixel_weight, beta, classes) in [(0.0, 1.0, 0), (0.5, 4.0, 0), (0.0, 1.0, 10)] {
                let (mut m, batch) = setup_with(None, norm);
                if classes > 0 {
                    // A conditional VAE: the decoder's input carries the labels twice.
                    let mut cfg = m.cfg.clone();
                    cfg.model.classes = classes;
                    m = VaeGanMethod::new(&cfg, &m.device.clone());
                }
                m.gan.pixel_weight = pixel_weight;
                m.cfg.beta = beta;
                // A few steps first, so that the networks are not at their initialisation.
                for _ in 0..2 {
                    assert!(!m.step(&batch).skipped);
                }
                let (fused, graphs) = (m.gradients(&batch), three_graphs(&m, &batch));
                let what =
                    format!("{norm:?}, pixel {pixel_weight}, beta {beta}, classes {classes}");
                for (name, want) in graphs.metrics.iter() {
                    let got = fused.metrics.get(name).unwrap();
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{what}: {name}: fused {got}, three graphs {want}"
                    );
                }
                let (vae, disc) = (m.vae(), m.discriminator());
                assert_close(
                    &format!("{what}: encoder"),
                    &grads_of(&fused.encoder, &vae.encoder),
                    &grads_of(&graphs.encoder, &vae.encoder),
                    1e-4,
                );
                assert_close(
                    &format!("{what}: decoder"),
                    &grads_of(&fused.decoder, &vae.decoder),
                    &grads_of(&graphs.decoder, &vae.decoder),
                    1e-4,
                );
                assert_close(
                    &format!("{what}: discriminator"),
                    &grads_of(&fused.discriminator, disc),
                    &grads_of(&graphs.discriminator, disc),
                    1e-4,
                );
                // Nothing else: the fused step's gradients are the three networks' only.
                let count =
                    |g: &StepGrads| g.encoder.len() + g.decoder.len() + g.discriminator.len();
                assert_eq!(count(&fused), count(&graphs), "{what}: gradient count");
            }
        }
    }

    fn bytes<M: Module>(m: &M) -> Vec<u8> {
        weights_to_bytes(&m.clone().valid())
    }

    #[test]
    fn each_optimiser_step_changes_only_its_own_network() {
        for norm in [DiscNorm::Batch, DiscNorm::Spectral] {
            each_optimiser_step_changes_only_its_own_network_with(norm);
        }
    }

    fn each_optimiser_step_changes_only_its_own_network_with(norm: DiscNorm) {
        let (mut m, batch) = setup_with(None, norm);
        let g = m.gradients(&batch);
        let lr = 1e-2;
        let (enc, dec, disc) = (
            bytes(&m.vae().encoder),
            bytes(&m.vae().decoder),
            bytes(m.discriminator()),
        );
        // The discriminator's step: only the discriminator moves.
        let d = m.disc.take().unwrap();
        m.disc = Some(m.opt_disc.step(lr, d, g.discriminator));
        assert!(bytes(m.discriminator()) != disc);
        assert!(bytes(&m.vae().encoder) == enc);
        assert!(bytes(&m.vae().decoder) == dec);
        // The decoder's step: only the decoder moves.
        let v = m.vae.take().unwrap();
        m.vae = Some(m.opt_decoder.step(lr, v, g.decoder));
        assert!(bytes(&m.vae().decoder) != dec);
        assert!(bytes(&m.vae().encoder) == enc);
        // The encoder's step: only the encoder.
        let dec = bytes(&m.vae().decoder);
        let v = m.vae.take().unwrap();
        m.vae = Some(m.opt_encoder.step(lr, v, g.encoder));
        assert!(bytes(&m.vae().encoder) != enc);
        assert!(bytes(&m.vae().decoder) == dec);
    }

    /// Multiplies the parameters of the discriminator's layers after the features (`dense`,
    /// `out`) by a factor: the GAN's logit changes, the features do not.
    struct ScaleHead {
        path: Vec<String>,
        factor: f32,
    }

    impl ModuleMapper for ScaleHead {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let head = self.path.iter().any(|p| p == "dense" || p == "out");
            let factor = self.factor;
            if head {
                param.map(|t| t.mul_scalar(factor).detach().require_grad())
            } else {
                param
            }
        }
    }

    #[test]
    fn every_graph_judges_real_reconstructed_and_prior_images_in_one_batch() {
        // The step's reported terms come from several passes of the discriminator; recomputed
        // here from one judgement of [x, x~, x_p], they agree only if each pass normalised that
        // same batch (the decoder's graph once judged [x~, x_p] alone, and its GAN term differed).
        let (m, batch) = setup(None);
        let g = m.gradients(&batch);
        let (vae, disc) = (m.vae(), m.discriminator());
        let (eps, z_p) = m.noise(&batch);
        let x = batch.x.clone();
        let q = vae.encode(x.clone(), None);
        let x_rec = vae.decode_mean(q.rsample(eps), None);
        let x_p = vae.decode_mean(z_p, None);
        let b = batch.len();
        let j = judge(disc, x, x_rec, x_p);
        let f = j.features;
        let expect = [
            ("gan", bce(j.logits.clone().narrow(0, b, 2 * b), 1.0)),
            ("d_real", bce(j.logits.clone().narrow(0, 0, b), 1.0)),
            ("d_fake", bce(j.logits.narrow(0, b, 2 * b), 0.0)),
            (
                "feature",
                feature_nll(f.clone().narrow(0, 0, b), f.narrow(0, b, b)),
            ),
        ];
        for (name, want) in expect {
            let (got, want) = (g.metrics.get(name).unwrap(), scalar(want));
            assert!(
                (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{name}: step {got}, one judgement {want}"
            );
        }
    }

    #[test]
    fn a_pixel_weight_adds_the_pixel_term_to_the_encoder_and_decoder_only() {
        let (mut m, batch) = setup(None);
        let a = m.gradients(&batch);
        m.gan.pixel_weight = 2.0;
        let b = m.gradients(&batch);
        // Same networks, same batch: the reported terms agree, the pixel NLL is positive.
        assert_eq!(a.metrics.get("pixel"), b.metrics.get("pixel"));
        assert!(a.metrics.get("pixel").unwrap() > 0.0);
        assert_eq!(a.metrics.get("feature"), b.metrics.get("feature"));
        let norms = |g: &StepGrads, m: &VaeGanMethod| {
            (
                grad_norm_sq(&g.encoder, &m.vae().encoder),
                grad_norm_sq(&g.decoder, &m.vae().decoder),
                grad_norm_sq(&g.discriminator, m.discriminator()),
            )
        };
        let (na, nb) = (norms(&a, &m), norms(&b, &m));
        assert_ne!(na.0, nb.0, "the encoder gets the pixel gradient");
        assert_ne!(na.1, nb.1, "the decoder gets the pixel gradient");
        assert_eq!(na.2, nb.2, "the discriminator does not");
    }

    #[test]
    fn real_weight_splits_the_discriminators_loss_between_real_and_generated_images() {
        let (mut m, batch) = setup(None);
        let norms = |g: &StepGrads, m: &VaeGanMethod| {
            (
                grad_norm_sq(&g.decoder, &m.vae().decoder),
                grad_norm_sq(&g.discriminator, m.discriminator()),
            )
        };
        let base = m.gradients(&batch);
        let base_norms = norms(&base, &m);
        for w in [0.5, 0.2, 1.0 / 3.0] {
            m.gan.real_weight = w;
            let g = m.gradients(&batch);
            let get = |k: &str| g.metrics.get(k).unwrap();
            let want = w * get("d_real") + (1.0 - w) * get("d_fake");
            assert!(
                (get("disc") - want).abs() < 1e-5,
                "w {w}: {} vs {want}",
                get("disc")
            );
            // Only the discriminator's gradient depends on it.
            let n = norms(&g, &m);
            assert_eq!(n.0, base_norms.0);
            assert_eq!(
                n.1 == base_norms.1,
                w == 0.5,
                "w {w}: {n:?} vs {base_norms:?}"
            );
        }
    }

    #[test]
    fn beta_weights_the_encoders_kl_and_nothing_else() {
        let (mut m, batch) = setup(None);
        let a = m.gradients(&batch);
        m.cfg.beta = 4.0;
        let b = m.gradients(&batch);
        assert_ne!(
            grad_norm_sq(&a.encoder, &m.vae().encoder),
            grad_norm_sq(&b.encoder, &m.vae().encoder)
        );
        assert_eq!(
            grad_norm_sq(&a.decoder, &m.vae().decoder),
            grad_norm_sq(&b.decoder, &m.vae().decoder)
        );
        assert_eq!(a.metrics.get("kl"), b.metrics.get("kl"));
    }

    #[test]
    fn the_encoder_receives_no_gan_gradient() {
        let (mut m, batch) = setup(None);
        let a = m.gradients(&batch);
        let d = m.disc.take().unwrap();
        m.disc = Some(d.map(&mut ScaleHead {
            path: vec![],
            factor: 3.0,
        }));
        let b = m.gradients(&batch);
        let (enc_a, enc_b) = (
            grad_norm_sq(&a.encoder, &m.vae().encoder),
            grad_norm_sq(&b.encoder, &m.vae().encoder),
        );
        assert!(enc_a > 0.0);
        assert_eq!(
            enc_a, enc_b,
            "the encoder's gradient moved with the GAN head"
        );
        assert_eq!(a.metrics.get("feature"), b.metrics.get("feature"));
        assert_ne!(a.metrics.get("gan"), b.metrics.get("gan"));
        let (dec_a, dec_b) = (
            grad_norm_sq(&a.decoder, &m.vae().decoder),
            grad_norm_sq(&b.decoder, &m.vae().decoder),
        );
        assert_ne!(dec_a, dec_b, "the decoder gets the GAN gradient");
    }

    #[test]
    fn a_non_finite_step_is_skipped_and_changes_nothing() {
        for norm in [DiscNorm::Batch, DiscNorm::Spectral] {
            a_non_finite_step_is_skipped_and_changes_nothing_with(norm);
        }
    }

    fn a_non_finite_step_is_skipped_and_changes_nothing_with(norm: DiscNorm) {
        let (mut m, mut batch) = setup_with(None, norm);
        let before = m.parts().unwrap();
        batch.x = batch.x.clone().mul_scalar(f32::NAN);
        let out = m.step(&batch);
        assert!(out.skipped);
        assert!(out.metrics.first_non_finite().is_some());
        let after = m.parts().unwrap();
        assert!(
            before.networks == after.networks,
            "a skipped step changed a network"
        );
        assert!(
            before.optimizers == after.optimizers,
            "a skipped step changed an optimiser"
        );
    }

    #[test]
    fn every_part_saves_and_loads_and_training_continues_identically() {
        for norm in [DiscNorm::Batch, DiscNorm::Spectral] {
            every_part_saves_and_loads_and_training_continues_identically_with(norm);
        }
    }

    fn every_part_saves_and_loads_and_training_continues_identically_with(norm: DiscNorm) {
        // No equilibrium rule: every network steps, so every optimiser has state to restore.
        let (mut a, batch) = setup_with(None, norm);
        for _ in 0..3 {
            assert!(!a.step(&batch).skipped);
        }
        let dir = tempfile::tempdir().unwrap();
        let parts = a.parts().unwrap();
        let names: Vec<&str> = parts.networks.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(names, [MODEL, DISCRIMINATOR]);
        let names: Vec<&str> = parts.optimizers.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(names, [ENCODER, DECODER, DISCRIMINATOR]);
        for (n, b) in &parts.networks {
            std::fs::write(dir.path().join(network_file(n)), b).unwrap();
        }
        for (n, b) in &parts.optimizers {
            std::fs::write(dir.path().join(optimizer_file(n)), b).unwrap();
        }
        let (mut b, _) = setup_with(None, norm);
        b.load(dir.path()).unwrap();
        let reloaded = b.parts().unwrap();
        assert!(
            reloaded.networks == parts.networks,
            "networks differ after loading"
        );
        // (The optimiser files need not be byte-equal, as burn writes its state maps in hash
        // order; the identical steps below show that their moments were restored.)
        // Outputs of all three networks agree, and the next steps too.
        let x = batch.x.clone();
        let ja = a.discriminator().forward(x.clone()).logits.into_data();
        let jb = b.discriminator().forward(x.clone()).logits.into_data();
        assert_eq!(ja, jb);
        let qa = a.vae().encode(x.clone(), None).mean.into_data();
        assert_eq!(qa, b.vae().encode(x, None).mean.into_data());
        for _ in 0..2 {
            a.step(&batch);
            b.step(&batch);
        }
        let (pa, pb) = (a.parts().unwrap(), b.parts().unwrap());
        assert!(
            pa.networks == pb.networks,
            "networks differ after two more steps"
        );
        // With fresh optimisers instead, the same steps go elsewhere.
        let (mut c, _) = setup_with(None, norm);
        let vae_only = tempfile::tempdir().unwrap();
        for (n, b) in &parts.networks {
            std::fs::write(vae_only.path().join(network_file(n)), b).unwrap();
        }
        let fresh = |name: &str| {
            adam(&c.cfg.optim)
                .into_bytes()
                .map(|b| (name.to_string(), b.to_vec()))
        };
        for name in [ENCODER, DECODER, DISCRIMINATOR] {
            let (n, b) = fresh(name).unwrap();
            std::fs::write(vae_only.path().join(optimizer_file(&n)), b).unwrap();
        }
        c.load(vae_only.path()).unwrap();
        for _ in 0..2 {
            c.step(&batch);
        }
        assert!(
            c.parts().unwrap().networks != pa.networks,
            "the optimiser state made no difference"
        );
    }

    /// Every parameter of `module`, flattened, in visiting order.
    fn params_of<M: Module>(module: &M) -> Vec<Vec<f32>> {
        struct Collect(Vec<Vec<f32>>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0
                    .push(param.val().into_data().try_to_vec::<f32>().unwrap());
            }
        }
        let mut c = Collect(Vec::new());
        module.visit(&mut c);
        c.0
    }

    /// A VAE-GAN (spectral discriminator) whose model decodes with the average of decay 0.9.
    fn with_average() -> (VaeGanMethod, Batch) {
        let (m, batch) = setup_with(None, DiscNorm::Spectral);
        let mut cfg = m.cfg.clone();
        if let MethodConfig::Vaegan(g) = &mut cfg.method {
            g.ema = Some(0.9);
        }
        (VaeGanMethod::new(&cfg, &m.device), batch)
    }

    #[test]
    fn the_average_decoder_follows_its_definition_and_resumes_exactly() {
        let (mut m, batch) = with_average();
        let start = params_of(&m.vae().decoder);
        assert_eq!(params_of(&m.model().decoder), start);
        assert!(!m.step(&batch).skipped);
        let trained = params_of(&m.vae().decoder);
        let avg = params_of(&m.model().decoder);
        assert_ne!(trained, start, "the decoder took its step");
        for ((a, s), t) in avg.iter().zip(&start).zip(&trained) {
            for ((a, s), t) in a.iter().zip(s).zip(t) {
                let want = 0.9 * s + 0.1 * t;
                assert!(
                    (a - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{a} vs {want}"
                );
            }
        }
        // The encoder and the decoder being trained are the run's own: only the decoding model
        // holds the average.
        assert_eq!(params_of(&m.model().encoder), params_of(&m.vae().encoder));
        m.step(&batch);
        let dir = tempfile::tempdir().unwrap();
        let parts = m.parts().unwrap();
        let names: Vec<&str> = parts.networks.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(names, [MODEL, DISCRIMINATOR, TRAINED_DECODER]);
        for (n, b) in &parts.networks {
            std::fs::write(dir.path().join(network_file(n)), b).unwrap();
        }
        for (n, b) in &parts.optimizers {
            std::fs::write(dir.path().join(optimizer_file(n)), b).unwrap();
        }
        let (mut r, _) = with_average();
        r.load(dir.path()).unwrap();
        assert!(r.parts().unwrap().networks == parts.networks);
        assert_eq!(params_of(&r.vae().decoder), params_of(&m.vae().decoder));
        for _ in 0..2 {
            m.step(&batch);
            r.step(&batch);
        }
        assert!(
            r.parts().unwrap().networks == m.parts().unwrap().networks,
            "the resumed run went elsewhere"
        );
    }

    #[test]
    fn the_equilibrium_rule_pauses_the_side_that_is_too_far_ahead() {
        let rule = Some(Equilibrium::default()); // 0.68 +- 0.35
        let both = Updates {
            decoder: true,
            discriminator: true,
        };
        assert_eq!(equilibrium(rule, 0.7, 0.6), both);
        // The discriminator wins (low cross-entropy): it pauses.
        assert_eq!(
            equilibrium(rule, 0.2, 0.6),
            Updates {
                decoder: true,
                discriminator: false
            }
        );
        // It loses badly: the decoder pauses.
        assert_eq!(
            equilibrium(rule, 1.2, 0.6),
            Updates {
                decoder: false,
                discriminator: true
            }
        );
        // Both conditions at once: neither pauses, as in their code.
        assert_eq!(equilibrium(rule, 0.1, 1.5), both);
        assert_eq!(equilibrium(None, 0.0, 9.0), both);
    }
}
