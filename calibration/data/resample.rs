//! Image resizing with Pillow's conventions, so preprocessing written for
//! `PIL.Image.resize` gives the same pixels here.
//!
//! Bilinear and Lanczos are separable convolutions whose support widens by
//! the downscaling factor (antialiasing); each output pixel's weights are
//! normalized to sum to one, converted to 22-bit fixed point, and applied to
//! 8-bit pixels horizontally first, the intermediate rounded and clamped to
//! 8 bits, then vertically. Nearest samples the source pixel under each
//! output pixel's centre. OpenCV's `INTER_LANCZOS4` (a fixed 8-tap kernel,
//! no antialiasing) is a different filter and gives different pixels.

use super::image::Filter;

/// An 8-bit image, rows of interleaved channels.
#[derive(Clone, Debug, PartialEq)]
pub struct Image8 {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Image8 {
    /// Rows `top..top + height`, columns `left..left + width` (the caller
    /// keeps them inside the image).
    pub fn crop(&self, top: usize, left: usize, height: usize, width: usize) -> Image8 {
        let c = self.channels;
        let mut data = Vec::with_capacity(height * width * c);
        for y in top..top + height {
            let row = (y * self.width + left) * c;
            data.extend_from_slice(&self.data[row..row + width * c]);
        }
        Image8 {
            width,
            height,
            channels: c,
            data,
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// `img` resized to `width` x `height` (both at least 1).
pub fn resize(img: &Image8, width: usize, height: usize, filter: Filter) -> Image8 {
    if img.width == width && img.height == height {
        return img.clone();
    }
    let (kernel, support): (fn(f64) -> f64, f64) = match filter {
        Filter::Nearest => return nearest(img, width, height),
        Filter::Bilinear => (bilinear, 1.0),
        Filter::Lanczos => (lanczos, 3.0),
    };
    let mut out = img.clone();
    if width != img.width {
        let coeffs = Coeffs::new(img.width, width, kernel, support);
        out = horizontal(&out, &coeffs);
    }
    if height != img.height {
        let coeffs = Coeffs::new(img.height, height, kernel, support);
        out = vertical(&out, &coeffs);
    }
    out
}

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Per output pixel: the first input pixel it reads and its fixed-point weights.
struct Coeffs {
    taps: Vec<(usize, Vec<i32>)>,
}

impl Coeffs {
    fn new(in_size: usize, out_size: usize, kernel: fn(f64) -> f64, support: f64) -> Coeffs {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let inverse = 1.0 / filter_scale;
        let support = support * filter_scale;
        let taps = (0..out_size)
            .map(|xx| {
                let center = (xx as f64 + 0.5) * scale;
                // Truncation toward zero of a value >= -0.5 rounds as Pillow does.
                let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
                let weights: Vec<f64> = (xmin..xmax)
                    .map(|x| kernel((x as f64 - center + 0.5) * inverse))
                    .collect();
                let total: f64 = weights.iter().sum();
                let fixed = weights
                    .iter()
                    .map(|&w| {
                        let w = if total != 0.0 { w / total } else { w };
                        let scaled = w * f64::from(1u32 << PRECISION_BITS);
                        (if scaled < 0.0 {
                            scaled - 0.5
                        } else {
                            scaled + 0.5
                        }) as i32
                    })
                    .collect();
                (xmin, fixed)
            })
            .collect();
        Coeffs { taps }
    }
}

fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

fn horizontal(img: &Image8, coeffs: &Coeffs) -> Image8 {
    let c = img.channels;
    let width = coeffs.taps.len();
    let mut data = vec![0u8; width * img.height * c];
    for y in 0..img.height {
        let row = &img.data[y * img.width * c..(y + 1) * img.width * c];
        let out = &mut data[y * width * c..(y + 1) * width * c];
        for (xx, (xmin, weights)) in coeffs.taps.iter().enumerate() {
            for ch in 0..c {
                let mut sum = 1i64 << (PRECISION_BITS - 1);
                for (k, &w) in weights.iter().enumerate() {
                    sum += i64::from(row[(xmin + k) * c + ch]) * i64::from(w);
                }
                out[xx * c + ch] = clip8(sum);
            }
        }
    }
    Image8 {
        width,
        height: img.height,
        channels: c,
        data,
    }
}

fn vertical(img: &Image8, coeffs: &Coeffs) -> Image8 {
    let c = img.channels;
    let height = coeffs.taps.len();
    let stride = img.width * c;
    let mut data = vec![0u8; stride * height];
    for (yy, (ymin, weights)) in coeffs.taps.iter().enumerate() {
        let out = &mut data[yy * stride..(yy + 1) * stride];
        for (i, slot) in out.iter_mut().enumerate() {
            let mut sum = 1i64 << (PRECISION_BITS - 1);
            for (k, &w) in weights.iter().enumerate() {
                sum += i64::from(img.data[(ymin + k) * stride + i]) * i64::from(w);
            }
            *slot = clip8(sum);
        }
    }
    Image8 {
        width: img.width,
        height,
        channels: c,
        data,
    }
}

/// Pillow's nearest neighbour: the source coordinate advances by the scale
/// from half a step in, accumulated in f64, and is truncated.
fn nearest(img: &Image8, width: usize, height: usize) -> Image8 {
    let positions = |in_size: usize, out_size: usize| -> Vec<usize> {
        let step = in_size as f64 / out_size as f64;
        let mut at = step * 0.5;
        (0..out_size)
            .map(|_| {
                let i = (at as usize).min(in_size - 1);
                at += step;
                i
            })
            .collect()
    };
    let (xs, ys) = (positions(img.width, width), positions(img.height, height));
    let c = img.channels;
    let mut data = Vec::with_capacity(width * height * c);
    for &y in &ys {
        for &x in &xs {
            let at = (y * img.width + x) * c;
            data.extend_from_slice(&img.data[at..at + c]);
        }
    }
    Image8 {
        width,
        height,
        channels: c,
        data,
    }
}
