//! ONNX export: `encoder.onnx` (images -> `mean`, `logvar`), `decoder.onnx` (`z` -> the mean
//! image, and `log_scale` where the likelihood has scale maps) and, for models whose prior is
//! learned, `prior.onnx` (the parameters a sampler needs). Each graph mirrors the network's
//! forward pass in vaekit layer by layer, with the checkpoint's parameters as initialisers
//! under their checkpoint names; the batch dimension is free (`N`).

pub mod graph;

/// The messages of the official `onnx.proto`, generated at build time.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx-protos/mod.rs"));
}

use protobuf::{Message, MessageField};
use vaekit::config::{Likelihood, ModelConfig};
use vaekit::model::conv::{ConvDecoderConfig, ConvEncoderConfig};
use vaekit::model::cppn::{CppnDecoderConfig, coordinates};
use vaekit::model::mlp::{MlpDecoderConfig, MlpEncoderConfig};
use vaekit::model::{DecoderConfig, EncoderConfig, PriorConfig};
use vaekit::ops::Activation;

use self::graph::{Attr, Dim, Graph};
use self::proto::onnx::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::weights::Weights;
use crate::{ExportError, Result};

/// The operator set the graphs use: accepted by `onnx.checker` and every onnxruntime since 1.12.
pub const OPSET: i64 = 17;
/// The ONNX IR version of opset 17.
pub const IR_VERSION: i64 = 8;

const N: Dim = Dim::Free("N");

/// An ONNX model's bytes, and which part of the VAE it is.
pub struct OnnxModel {
    /// `encoder`, `decoder` or `prior`.
    pub part: &'static str,
    /// The serialised `ModelProto`.
    pub bytes: Vec<u8>,
}

/// The ONNX graphs of a model: encoder, decoder (rendering at `size` for a CPPN decoder, the
/// training size by default), and the prior's where it has parameters. `config_json` (the run's
/// config) goes into each model's metadata.
pub fn export(
    cfg: &ModelConfig,
    weights: &Weights,
    size: Option<[usize; 2]>,
    config_json: &str,
) -> Result<Vec<OnnxModel>> {
    let mut graphs = vec![
        ("encoder", encoder(cfg, weights)?),
        ("decoder", decoder(cfg, weights, size)?),
    ];
    if let Some(p) = prior(cfg, weights)? {
        graphs.push(("prior", p));
    }
    graphs
        .into_iter()
        .map(|(part, g)| {
            let mut m = ModelProto::new();
            m.set_ir_version(IR_VERSION);
            m.set_producer_name("vaekit".into());
            m.set_producer_version(vaekit::VERSION.into());
            m.set_doc_string(format!("the {part} of a vaekit model"));
            let mut opset = OperatorSetIdProto::new();
            opset.set_domain(String::new());
            opset.set_version(OPSET);
            m.opset_import.push(opset);
            m.graph = MessageField::some(g);
            for (k, v) in [
                ("vaekit_version", vaekit::VERSION.to_string()),
                ("vaekit_part", part.to_string()),
                ("vaekit_config", config_json.to_string()),
            ] {
                let mut e = StringStringEntryProto::new();
                e.set_key(k.into());
                e.set_value(v);
                m.metadata_props.push(e);
            }
            let bytes = m
                .write_to_bytes()
                .map_err(|e| ExportError::Unsupported(format!("serialising the {part}: {e}")))?;
            Ok(OnnxModel { part, bytes })
        })
        .collect()
}

/// The condition input of a conditional model: `class` (int64 `[N]`) as one-hot rows.
fn condition(g: &mut Graph, classes: usize) -> Option<String> {
    (classes > 0).then(|| {
        let c = g.input_i64("class", &[N]);
        g.one_hot(&c, classes)
    })
}

/// `h` with the one-hot condition appended (nothing without one).
fn with_condition(g: &mut Graph, h: &str, y: Option<&String>) -> String {
    match y {
        Some(y) => g.concat(&[h, y], 1),
        None => h.to_string(),
    }
}

/// Dense layers `PREFIX.0`, `PREFIX.1`, ... with `act` after each.
fn stack(
    g: &mut Graph,
    mut h: String,
    prefix: &str,
    layers: usize,
    act: Activation,
) -> Result<String> {
    for i in 0..layers {
        let d = g.dense(&h, &format!("{prefix}.{i}"))?;
        h = g.act(&d, act);
    }
    Ok(h)
}

