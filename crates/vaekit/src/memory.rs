//! How much memory a model config needs, estimated from its sizes before anything is
//! allocated, and how much this process may use; a config that cannot fit is refused with one
//! line saying both (instead of an abort in the allocator that leaves a half-made run).
//!
//! The estimate counts f32 values: every weight (encoder, decoder, priors), and per image
//! every layer's output and, for convolutions, the unfolded input (im2col) the products read.
//! Training holds each weight about ten times: the weight, its gradient, Adam's two moments, the
//! evaluation copy and the update's temporaries (measured: an MLP VAE of 80 M weights, z =
//! 65,536, peaked at 3.27 GB resident, 41 bytes a weight); each activation about three times
//! (forward value, its gradient, a temporary). Running a model holds each weight about twice
//! (the file's bytes and the tensor).

use crate::config::{Architecture, DecoderArchitecture, LabelInput, ModelConfig};
use crate::error::{Error, Result};

/// A config's sizes in f32 values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// Parameters of every network of the model.
    pub weights: u64,
    /// Activations of one image through encoder and decoder.
    pub activations_per_image: u64,
}

impl Estimate {
    /// Bytes to train on batches of `images` (batch size x importance samples).
    pub fn training_bytes(&self, images: u64) -> u64 {
        4u64.saturating_mul(
            self.weights.saturating_mul(10).saturating_add(
                self.activations_per_image
                    .saturating_mul(images)
                    .saturating_mul(3),
            ),
        )
    }

    /// Bytes to run the model on batches of `images` without gradients.
    pub fn inference_bytes(&self, images: u64) -> u64 {
        4u64.saturating_mul(
            self.weights.saturating_mul(2).saturating_add(
                self.activations_per_image
                    .saturating_mul(images)
                    .saturating_mul(2),
            ),
        )
    }
}

/// The sizes of `m` (see the module docs). Saturates rather than overflows.
pub fn estimate(m: &ModelConfig) -> Estimate {
    let mut w = 0u64;
    let mut act = 0u64;
    let mul = |a: usize, b: usize| (a as u64).saturating_mul(b as u64);
    let classes = m.classes;
    let every_layer = classes > 0 && m.conditioning().decoder == LabelInput::EveryLayer;
    let numel = m.image.numel();
    let pixels = m.image.height * m.image.width;
    let latent = m.latent_dim;
    // The encoder, and the decoder that mirrors it.
    let (enc_w, enc_act, flat) = match &m.architecture {
        Architecture::Conv {
            channels, kernel, ..
        } => {
            let (mut ew, mut ea) = (0u64, 0u64);
            let (mut c_in, mut h, mut wd) = (m.image.channels, m.image.height, m.image.width);
            for &c in channels {
                (h, wd) = ((h / 2).max(1), (wd / 2).max(1));
                ew = ew.saturating_add(mul(c_in * kernel * kernel, c));
                ea = ea
                    .saturating_add(mul(c, h * wd))
                    .saturating_add(mul(c_in * kernel * kernel, h * wd));
                c_in = c;
            }
            (ew, ea, c_in * h * wd)
        }
        Architecture::Mlp { hidden } => {
            let (mut ew, mut ea, mut w_in) = (0u64, 0u64, numel);
            for &h in hidden {
                ew = ew.saturating_add(mul(w_in, h));
                ea = ea.saturating_add(h as u64);
                w_in = h;
            }
            (ew, ea, w_in)
        }
    };
    // Encoder: layers, then mean and log-variance from the flat features (and the label).
    w = w
        .saturating_add(enc_w)
        .saturating_add(mul(flat + classes, latent).saturating_mul(2));
    act = act
        .saturating_add(enc_act)
        .saturating_add(mul(flat + classes, 1));
    // Decoder.
    match &m.decoder {
        Some(DecoderArchitecture::Cppn { hidden, layers, .. }) => {
            // Per pixel: coordinates and z in, `layers` tanh layers, the image's channels out.
            w = w.saturating_add(
                mul(latent + classes + 3, *hidden)
                    .saturating_add(mul(*hidden, hidden * layers + 2 * m.image.channels)),
            );
            act = act.saturating_add(mul(pixels, hidden * (layers + 1) + 2 * m.image.channels));
        }
        None => {
            w = w
                .saturating_add(enc_w)
                .saturating_add(mul(latent + classes, flat));
            if matches!(m.architecture, Architecture::Mlp { .. }) {
                // The output layer: the image's mean and scale from the last hidden layer
                // (a conv decoder's last layer is its mirrored first convolution).
                w = w.saturating_add(mul(flat, 2 * numel));
            }
            act = act
                .saturating_add(enc_act)
                .saturating_add(mul(numel, 2))
                .saturating_add(flat as u64);
            if every_layer {
                // A learned bias per class on each layer.
                w = w.saturating_add(mul(classes, flat).saturating_mul(2));
            }
        }
    }
    if let Some(top) = &m.top {
        let mut w_in = latent;
        for &h in &top.hidden {
            w = w.saturating_add(mul(w_in, h).saturating_mul(2));
            act = act.saturating_add(2 * h as u64);
            w_in = h;
        }
        w = w.saturating_add(mul(w_in, top.latent_dim).saturating_mul(4));
    }
    if classes > 0 {
        let components = m.conditioning.map_or(1, |c| c.components);
        w = w.saturating_add(mul(classes, components.saturating_mul(latent)).saturating_mul(2));
        act = act.saturating_add(classes as u64);
    }
    Estimate {
        weights: w,
        activations_per_image: act,
    }
}

