//! Image folders: PNG and JPEG files decoded to 8-bit RGB (alpha dropped,
//! grey replicated, 16-bit samples reduced to their high byte), then
//! resized, centre-cropped and normalized as a [`Preprocess`] says.
//!
//! A spec is a flat TOML table (or the same keys as `KEY=VALUE` flags):
//!
//! ```toml
//! resize = 256            # short side to 256; or "224x224" (height x width)
//! filter = "lanczos"      # lanczos | bilinear (default) | nearest, as Pillow resizes
//! crop = 224              # centre crop; or "224x200" (height x width)
//! channels = "bgr"        # rgb (default) | bgr | gray
//! scale = "1/255"         # multiplies the 0..255 values (default 1/255)
//! mean = [0.485, 0.456, 0.406]   # per channel, in the `channels` order
//! std = [0.229, 0.224, 0.225]
//! layout = "nchw"         # nchw (default) | nhwc
//! dtype = "f32"
//! ```
//!
//! Each value is `((pixel * scale) - mean) / std` in f32. A graph input of
//! rank 4 gets a batch of one.

use std::path::{Path, PathBuf};

use ndarray::Array3;

use super::resample::{Image8, resize};
use super::{Entry, Signature, Source, batch_of_one, extension, list_dir};
use crate::ir::dtype::DType;
use crate::ir::error::{Error, Result};
use crate::ir::tensor::Tensor;

/// Largest width or height decoded.
const MAX_SIDE: usize = 1 << 16;
/// Largest decoded image, in bytes.
const MAX_BYTES: usize = 1 << 30;

#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    pub resize: Option<Resize>,
    pub filter: Filter,
    /// Centre crop, height x width.
    pub crop: Option<(usize, usize)>,
    pub channels: Channels,
    pub scale: f32,
    /// One value per output channel (or one for all).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub layout: Layout,
}

