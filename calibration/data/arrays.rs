//! Samples stored as NumPy arrays (see [`super::DataSpec::Arrays`]).

use std::path::{Path, PathBuf};

use super::{Entry, Signature, Source, extension, list_dir};
use crate::calibration::npy::{NpyFile, read_npy, read_npz};
use crate::ir::error::{Error, Result};

pub(crate) struct Arrays {
    dir: PathBuf,
    layout: Layout,
}

enum Layout {
    /// One directory per sample with `NAME.npy` files.
    Folders(Vec<PathBuf>),
    /// One `.npz` per sample.
    Archives(Vec<PathBuf>),
    /// `NAME.npy` per input, samples along the first axis; `drop_axis` when
    /// a row is one sample (the file has one more dim than the input).
    Stacked {
        files: Vec<(String, NpyFile, bool)>,
        count: usize,
    },
}

impl Arrays {
    pub fn open(dir: &Path, signature: &Signature) -> Result<Arrays> {
        if !dir.is_dir() {
            return Err(Error::Input(format!(
                "{}: calibration arrays must be a directory (of sample folders, .npz files, or one .npy per input)",
                dir.display()
            )));
        }
        let entries = list_dir(dir)?;
        let folders: Vec<PathBuf> = entries.iter().filter(|p| p.is_dir()).cloned().collect();
        let with_ext = |ext: &str| -> Vec<PathBuf> {
            entries
                .iter()
                .filter(|p| p.is_file() && extension(p).as_deref() == Some(ext))
                .cloned()
                .collect()
        };
        let (npz, npy) = (with_ext("npz"), with_ext("npy"));
        let kinds = [!folders.is_empty(), !npz.is_empty(), !npy.is_empty()];
        if kinds.iter().filter(|&&k| k).count() > 1 {
            return Err(Error::Input(format!(
                "{}: mixes sample folders ({}), .npz files ({}) and .npy files ({}); use one layout",
                dir.display(),
                folders.len(),
                npz.len(),
                npy.len()
            )));
        }
        let layout = if !folders.is_empty() {
            Layout::Folders(folders)
        } else if !npz.is_empty() {
            Layout::Archives(npz)
        } else if !npy.is_empty() {
            stacked(dir, npy, signature)?
        } else {
            return Err(Error::Input(format!(
                "{}: no sample folders, .npz or .npy files",
                dir.display()
            )));
        };
        Ok(Arrays {
            dir: dir.to_path_buf(),
            layout,
        })
    }
}

fn stacked(dir: &Path, npy: Vec<PathBuf>, signature: &Signature) -> Result<Layout> {
    let mut files = Vec::with_capacity(npy.len());
    let mut count: Option<(usize, PathBuf)> = None;
    for path in npy {
        let name = stem(&path);
        let Some(sig) = signature.get(&name) else {
            return Err(Error::Input(format!(
                "{}: the model has no input '{name}'; its inputs are: {}",
                path.display(),
                signature.names()
            )));
        };
        let file = NpyFile::open(&path)?;
        let Some(&rows) = file.shape().first() else {
            return Err(Error::Input(format!(
                "input '{name}' from {}: a scalar has no sample axis",
                path.display()
            )));
        };
        let drop_axis = match &sig.dims {
            None => true,
            Some(dims) if dims.len() + 1 == file.shape().len() => true,
            Some(dims) if dims.len() == file.shape().len() => false,
            Some(_) => {
                return Err(Error::Input(format!(
                    "input '{name}' from {}: shape {:?} does not match the model's {sig}: \
                     expected samples along a first axis before the input's dims, or batches of one",
                    path.display(),
                    file.shape()
                )));
            }
        };
        match &count {
            Some((n, first)) if *n != rows => {
                return Err(Error::Input(format!(
                    "input '{name}' from {} has {rows} samples but {} has {n}",
                    path.display(),
                    first.display()
                )));
            }
            Some(_) => {}
            None => count = Some((rows, path.clone())),
        }
        files.push((name, file, drop_axis));
    }
    if let Some(sig) = signature
        .inputs
        .iter()
        .find(|sig| !files.iter().any(|(name, ..)| *name == sig.name))
    {
        return Err(Error::Input(format!(
            "input '{}' ({sig}) has no {}.npy in {}",
            sig.name,
            sig.name,
            dir.display()
        )));
    }
    Ok(Layout::Stacked {
        files,
        count: count.map_or(0, |(n, _)| n),
    })
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Source for Arrays {
    fn len(&self) -> usize {
        match &self.layout {
            Layout::Folders(v) | Layout::Archives(v) => v.len(),
            Layout::Stacked { count, .. } => *count,
        }
    }

    fn load(&self, index: usize) -> Result<Vec<Entry>> {
        match &self.layout {
            Layout::Folders(folders) => {
                let folder = &folders[index];
                let mut entries = Vec::new();
                for path in list_dir(folder)? {
                    if !path.is_file() || extension(&path).as_deref() != Some("npy") {
                        continue;
                    }
                    entries.push(Entry {
                        input: stem(&path),
                        tensor: read_npy(&path)?,
                        file: path,
                    });
                }
                if entries.is_empty() {
                    return Err(Error::Input(format!(
                        "{}: sample folder has no .npy files",
                        folder.display()
                    )));
                }
                Ok(entries)
            }
            Layout::Archives(archives) => {
                let path = &archives[index];
                Ok(read_npz(path)?
                    .into_iter()
                    .map(|(input, tensor)| Entry {
                        file: PathBuf::from(format!("{}/{input}.npy", path.display())),
                        input,
                        tensor,
                    })
                    .collect())
            }
            Layout::Stacked { files, .. } => files
                .iter()
                .map(|(name, file, drop_axis)| {
                    let tensor = if *drop_axis {
                        file.row(index)?
                    } else {
                        file.rows(index, 1)?
                    };
                    Ok(Entry {
                        input: name.clone(),
                        tensor,
                        file: PathBuf::from(format!("{}[{index}]", file.path().display())),
                    })
                })
                .collect(),
        }
    }

    fn describe(&self) -> String {
        let kind = match self.layout {
            Layout::Folders(_) => "sample folders",
            Layout::Archives(_) => ".npz samples",
            Layout::Stacked { .. } => "stacked .npy arrays",
        };
        format!("{kind} in {}", self.dir.display())
    }

    fn locate(&self, index: usize) -> String {
        match &self.layout {
            Layout::Folders(v) | Layout::Archives(v) => v[index].display().to_string(),
            Layout::Stacked { .. } => {
                format!("row {index} of the arrays in {}", self.dir.display())
            }
        }
    }
}
