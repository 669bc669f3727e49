//! Compressing one rotated file so that a crash at any point leaves either the plain file
//! or a complete compressed one: write to a temporary name, fsync, rename, then remove the
//! plain file.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Write},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

use super::{
    naming,
    settings::{Compression, Mode},
};

/// Compresses `plain` into `plain.gz` / `plain.zst` (mode `mode`) and removes `plain`.
/// Returns `Ok(false)` when `compression` is `None`. On error the plain file is kept and
/// the temporary one removed.
pub fn compress(plain: &Path, compression: Compression, mode: Mode) -> io::Result<bool> {
    let Some((done, temp)) = naming::compressed_paths(plain, compression) else {
        return Ok(false);
    };
    let result = write_compressed(plain, &temp, compression, mode)
        .and_then(|()| fs::rename(&temp, &done))
        .and_then(|()| sync_directory(plain));
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    fs::remove_file(plain)?;
    sync_directory(plain)?;
    Ok(true)
}

fn write_compressed(
    plain: &Path,
    temp: &Path,
    compression: Compression,
    mode: Mode,
) -> io::Result<()> {
    let mut input = BufReader::with_capacity(1 << 16, File::open(plain)?);
    let output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode.bits())
        .open(temp)?;
    output.set_permissions(fs::Permissions::from_mode(mode.bits()))?;
    let output = match compression {
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
            io::copy(&mut input, &mut encoder)?;
            encoder.finish()?
        }
        Compression::Zstd => {
            let mut encoder = zstd::Encoder::new(output, zstd::DEFAULT_COMPRESSION_LEVEL)?;
            io::copy(&mut input, &mut encoder)?;
            encoder.finish()?
        }
        Compression::None => return Ok(()),
    };
    let mut output = output;
    output.flush()?;
    output.sync_all()
}

/// Makes renames and removals in the directory of `path` durable.
pub fn sync_directory(path: &Path) -> io::Result<()> {
    File::open(naming::directory(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::{io::Read, os::unix::fs::MetadataExt as _};

    use super::*;

    fn decompress(path: &Path, compression: Compression) -> String {
        let file = File::open(path).unwrap();
        let mut text = String::new();
        match compression {
            Compression::Gzip => flate2::read::GzDecoder::new(file).read_to_string(&mut text),
            Compression::Zstd => zstd::Decoder::new(file).unwrap().read_to_string(&mut text),
            Compression::None => unreachable!(),
        }
        .unwrap();
        text
    }

    #[test]
    fn round_trip_replaces_the_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (0..5000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
        for compression in [Compression::Gzip, Compression::Zstd] {
            let plain = dir.path().join("a.jsonl.20261122T221500.123Z");
            fs::write(&plain, &lines).unwrap();
            assert!(compress(&plain, compression, "0640".parse().unwrap()).unwrap());
            assert!(!plain.exists());
            let (done, temp) = naming::compressed_paths(&plain, compression).unwrap();
            assert!(!temp.exists());
            assert_eq!(fs::metadata(&done).unwrap().mode() & 0o777, 0o640);
            assert_eq!(decompress(&done, compression), lines);
        }
    }

    #[test]
    fn none_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.jsonl.20261122T221500.123Z");
        fs::write(&plain, "{}\n").unwrap();
        assert!(!compress(&plain, Compression::None, Mode::default()).unwrap());
        assert!(plain.exists());
    }

    #[test]
    fn a_missing_input_is_an_error_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.jsonl.20261122T221500.123Z");
        assert!(compress(&plain, Compression::Gzip, Mode::default()).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
