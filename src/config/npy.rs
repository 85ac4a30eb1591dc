//! The `.npy` reader behind the arrays a config names (and the run directory's step files).

use crate::error::RunError;
use ndarray::ArrayD;
use std::io::Read;
use std::path::Path;

/// Read a float64 `.npy` file as an f64 array (see [`read_npy_from`]): the step files of a
/// run directory, masks, potentials and initial densities named in configs.
///
/// # Errors
/// [`RunError::Io`] when the file cannot be opened; [`RunError::Npy`] when it is not a
/// float64 `.npy` array.
///
/// ```rust
/// use jko::config::read_npy;
/// use ndarray::array;
/// use ndarray_npy::WriteNpyExt;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("a.npy");
/// array![[1.0, 2.0], [3.0, 4.0]].write_npy(std::fs::File::create(&path)?)?;
/// let a = read_npy(&path)?;
/// assert_eq!(a.shape(), &[2, 2]);
/// assert_eq!(a[[1, 0]], 3.0);
/// # Ok(())
/// # }
/// ```
pub fn read_npy(path: &Path) -> Result<ArrayD<f64>, RunError> {
    let file = std::fs::File::open(path).map_err(|e| RunError::io(path, e))?;
    read_npy_from(std::io::BufReader::new(file), path)
}

/// Read a float64 `.npy` stream (C or Fortran order) as an f64 array; `origin` names it in
/// errors. The reader behind [`read_npy`], also fed raw bytes by the fuzz targets.
///
/// # Errors
/// [`RunError::Npy`] naming `origin` when the stream is not a float64 `.npy` array.
///
/// ```rust
/// use jko::config::read_npy_from;
/// use ndarray::array;
/// use ndarray_npy::WriteNpyExt;
/// use std::path::Path;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut bytes = Vec::new();
/// array![0.5, 1.5].write_npy(&mut bytes)?;
/// assert_eq!(read_npy_from(&bytes[..], Path::new("memory"))?.sum(), 2.0);
/// let err = read_npy_from(&b"not npy"[..], Path::new("memory")).unwrap_err();
/// assert!(err.to_string().starts_with("memory: not a readable .npy array"));
/// # Ok(())
/// # }
/// ```
///
/// `ndarray_npy` allocates the element count the header claims before reading any data, so a
/// 100-byte file claiming 2^40 values aborts the process. The header and the data present are
/// therefore read first (each bounded), and a header claiming more than the data holds is an
/// error; only then does `ndarray_npy` parse them.
pub fn read_npy_from(mut reader: impl Read, origin: &Path) -> Result<ArrayD<f64>, RunError> {
    let err = |message: String| RunError::Npy {
        path: origin.to_path_buf(),
        message,
    };
    // Preamble: magic (6 bytes), version (2), header length (u16 in version 1, u32 after).
    let mut pre = vec![0u8; 10];
    reader
        .read_exact(&mut pre)
        .map_err(|e| err(format!("{e} (reading the preamble)")))?;
    if pre[..6] != *b"\x93NUMPY" {
        return Err(err("not a .npy file (no \\x93NUMPY magic string)".into()));
    }
    let header_len = match pre[6] {
        1 => usize::from(u16::from_le_bytes([pre[8], pre[9]])),
        2 | 3 => {
            pre.resize(12, 0);
            reader
                .read_exact(&mut pre[10..])
                .map_err(|e| err(format!("{e} (reading the preamble)")))?;
            u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize
        }
        v => return Err(err(format!("unsupported .npy format version {v}"))),
    };
    if header_len > NPY_MAX_HEADER {
        return Err(err(format!(
            "header of {header_len} bytes (at most {NPY_MAX_HEADER} accepted)"
        )));
    }
    let mut header = Vec::with_capacity(header_len);
    (&mut reader)
        .take(header_len as u64)
        .read_to_end(&mut header)
        .map_err(|e| err(e.to_string()))?;
    if header.len() < header_len {
        return Err(err(format!(
            "truncated header: {} of {header_len} bytes",
            header.len()
        )));
    }
    let mut depth = 0usize;
    for b in &header {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > NPY_MAX_NESTING {
            return Err(err(format!(
                "header nests brackets deeper than {NPY_MAX_NESTING}"
            )));
        }
    }
    let claimed = npy_claimed_values(&header).saturating_mul(8);
    let mut data = Vec::new();
    (&mut reader)
        .take(claimed.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| err(e.to_string()))?;
    // Small claims go to ndarray_npy, whose own errors (wrong dtype, missing bytes) say more.
    if claimed > (data.len() as u64).max(1 << 20) {
        return Err(err(format!(
            "the header describes {} float64 values, the file holds {} bytes of data",
            claimed / 8,
            data.len()
        )));
    }
    let stream = pre
        .as_slice()
        .chain(header.as_slice())
        .chain(data.as_slice());
    ndarray_npy::ReadNpyExt::read_npy(stream).map_err(|e: ndarray_npy::ReadNpyError| {
        err(format!("{e} (expected float64, C or Fortran order)"))
    })
}

/// Largest `.npy` header accepted: numpy's own default `max_header_size`. A float64 array's
/// header is ~120 bytes; `ndarray_npy` would allocate whatever length the file claims (4 GiB
/// in 12 bytes of a version-2 file).
pub const NPY_MAX_HEADER: usize = 10_000;

/// Deepest bracket nesting accepted in a `.npy` header (numpy writes 2: the dict and the shape
/// tuple); the header's Python-literal parser recurses once per level.
const NPY_MAX_NESTING: usize = 8;

/// An upper bound on the number of values a `.npy` header describes: the product of every
/// integer literal in it (Python syntax: decimal, 0x/0o/0b, `_` separators; zeros count as 1,
/// unparseable or overflowing ones as `u64::MAX`). A numpy-written header's only integers
/// are the shape, so the bound is exact there.
fn npy_claimed_values(header: &[u8]) -> u64 {
    header
        .split(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .filter(|t| t.first().is_some_and(u8::is_ascii_digit))
        .map(|t| {
            let t: String = t
                .iter()
                .filter(|b| **b != b'_')
                .map(|b| *b as char)
                .collect();
            let lower = t.to_ascii_lowercase();
            let (digits, radix) = match lower.get(..2) {
                Some("0x") => (&lower[2..], 16),
                Some("0o") => (&lower[2..], 8),
                Some("0b") => (&lower[2..], 2),
                _ => (lower.as_str(), 10),
            };
            u64::from_str_radix(digits, radix).map_or(u64::MAX, |v| v.max(1))
        })
        .fold(1u64, u64::saturating_mul)
}
