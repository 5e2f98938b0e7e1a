//! Turning dataset images into tensors, and the order images are visited in.

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::data::dataset::Dataset;
use crate::rng::{Stream, permutation, stream_rng};

/// A batch of images on the host, before it becomes a tensor: what the loader threads build.
///
/// # Shapes
/// `values`: `dims` = `[indices.len(), channels, height, width]`, row-major
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    /// Pixels scaled to [0, 1] (or binary draws).
    pub values: Vec<f32>,
    /// The batch's shape.
    pub dims: [usize; 4],
    /// The images' labels.
    pub labels: Vec<u32>,
}

impl HostBatch {
    /// The batch as a tensor on `device`.
    pub fn tensor(self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.values, self.dims), device)
    }
}

/// Images `indices` of `ds` with pixels scaled to [0, 1], and their labels; a mapped
/// dataset's pages are released once copied (see [`Dataset::release_all`]).
///
/// With `binarize`, each pixel becomes 1 with probability equal to its intensity (dynamic
/// binarisation), drawn from that generator.
pub fn host_batch(ds: &Dataset, indices: &[usize], binarize: Option<&mut ChaCha8Rng>) -> HostBatch {
    let s = ds.shape;
    let mut values = Vec::with_capacity(indices.len() * s.numel());
    match binarize {
        None => {
            for &i in indices {
                values.extend(ds.image(i).iter().map(|&p| p as f32 / 255.0));
            }
        }
        Some(rng) => {
            for &i in indices {
                values.extend(ds.image(i).iter().map(|&p| {
                    let u: f32 = rng.random();
                    if u < p as f32 / 255.0 { 1.0 } else { 0.0 }
                }));
            }
        }
    }
    ds.release_all();
    HostBatch {
        values,
        dims: [indices.len(), s.channels, s.height, s.width],
        labels: ds.labels_of(indices),
    }
}

/// Stacks images `indices` of `ds` into a tensor with pixels scaled to [0, 1] (see
/// [`host_batch`]).
///
/// # Shapes
/// returns `[indices.len(), channels, height, width]`
pub fn batch_tensor(
    ds: &Dataset,
    indices: &[usize],
    binarize: Option<&mut ChaCha8Rng>,
    device: &Device,
) -> Tensor<4> {
    host_batch(ds, indices, binarize).tensor(device)
}

/// One-hot rows for `labels` over `classes` classes, row-major `[labels.len(), classes]`;
/// empty for `classes` = 0 (an unconditional model). Callers check the labels against
/// `classes` first.
pub fn one_hot(labels: &[u32], classes: usize) -> Vec<f32> {
    if classes == 0 {
        return Vec::new();
    }
    let mut v = vec![0.0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l as usize] = 1.0;
    }
    v
}

/// The order of the training images in `epoch` (1-based): a permutation that depends only on
/// the seed and the epoch, so a resumed run visits images exactly as an uninterrupted one.
pub fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    permutation(&mut stream_rng(seed, Stream::Shuffle, epoch as u64), n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageShape;

    #[test]
    fn one_hot_rows_and_no_classes() {
        assert_eq!(one_hot(&[2, 0], 3), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
        // An unconditional model: no condition, whatever the labels.
        assert!(one_hot(&[5, 1], 0).is_empty());
    }

    fn tiny() -> Dataset {
        Dataset {
            shape: ImageShape {
                channels: 1,
                height: 2,
                width: 2,
            },
            pixels: vec![0, 255, 51, 102, 255, 255, 0, 0].into(),
            labels: vec![0, 1],
            classes: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn scales_to_unit_interval_in_order() {
        let t = batch_tensor(&tiny(), &[1, 0], None, &Device::flex());
        assert_eq!(t.dims(), [2, 1, 2, 2]);
        let v = t.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(v, vec![1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.2, 0.4]);
    }

    #[test]
    fn dynamic_binarisation_matches_intensity() {
        let ds = Dataset {
            shape: ImageShape {
                channels: 1,
                height: 1,
                width: 1,
            },
            pixels: vec![51; 20_000].into(),
            labels: vec![0; 20_000],
            classes: vec!["a".into()],
        };
        let idx: Vec<usize> = (0..ds.len()).collect();
        let mut rng = stream_rng(0, Stream::TrainBinarize, 0);
        let v = batch_tensor(&ds, &idx, Some(&mut rng), &Device::flex())
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        assert!(v.iter().all(|&x| x == 0.0 || x == 1.0));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean - 0.2).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn static_binarisation_is_seeded() {
        let mut a = tiny();
        let mut b = tiny();
        a.binarize_static(5);
        b.binarize_static(5);
        assert_eq!(a.pixels, b.pixels);
        assert!(a.pixels.iter().all(|&p| p == 0 || p == 255));
        // 0 and 255 are left as they are.
        assert_eq!((a.pixels[0], a.pixels[1], a.pixels[6]), (0, 255, 0));
    }

    #[test]
    fn epoch_order_depends_on_epoch_only() {
        assert_eq!(epoch_order(1, 2, 50), epoch_order(1, 2, 50));
        assert_ne!(epoch_order(1, 2, 50), epoch_order(1, 3, 50));
    }
}