impl Default for Preprocess {
    fn default() -> Preprocess {
        Preprocess {
            resize: None,
            filter: Filter::Bilinear,
            crop: None,
            channels: Channels::Rgb,
            scale: 1.0 / 255.0,
            mean: vec![0.0],
            std: vec![1.0],
            layout: Layout::Nchw,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// The shorter side becomes this long, the aspect ratio kept (the other
    /// side rounded half to even, as Python's `round`).
    ShortSide(usize),
    Exact {
        height: usize,
        width: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Lanczos,
    Bilinear,
    Nearest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    Rgb,
    Bgr,
    /// ITU-R 601-2 luma, as Pillow's `convert("L")`.
    Gray,
}

impl Channels {
    fn count(self) -> usize {
        match self {
            Channels::Gray => 1,
            _ => 3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

impl Preprocess {
    /// Reads a spec from a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<Preprocess> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Preprocess::from_toml_str(&text, path)
    }

    /// Parses a TOML spec; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Preprocess> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| bad(origin, e.to_string()))?;
        let mut spec = Preprocess::default();
        for (key, value) in table {
            let text = match &value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| match v {
                        toml::Value::Integer(i) => Ok(i.to_string()),
                        toml::Value::Float(f) => Ok(f.to_string()),
                        _ => Err(bad(origin, format!("'{key}' must be a list of numbers"))),
                    })
                    .collect::<Result<Vec<_>>>()?
                    .join(","),
                other => {
                    return Err(bad(
                        origin,
                        format!("'{key}' cannot be a {}", other.type_str()),
                    ));
                }
            };
            spec.set(&key, &text)
                .map_err(|e| bad(origin, e.to_string()))?;
        }
        spec.check().map_err(|e| bad(origin, e.to_string()))?;
        Ok(spec)
    }

    /// Sets one key from its text, as a `--preprocess KEY=VALUE` flag gives it.
    /// Call [`Preprocess::check`] after the last one.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let fail =
            |expected: &str| Error::Input(format!("preprocess {key}={value}: expected {expected}"));
        let value = value.trim();
        match key {
            "resize" => {
                self.resize = Some(match parse_size(value) {
                    Some((h, Some(w))) => Resize::Exact {
                        height: h,
                        width: w,
                    },
                    Some((n, None)) => Resize::ShortSide(n),
                    None => return Err(fail("a short side N or HEIGHTxWIDTH, each at least 1")),
                })
            }
            "filter" => {
                self.filter = match value {
                    "lanczos" => Filter::Lanczos,
                    "bilinear" => Filter::Bilinear,
                    "nearest" => Filter::Nearest,
                    _ => return Err(fail("lanczos, bilinear or nearest")),
                }
            }
            "crop" => {
                self.crop = Some(match parse_size(value) {
                    Some((h, w)) => (h, w.unwrap_or(h)),
                    None => return Err(fail("N or HEIGHTxWIDTH, each at least 1")),
                })
            }
            "channels" => {
                self.channels = match value {
                    "rgb" => Channels::Rgb,
                    "bgr" => Channels::Bgr,
                    "gray" => Channels::Gray,
                    _ => return Err(fail("rgb, bgr or gray")),
                }
            }
            "scale" => {
                let scale = match value.split_once('/') {
                    Some((a, b)) => match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                        (Ok(a), Ok(b)) if b != 0.0 => a / b,
                        _ => return Err(fail("a number or a fraction such as 1/255")),
                    },
                    None => value
                        .parse::<f64>()
                        .map_err(|_| fail("a number or a fraction such as 1/255"))?,
                };
                if !scale.is_finite() || scale == 0.0 {
                    return Err(fail("a finite, non-zero number"));
                }
                self.scale = scale as f32;
            }
            "mean" | "std" => {
                let list = value
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|v| v.trim().parse::<f32>())
                    .collect::<Result<Vec<f32>, _>>()
                    .ok()
                    .filter(|l| l.iter().all(|v| v.is_finite()))
                    .ok_or_else(|| fail("finite numbers separated by commas"))?;
                if key == "mean" {
                    self.mean = list;
                } else {
                    self.std = list;
                }
            }
            "layout" => {
                self.layout = match value {
                    "nchw" => Layout::Nchw,
                    "nhwc" => Layout::Nhwc,
                    _ => return Err(fail("nchw or nhwc")),
                }
            }
            "dtype" => {
                if value != "f32" {
                    return Err(fail("f32 (the only dtype images are prepared in)"));
                }
            }
            _ => {
                return Err(Error::Input(format!(
                    "unknown preprocess key '{key}' (keys: resize, filter, crop, channels, scale, mean, std, layout, dtype)"
                )));
            }
        }
        Ok(())
    }

    /// Checks that the keys fit together: one mean and std per channel (or
    /// one for all), no zero std.
    pub fn check(&self) -> Result<()> {
        let channels = self.channels.count();
        for (key, list) in [("mean", &self.mean), ("std", &self.std)] {
            if list.len() != 1 && list.len() != channels {
                return Err(Error::Input(format!(
                    "preprocess {key} has {} values; {channels} channel(s) need {channels} (or 1)",
                    list.len()
                )));
            }
        }
        if self.std.contains(&0.0) {
            return Err(Error::Input("preprocess std must not be 0".into()));
        }
        Ok(())
    }

    /// The preprocessed image as an f32 tensor `[C, H, W]` or `[H, W, C]`.
    pub fn apply(&self, img: &Image8, file: &Path) -> Result<Tensor> {
        let img = match self.resize {
            None => img.clone(),
            Some(Resize::Exact { height, width }) => resize(img, width, height, self.filter),
            Some(Resize::ShortSide(n)) => {
                let short = img.width.min(img.height) as f64;
                let side = |len: usize| {
                    ((len as f64 * (n as f64 / short)).round_ties_even() as usize).max(1)
                };
                resize(img, side(img.width), side(img.height), self.filter)
            }
        };
        let img = match self.crop {
            None => img,
            Some((h, w)) => {
                if h > img.height || w > img.width {
                    return Err(Error::Input(format!(
                        "{}: crop {h}x{w} is larger than the image ({}x{} after resizing)",
                        file.display(),
                        img.height,
                        img.width
                    )));
                }
                img.crop((img.height - h) / 2, (img.width - w) / 2, h, w)
            }
        };
        let c = self.channels.count();
        let pick = |list: &[f32], ch: usize| if list.len() == 1 { list[0] } else { list[ch] };
        let source_channel = |ch: usize| match self.channels {
            Channels::Bgr => 2 - ch,
            _ => ch,
        };
        let (h, w) = (img.height, img.width);
        let value = |y: usize, x: usize, ch: usize| {
            let p = img.data[(y * w + x) * img.channels + source_channel(ch)];
            (f32::from(p) * self.scale - pick(&self.mean, ch)) / pick(&self.std, ch)
        };
        let array: Array3<f32> = match self.layout {
            Layout::Nchw => Array3::from_shape_fn((c, h, w), |(ch, y, x)| value(y, x, ch)),
            Layout::Nhwc => Array3::from_shape_fn((h, w, c), |(y, x, ch)| value(y, x, ch)),
        };
        Ok(Tensor::F32(array.into_dyn()))
    }
}