/// The memory this process may use: the machine's physical memory, lowered by an address-space
/// limit (`ulimit -v`) or a cgroup's `memory.max` where one is set. `None` where none can be
/// read (nothing is refused then).
pub fn available() -> Option<(u64, &'static str)> {
    let mut best: Option<(u64, &'static str)> = None;
    let mut lower = |v: u64, what: &'static str| {
        if best.is_none_or(|(b, _)| v < b) {
            best = Some((v, what));
        }
    };
    if let Some(kb) = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    }) {
        lower(kb.saturating_mul(1024), "this machine's memory");
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } == 0
        && lim.rlim_cur != libc::RLIM_INFINITY
    {
        // Less what the process has mapped already (thread stacks, the allocator's arenas).
        let mapped = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |pages| pages.saturating_mul(4096));
        lower(
            (lim.rlim_cur as u64).saturating_sub(mapped),
            "what the address-space limit (ulimit -v) leaves",
        );
    }
    if let Some(max) = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        lower(max, "the cgroup's memory.max");
    }
    best
}

/// Gibibytes, for messages.
fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Refuses a model that needs more than `limit` (and which limit it is) to train on batches of
/// `images` (`training`) or to run; `what` names the config.
pub fn check_fits(
    m: &ModelConfig,
    images: u64,
    training: bool,
    limit: Option<(u64, &str)>,
) -> Result<()> {
    let Some((limit, which)) = limit else {
        return Ok(());
    };
    let e = estimate(m);
    let need = if training {
        e.training_bytes(images)
    } else {
        e.inference_bytes(images)
    };
    if need > limit {
        let doing = if training { "train" } else { "run" };
        return Err(Error::InvalidConfig(format!(
            "this model would need about {} to {doing} ({:.0} M weights, {:.1} MiB of activations per image, batches of {images}); {which} is {}: use fewer or narrower layers, fewer classes, a smaller batch or fewer importance samples",
            gib(need),
            e.weights as f64 / 1e6,
            (e.activations_per_image * 4) as f64 / (1u64 << 20) as f64,
            gib(limit)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::burn::module::Module;
    use crate::config::ModelConfig;

    #[test]
    fn the_weight_count_is_of_the_order_of_the_models() {
        // Within a factor of two of the parameters burn builds, for every kind of model.
        let dev = crate::burn::tensor::Device::flex();
        let mut mlp = ModelConfig::default();
        mlp.architecture = Architecture::Mlp {
            hidden: vec![400, 200],
        };
        let mut cvae = ModelConfig::default();
        cvae.classes = 10;
        let mut cppn = ModelConfig::default();
        cppn.decoder = Some(DecoderArchitecture::Cppn {
            hidden: 32,
            layers: 3,
            scale: 8.0,
            z_scale: 8.0,
        });
        let mut hvae = mlp.clone();
        hvae.top = Some(crate::config::TopLatentConfig::default());
        for (name, m) in [
            ("conv", ModelConfig::default()),
            ("mlp", mlp),
            ("cvae", cvae),
            ("cppn", cppn),
            ("hvae", hvae),
        ] {
            let e = estimate(&m);
            let real = crate::model::Vae::init(&m, 0, &dev).num_params() as u64;
            assert!(
                e.weights >= real / 2 && e.weights <= real * 2,
                "{name}: estimated {} vs {real}",
                e.weights
            );
        }
    }

    #[test]
    fn a_model_larger_than_the_limit_is_refused_with_its_size() {
        let mut m = ModelConfig::default();
        m.architecture = Architecture::Mlp {
            hidden: vec![16384; 16],
        };
        let err = check_fits(&m, 64, true, Some((4 << 30, "the test limit")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("GiB to train") && err.contains("the test limit is 4.0 GiB"),
            "{err}"
        );
        // 16 x 16384^2 weights, ten times, in f32: at least 160 GiB.
        let need = estimate(&m).training_bytes(64);
        assert!(need > 160 << 30, "{need}");
        assert!(check_fits(&ModelConfig::default(), 64, true, Some((4 << 30, "x"))).is_ok());
    }
}