/// q(z|x): `x` `[N, C, H, W]` -> `mean`, `logvar` `[N, latent]`.
fn encoder(cfg: &ModelConfig, w: &Weights) -> Result<proto::onnx::GraphProto> {
    let mut g = Graph::new("vaekit_encoder", w);
    let s = cfg.image;
    let x = g.input(
        "x",
        &[
            N,
            Dim::Fixed(s.channels),
            Dim::Fixed(s.height),
            Dim::Fixed(s.width),
        ],
    );
    let (classes, h) = match cfg.encoder() {
        EncoderConfig::Conv(ConvEncoderConfig {
            channels,
            kernel,
            leaky_slope,
            classes,
            ..
        }) => {
            let mut h = x;
            for i in 0..channels.len() {
                let c = g.conv(&h, &format!("encoder.convs.{i}"), 2, kernel / 2)?;
                h = g.act(
                    &c,
                    Activation::LeakyRelu {
                        slope: leaky_slope as f32,
                    },
                );
            }
            (
                classes,
                g.op("Flatten", &[&h], vec![("axis", Attr::Int(1))]),
            )
        }
        EncoderConfig::Mlp(MlpEncoderConfig {
            hidden, classes, ..
        }) => {
            let flat = g.op("Flatten", &[&x], vec![("axis", Attr::Int(1))]);
            let y = condition(&mut g, classes);
            let h = with_condition(&mut g, &flat, y.as_ref());
            let h = stack(&mut g, h, "encoder.hidden", hidden.len(), Activation::Relu)?;
            return heads(g, &h, cfg.latent_dim);
        }
    };
    let y = condition(&mut g, classes);
    let h = with_condition(&mut g, &h, y.as_ref());
    heads(g, &h, cfg.latent_dim)
}

/// The encoder's Gaussian heads on the features `h`.
fn heads(mut g: Graph, h: &str, latent: usize) -> Result<proto::onnx::GraphProto> {
    let mean = g.dense(h, "encoder.mean")?;
    let logvar = g.dense(h, "encoder.logvar")?;
    g.output(&mean, "mean", &[N, Dim::Fixed(latent)]);
    g.output(&logvar, "logvar", &[N, Dim::Fixed(latent)]);
    Ok(g.finish())
}

/// `x` plus the label's bias of decoder layer `i` where the label enters every layer,
/// reshaped to broadcast as `shape` (`[-1, c, 1, 1]` for maps, `[-1, 1, c]` per pixel).
fn label_bias(
    g: &mut Graph,
    x: &str,
    y: Option<&String>,
    every_layer: bool,
    i: usize,
    shape: &[i64],
) -> Result<String> {
    match (y, every_layer) {
        (Some(y), true) => {
            let b = g.dense(y, &format!("decoder.labels.layers.{i}"))?;
            let b = g.reshape(&b, shape);
            Ok(g.op("Add", &[x, &b], vec![]))
        }
        _ => Ok(x.to_string()),
    }
}

/// p(x|z): `z` `[N, latent]` (and `class`) -> `mean` `[N, C, H, W]` in [0, 1] and, for the
/// likelihoods with scale maps, `log_scale` `[N, C, H, W]`.
fn decoder(
    cfg: &ModelConfig,
    w: &Weights,
    size: Option<[usize; 2]>,
) -> Result<proto::onnx::GraphProto> {
    let mut g = Graph::new("vaekit_decoder", w);
    let z = g.input("z", &[N, Dim::Fixed(cfg.latent_dim)]);
    let dec = cfg.decoder();
    let training = [cfg.image.height, cfg.image.width];
    let [h, wd] = size.unwrap_or(training);
    if !matches!(dec, DecoderConfig::Cppn(_)) && [h, wd] != training {
        return Err(ExportError::Unsupported(format!(
            "--size {wd}x{h}: this decoder makes only its training size {}x{}; a CPPN decoder (--decoder cppn) renders at any size",
            training[1], training[0]
        )));
    }
    let maps = match dec {
        DecoderConfig::Conv(c) => conv_decoder(&mut g, &z, &c)?,
        DecoderConfig::Mlp(c) => mlp_decoder(&mut g, &z, &c)?,
        DecoderConfig::Cppn(c) => cppn_decoder(&mut g, &z, &c, [h, wd])?,
    };
    let c = cfg.image.channels;
    let dims = [N, Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(wd)];
    let first = g.slice(&maps, 1, 0, c);
    let mean = match cfg.likelihood {
        Likelihood::Logistic => {
            // The logistic's mean on [-1, 1], moved to [0, 1].
            let one = g.constant("one", &[], &[1.0]);
            let shifted = g.op("Add", &[&first, &one], vec![]);
            let half = g.scale(&shifted, 0.5);
            let lo = g.constant("lo", &[], &[0.0]);
            let hi = g.constant("hi", &[], &[1.0]);
            g.op("Clip", &[&half, &lo, &hi], vec![])
        }
        _ => g.op("Sigmoid", &[&first], vec![]),
    };
    g.output(&mean, "mean", &dims);
    match cfg.likelihood {
        Likelihood::GaussianLearned | Likelihood::Logistic => {
            let s = g.slice(&maps, 1, c, c);
            g.output(&s, "log_scale", &dims);
        }
        Likelihood::GaussianGlobal => {
            let p = g.param("likelihood.scale.log_std")?;
            let p = g.reshape(&p, &[1, c as i64, 1, 1]);
            let shape = g.op("Shape", &[&mean], vec![]);
            let s = g.op("Expand", &[&p, &shape], vec![]);
            g.output(&s, "log_scale", &dims);
        }
        Likelihood::Bernoulli | Likelihood::Gaussian { .. } => {}
    }
    Ok(g.finish())
}