fn bad(origin: &Path, msg: String) -> Error {
    Error::Input(format!("{}: preprocess spec: {msg}", origin.display()))
}

/// `N` or `HxW` (each at least 1).
fn parse_size(text: &str) -> Option<(usize, Option<usize>)> {
    let positive = |s: &str| s.trim().parse::<usize>().ok().filter(|&n| n > 0);
    match text.split_once(['x', 'X']) {
        Some((h, w)) => Some((positive(h)?, Some(positive(w)?))),
        None => Some((positive(text)?, None)),
    }
}

/// Decodes a PNG or JPEG file to 8-bit RGB, or to luma for `gray`.
pub fn decode_image(path: &Path, gray: bool) -> Result<Image8> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let fail = |msg: String| Error::Input(format!("{}: {msg}", path.display()));
    // The decoders are fuzzed, but a panic on a hostile file must still be an error.
    let decoded = std::panic::catch_unwind(|| {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            decode_png(&bytes)
        } else if bytes.starts_with(&[0xff, 0xd8]) {
            decode_jpeg(&bytes)
        } else {
            Err("not a PNG or JPEG file".to_string())
        }
    })
    .unwrap_or_else(|_| Err("the image decoder failed on this file".to_string()))
    .map_err(fail)?;
    let (width, height, channels, data) = decoded;
    let pixels = width * height;
    if !gray && channels == 3 {
        return Ok(Image8 {
            width,
            height,
            channels,
            data,
        });
    }
    let rgb = |i: usize| -> [u8; 3] {
        match channels {
            1 | 2 => [data[i * channels]; 3],
            _ => [
                data[i * channels],
                data[i * channels + 1],
                data[i * channels + 2],
            ],
        }
    };
    let data: Vec<u8> = if gray {
        (0..pixels)
            .map(|i| {
                if channels <= 2 {
                    data[i * channels]
                } else {
                    let [r, g, b] = rgb(i).map(u32::from);
                    ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
                }
            })
            .collect()
    } else {
        (0..pixels).flat_map(rgb).collect()
    };
    Ok(Image8 {
        width,
        height,
        channels: if gray { 1 } else { 3 },
        data,
    })
}

type Decoded = (usize, usize, usize, Vec<u8>);

fn decode_png(bytes: &[u8]) -> Result<Decoded, String> {
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(bytes),
        png::Limits { bytes: MAX_BYTES },
    );
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| format!("bad PNG: {e}"))?;
    let (width, height) = (reader.info().width as usize, reader.info().height as usize);
    check_size(width, height)?;
    let size = reader
        .output_buffer_size()
        .ok_or("PNG too large".to_string())?;
    let mut data = vec![0; size];
    let frame = reader
        .next_frame(&mut data)
        .map_err(|e| format!("bad PNG: {e}"))?;
    data.truncate(frame.buffer_size());
    let channels = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("PNG palette was not expanded".into()),
    };
    if frame.bit_depth != png::BitDepth::Eight || data.len() != width * height * channels {
        return Err("PNG did not decode to 8-bit samples".into());
    }
    Ok((width, height, channels, data))
}

fn decode_jpeg(bytes: &[u8]) -> Result<Decoded, String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .set_max_width(MAX_SIDE)
        .set_max_height(MAX_SIDE)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder
        .decode_headers()
        .map_err(|e| format!("bad JPEG: {e:?}"))?;
    let info = decoder.info().ok_or("bad JPEG: no frame header")?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    check_size(width, height)?;
    let data = decoder.decode().map_err(|e| format!("bad JPEG: {e:?}"))?;
    let channels = decoder
        .output_colorspace()
        .map_or(0, |c| c.num_components());
    if !(1..=4).contains(&channels) || data.len() != width * height * channels {
        return Err(format!(
            "JPEG decoded to {} bytes for {width}x{height} with {channels} channels",
            data.len()
        ));
    }
    Ok((width, height, channels, data))
}

fn check_size(width: usize, height: usize) -> Result<(), String> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "image of {width}x{height} pixels; sides must be 1 to {MAX_SIDE}"
        ));
    }
    if width * height * 4 > MAX_BYTES {
        return Err(format!("image of {width}x{height} pixels is too large"));
    }
    Ok(())
}

/// Images in a directory feeding one graph input.
pub(crate) struct Images {
    dir: PathBuf,
    files: Vec<PathBuf>,
    preprocess: Preprocess,
    input: String,
    /// The graph input's rank, when known, to add a batch axis.
    sig: super::InputSig,
}

impl Images {
    pub fn open(
        dir: &Path,
        preprocess: &Preprocess,
        input: Option<&str>,
        signature: &Signature,
    ) -> Result<Images> {
        preprocess.check()?;
        let names = signature.names();
        let sig = match input {
            Some(name) => signature.get(name).ok_or_else(|| {
                Error::Input(format!(
                    "images for input '{name}': the model has no such input; its inputs are: {names}"
                ))
            })?,
            None => match signature.inputs.as_slice() {
                [only] => only,
                _ => {
                    return Err(Error::Input(format!(
                        "images feed one input; name it, the model has several: {names}"
                    )));
                }
            },
        };
        if let Some(other) = signature.inputs.iter().find(|i| i.name != sig.name) {
            return Err(Error::Input(format!(
                "images feed input '{}' only; the model also needs input '{}' ({other})",
                sig.name, other.name
            )));
        }
        if sig.dtype.is_some_and(|d| d != DType::F32) {
            return Err(Error::Input(format!(
                "images are prepared as f32; input '{}' is {sig}",
                sig.name
            )));
        }
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "{}: an image folder must be a directory",
                dir.display()
            )));
        }
        let files = list_dir(dir)?
            .into_iter()
            .filter(|p| {
                p.is_file() && matches!(extension(p).as_deref(), Some("png" | "jpg" | "jpeg"))
            })
            .collect();
        Ok(Images {
            dir: dir.to_path_buf(),
            files,
            preprocess: preprocess.clone(),
            input: sig.name.clone(),
            sig: sig.clone(),
        })
    }
}

impl Source for Images {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn load(&self, index: usize) -> Result<Vec<Entry>> {
        let file = &self.files[index];
        let img = decode_image(file, self.preprocess.channels == Channels::Gray)?;
        let tensor = self.preprocess.apply(&img, file)?;
        let shape = batch_of_one(&self.sig, tensor.shape());
        let tensor = match tensor {
            Tensor::F32(a) => Tensor::F32(
                a.into_shape_with_order(shape)
                    .map_err(|e| Error::Input(format!("{}: {e}", file.display())))?,
            ),
            other => other,
        };
        Ok(vec![Entry {
            input: self.input.clone(),
            tensor,
            file: file.clone(),
        }])
    }

    fn describe(&self) -> String {
        format!("PNG/JPEG images in {}", self.dir.display())
    }

    fn locate(&self, index: usize) -> String {
        self.files[index].display().to_string()
    }
}