/// The conv decoder's maps `[N, C * maps, H, W]`.
fn conv_decoder(g: &mut Graph, z: &str, c: &ConvDecoderConfig) -> Result<String> {
    let y = condition(g, c.classes);
    let zy = with_condition(g, z, y.as_ref());
    let d = g.dense(&zy, "decoder.dense")?;
    let d = g.act(&d, Activation::Relu);
    let layers = c.channels.len();
    let f = 1 << layers;
    let bottleneck = [
        *c.channels.last().unwrap_or(&c.image.channels) as i64,
        (c.image.height / f) as i64,
        (c.image.width / f) as i64,
    ];
    let mut x = g.reshape(&d, &[-1, bottleneck[0], bottleneck[1], bottleneck[2]]);
    let pad = c.kernel / 2;
    for i in 0..layers {
        let up = match c.upsample {
            vaekit::config::Upsample::Transposed => {
                g.conv_transpose_2x(&x, &format!("decoder.convs.{i}"), pad)?
            }
            vaekit::config::Upsample::Resize => {
                let d = g.double_nearest(&x);
                g.conv(&d, &format!("decoder.resize.{i}"), 1, pad)?
            }
        };
        let width = g
            .weights()
            .get(&format!(
                "{}.{i}.bias",
                match c.upsample {
                    vaekit::config::Upsample::Transposed => "decoder.convs",
                    vaekit::config::Upsample::Resize => "decoder.resize",
                }
            ))?
            .dims[0] as i64;
        let up = label_bias(
            g,
            &up,
            y.as_ref(),
            c.label_every_layer,
            i,
            &[-1, width, 1, 1],
        )?;
        x = if i + 1 < layers {
            g.act(&up, Activation::Relu)
        } else {
            up
        };
    }
    Ok(x)
}

/// The MLP decoder's maps `[N, C * maps, H, W]`.
fn mlp_decoder(g: &mut Graph, z: &str, c: &MlpDecoderConfig) -> Result<String> {
    let y = condition(g, c.classes);
    let mut h = with_condition(g, z, y.as_ref());
    for i in 0..c.hidden.len() {
        let d = g.dense(&h, &format!("decoder.hidden.{i}"))?;
        let d = label_bias(
            g,
            &d,
            y.as_ref(),
            c.label_every_layer,
            i,
            &[-1, c.hidden[c.hidden.len() - 1 - i] as i64],
        )?;
        h = g.act(&d, Activation::Relu);
    }
    let s = c.image;
    let out = g.dense(&h, "decoder.out")?;
    let out = label_bias(
        g,
        &out,
        y.as_ref(),
        c.label_every_layer,
        c.hidden.len(),
        &[-1, (s.numel() * c.maps) as i64],
    )?;
    Ok(g.reshape(
        &out,
        &[
            -1,
            (s.channels * c.maps) as i64,
            s.height as i64,
            s.width as i64,
        ],
    ))
}

/// The CPPN's maps at `size`: the coordinates of every pixel are a constant of the graph.
fn cppn_decoder(g: &mut Graph, z: &str, c: &CppnDecoderConfig, size: [usize; 2]) -> Result<String> {
    let [h, w] = size;
    let p = h * w;
    let y = condition(g, c.classes);
    let zs = g.scale(z, c.z_scale as f32);
    let zy = with_condition(g, &zs, y.as_ref());
    let hz = g.dense(&zy, "decoder.z")?; // [N, hidden]
    let xyr = coordinates(h, w, 0, h, c.scale);
    let mut hxy: Option<String> = None;
    for (k, axis) in ["x", "y", "r"].iter().enumerate() {
        let col: Vec<f32> = xyr.iter().map(|v| v[k]).collect();
        let col = g.constant(&format!("coord_{axis}"), &[p, 1], &col);
        let t = g.dense(&col, &format!("decoder.{axis}"))?; // [P, hidden]
        hxy = Some(match hxy {
            None => t,
            Some(acc) => g.op("Add", &[&acc, &t], vec![]),
        });
    }
    let hxy = hxy.expect("three coordinates");
    let hidden = c.hidden as i64;
    let hz = g.reshape(&hz, &[-1, 1, hidden]);
    let hxy = g.reshape(&hxy, &[1, p as i64, hidden]);
    let u = g.op("Add", &[&hz, &hxy], vec![]); // [N, P, hidden]
    let mut a = g.tanh(&u);
    for i in 0..c.layers {
        let d = g.dense(&a, &format!("decoder.hidden.{i}"))?;
        let d = label_bias(g, &d, y.as_ref(), c.label_every_layer, i, &[-1, 1, hidden])?;
        a = g.tanh(&d);
    }
    let maps = (c.image.channels * c.maps) as i64;
    let out = g.dense(&a, "decoder.out")?; // [N, P, maps]
    let out = label_bias(
        g,
        &out,
        y.as_ref(),
        c.label_every_layer,
        c.layers,
        &[-1, 1, maps],
    )?;
    let out = g.reshape(&out, &[-1, h as i64, w as i64, maps]);
    Ok(g.op(
        "Transpose",
        &[&out],
        vec![("perm", Attr::Ints(vec![0, 3, 1, 2]))],
    ))
}

/// The prior's graph where it has parameters: p(z1|z2) of a hierarchical VAE (`z2` ->
/// `mean`, `logvar`), or a learned class prior (`class` -> `mean`, `logvar` `[N, K, latent]`
/// for K components, and `log_weights` `[N, K]` of a mixture). None for N(0, I).
fn prior(cfg: &ModelConfig, w: &Weights) -> Result<Option<proto::onnx::GraphProto>> {
    match cfg.prior() {
        PriorConfig::StandardNormal(_) => Ok(None),
        PriorConfig::TwoLayer { below, top } => {
            let mut g = Graph::new("vaekit_prior", w);
            let z2 = g.input("z2", &[N, Dim::Fixed(top.latent_dim)]);
            let mut h = z2;
            for i in 0..top.hidden.len() {
                let d = g.dense(&h, &format!("prior.down.{i}"))?;
                h = g.tanh(&d);
            }
            let mean = g.dense(&h, "prior.down_mean")?;
            let logvar = g.dense(&h, "prior.down_logvar")?;
            g.output(&mean, "mean", &[N, Dim::Fixed(below)]);
            g.output(&logvar, "logvar", &[N, Dim::Fixed(below)]);
            Ok(Some(g.finish()))
        }
        PriorConfig::Class {
            latent,
            classes,
            components,
        } => {
            let mut g = Graph::new("vaekit_prior", w);
            let k = components.max(1);
            let y = condition(&mut g, classes).expect("a class prior has classes");
            let dims = [N, Dim::Fixed(k), Dim::Fixed(latent)];
            for part in ["mean", "logvar"] {
                let v = g.dense(&y, &format!("prior.{part}"))?;
                let v = g.reshape(&v, &[-1, k as i64, latent as i64]);
                g.output(&v, part, &dims);
            }
            if k > 1 {
                let logits = g.dense(&y, "prior.weight")?;
                let lw = g.op("LogSoftmax", &[&logits], vec![("axis", Attr::Int(1))]);
                g.output(&lw, "log_weights", &[N, Dim::Fixed(k)]);
            }
            Ok(Some(g.finish()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use protobuf::Message;
    use vaekit::burn::tensor::Device;
    use vaekit::config::{
        Architecture, ClassPriorKind, Conditioning, DecoderArchitecture, LabelInput, Likelihood,
        ModelConfig, TopLatentConfig, Upsample,
    };
    use vaekit::model::Vae;

    use super::*;

    fn configs() -> Vec<ModelConfig> {
        let every_layer = Some(Conditioning {
            prior: ClassPriorKind::Learned,
            decoder: LabelInput::EveryLayer,
            components: 3,
        });
        vec![
            ModelConfig::default(),
            ModelConfig {
                architecture: Architecture::Conv {
                    channels: vec![4, 8],
                    kernel: 3,
                    leaky_slope: 0.1,
                    upsample: Upsample::Resize,
                },
                classes: 4,
                conditioning: every_layer,
                likelihood: Likelihood::GaussianGlobal,
                ..ModelConfig::default()
            },
            ModelConfig {
                architecture: Architecture::default_mlp(),
                decoder: Some(DecoderArchitecture::default_cppn()),
                classes: 3,
                conditioning: every_layer,
                likelihood: Likelihood::Logistic,
                ..ModelConfig::default()
            },
            ModelConfig {
                architecture: Architecture::Mlp {
                    hidden: vec![30, 20],
                },
                top: Some(TopLatentConfig::default()),
                likelihood: Likelihood::GaussianLearned,
                ..ModelConfig::default()
            },
        ]
    }

    /// Every parameter of every model goes into one of its graphs, under its checkpoint name,
    /// and each graph has the documented inputs and outputs.
    #[test]
    fn every_parameter_is_in_a_graph_with_the_documented_inputs_and_outputs() {
        let dev = Device::flex();
        for cfg in configs() {
            let vae = Vae::init(&cfg, 0, &dev);
            let w = Weights::of(&vae).unwrap();
            let models = export(&cfg, &w, None, "{}").unwrap();
            let mut used = BTreeSet::new();
            for m in &models {
                let p = ModelProto::parse_from_bytes(&m.bytes).unwrap();
                let g = p.graph.as_ref().unwrap();
                let names = |v: &[proto::onnx::ValueInfoProto]| {
                    v.iter().map(|i| i.name().to_string()).collect::<Vec<_>>()
                };
                let (ins, outs) = (names(&g.input), names(&g.output));
                let class = if cfg.classes > 0 {
                    vec!["class"]
                } else {
                    vec![]
                };
                match m.part {
                    "encoder" => {
                        assert_eq!(ins, [vec!["x"], class.clone()].concat());
                        assert_eq!(outs, ["mean", "logvar"]);
                    }
                    "decoder" => {
                        assert_eq!(ins, [vec!["z"], class.clone()].concat());
                        let want = if cfg.likelihood.params_per_pixel() == 2 {
                            vec!["mean", "log_scale"]
                        } else {
                            vec!["mean"]
                        };
                        assert_eq!(outs, want, "{:?}", cfg.likelihood);
                    }
                    "prior" if cfg.top.is_some() => {
                        assert_eq!(ins, ["z2"]);
                        assert_eq!(outs, ["mean", "logvar"]);
                    }
                    "prior" => {
                        assert_eq!(ins, ["class"]);
                        assert_eq!(outs, ["mean", "logvar", "log_weights"]);
                    }
                    p => panic!("unexpected part {p}"),
                }
                assert_eq!(p.opset_import[0].version(), OPSET);
                used.extend(g.initializer.iter().map(|t| t.name().to_string()));
            }
            let parts: Vec<_> = models.iter().map(|m| m.part).collect();
            let learned = cfg.top.is_some() || cfg.conditioning.is_some();
            assert_eq!(parts.len(), 2 + usize::from(learned), "{parts:?}");
            // q(z2|z1) is the only part no graph needs: it infers, it does not generate.
            let all: BTreeSet<String> = w
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| !n.starts_with("prior.up"))
                .collect();
            let missing: Vec<_> = all.difference(&used).collect();
            assert!(missing.is_empty(), "not exported: {missing:?}");
        }
    }

    #[test]
    fn a_size_is_refused_for_a_fixed_size_decoder_and_taken_by_a_cppn() {
        let dev = Device::flex();
        let cfgs = configs();
        let conv = Vae::init(&cfgs[0], 0, &dev);
        let err = export(&cfgs[0], &Weights::of(&conv).unwrap(), Some([56, 56]), "{}")
            .err()
            .unwrap();
        assert!(err.to_string().contains("training size 28x28"), "{err}");
        let cppn = Vae::init(&cfgs[2], 0, &dev);
        let models = export(&cfgs[2], &Weights::of(&cppn).unwrap(), Some([30, 50]), "{}").unwrap();
        let p = ModelProto::parse_from_bytes(&models[1].bytes).unwrap();
        let dims: Vec<_> = p.graph.output[0]
            .type_
            .tensor_type()
            .shape
            .dim
            .iter()
            .map(|d| d.dim_value())
            .collect();
        assert_eq!(dims, [0, 1, 30, 50]);
    }
}
