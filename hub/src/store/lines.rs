//! How a record's original line is kept: as it came, or as a zstd frame compressed with
//! a dictionary the store trained on its first lines.
//!
//! Lines are most of a stored row (about 800 of 1,150 bytes in the bench's records), so
//! they set how many rows a page holds, and with it the writer's work per record:
//! SQLite copied the bench's stored rows 35-40% faster with each line cut to 150 bytes
//! (`INSERT ... SELECT` of 128,585 rows, three rounds). Records of one fleet share
//! their field names and most values, so a dictionary trained on a sample of them
//! shrinks a line about five times where zstd alone, with no history to refer to within
//! one short line, shrank it by less than half.
//!
//! A stored line that begins with zstd's frame magic is such a frame, named by the
//! dictionary's id in its header; anything else is the line itself (a JSON object
//! begins with `{`, never with the magic's first byte). Stores written before keep their
//! lines as they were, and read alike.
use std::{collections::HashMap, io, sync::Arc};

use anyhow::Context as _;
use zstd::{
    dict::{DecoderDictionary, EncoderDictionary},
    zstd_safe,
};

use super::db::{Db, args};
use crate::ingest::MAX_LINE_BYTES;

/// Lines a dictionary is trained on: enough for the trainer to find what they share.
pub const TRAINING_LINES: usize = 2_000;
/// Longer lines are not sampled: a stream may send lines of up to 1 MiB, and 2,000 of
/// them would hold 2 GiB until the training. Records are about 1 KiB.
pub const MAX_SAMPLE_BYTES: usize = 16 << 10;
/// The dictionary's size: zstd's default for its trainer.
const DICTIONARY_BYTES: usize = 110 << 10;
/// zstd's fastest level: the lines are compressed on the thread that parses them, and
/// higher levels gained little on lines this short.
const LEVEL: i32 = 1;
const MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();

/// A trained dictionary, ready to compress with.
pub struct Dictionary {
    id: u32,
    bytes: Vec<u8>,
    encoder: EncoderDictionary<'static>,
}

impl Dictionary {
    /// Trains one on `samples` (whole lines).
    pub fn train(samples: &[Vec<u8>]) -> anyhow::Result<Arc<Self>> {
        let bytes = zstd::dict::from_samples(samples, DICTIONARY_BYTES)
            .context("training the stored lines' dictionary")?;
        Self::from_bytes(bytes)
    }

    /// One read back from the store.
    pub fn from_bytes(bytes: Vec<u8>) -> anyhow::Result<Arc<Self>> {
        let id = zstd_safe::get_dict_id_from_dict(&bytes)
            .context("a stored lines' dictionary without an id")?
            .get();
        let encoder = EncoderDictionary::copy(&bytes, LEVEL);
        Ok(Arc::new(Self { id, bytes, encoder }))
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A compressor for one thread.
    pub fn compressor(&self) -> io::Result<Compressor<'_>> {
        Ok(Compressor(
            zstd::bulk::Compressor::with_prepared_dictionary(&self.encoder)?,
        ))
    }
}

pub struct Compressor<'d>(zstd::bulk::Compressor<'d>);

impl Compressor<'_> {
    /// `line` as it is to be stored: compressed, unless that does not make it shorter.
    pub fn compress(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        self.0
            .compress(line)
            .ok()
            .filter(|frame| frame.len() < line.len())
    }
}

/// Lines compressed with one dictionary before a worse fit may replace it: training
/// takes about 0.1 s, so a stream no dictionary fits costs at most that per 10,000 lines.
const RETRAIN_AFTER_LINES: u64 = 10_000;
/// Lines whose sizes are summed before they are judged: a live stream's batches are
/// small.
const FIT_WINDOW_LINES: u64 = 2_000;
/// How much worse than when it was new the dictionary may compress before another is
/// trained: a share of the lines' size 1.5 times what it was.
const WORSE: f64 = 1.5;

/// How well the dictionary in use still fits the lines. It was trained on a store's
/// first lines, and a fleet's lines change: new services, new fields, new clients.
/// The share of their size the lines are stored at, over its first window of
/// [`FIT_WINDOW_LINES`], is its measure; a later window that is [`WORSE`] asks for a
/// new dictionary, trained on the lines as they are now.
#[derive(Debug, Default)]
pub struct Fit {
    /// The stored share of the first window.
    baseline: Option<f64>,
    /// (lines, their bytes, the bytes stored) of the window being summed.
    window: (u64, u64, u64),
    /// Lines compressed with this dictionary.
    lines: u64,
}

/// A dictionary that no longer fits: the stored shares when it was new and now.
#[derive(Debug, PartialEq)]
pub struct Worn {
    pub was: f64,
    pub now: f64,
}

impl Fit {
    /// Counts a batch's lines given to the compressor: how many, their bytes and the
    /// bytes stored. `Some` once the dictionary should be replaced.
    pub fn observe(&mut self, lines: u64, bytes: u64, stored: u64) -> Option<Worn> {
        self.lines += lines;
        let window = &mut self.window;
        *window = (window.0 + lines, window.1 + bytes, window.2 + stored);
        if window.0 < FIT_WINDOW_LINES || window.1 == 0 {
            return None;
        }
        let now = window.2 as f64 / window.1 as f64;
        *window = (0, 0, 0);
        let was = *self.baseline.get_or_insert(now);
        (self.lines >= RETRAIN_AFTER_LINES && now > was * WORSE).then_some(Worn { was, now })
    }
}

/// The newest dictionary in the store, to compress with.
pub fn newest(db: &mut Db) -> anyhow::Result<Option<Arc<Dictionary>>> {
    db.query_opt(
        "SELECT dict FROM line_dictionaries ORDER BY created_ns DESC LIMIT 1",
        args![],
    )?
    .map(|row| Dictionary::from_bytes(row.get(0)?))
    .transpose()
}

/// Keeps `dictionary` in the store (in the caller's transaction, with the first lines
/// compressed with it).
pub fn save(db: &mut Db, dictionary: &Dictionary, created_ns: i64) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO line_dictionaries (id, created_ns, dict) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO NOTHING",
        args![
            i64::from(dictionary.id()),
            created_ns,
            dictionary.bytes().to_vec()
        ],
    )?;
    Ok(())
}

/// Turns stored lines back into the lines the sensors wrote, loading the store's
/// dictionaries the first time a compressed one comes.
#[derive(Default)]
pub struct Originals {
    dictionaries: Option<HashMap<u32, DecoderDictionary<'static>>>,
    /// One context for every line: making one per line tripled the time of exporting
    /// 100,000 lines.
    context: zstd_safe::DCtx<'static>,
}

impl Originals {
    pub fn original(&mut self, db: &mut Db, stored: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        if !stored.starts_with(&MAGIC) {
            return Ok(stored);
        }
        let id = zstd_safe::get_dict_id_from_frame(&stored)
            .context("a stored line compressed without a dictionary id")?
            .get();
        let dictionaries = match &mut self.dictionaries {
            Some(loaded) => loaded,
            None => self.dictionaries.insert(load(db)?),
        };
        let dictionary = dictionaries
            .get(&id)
            .with_context(|| format!("the store has no dictionary {id} for a stored line"))?;
        let size = match zstd_safe::get_frame_content_size(&stored) {
            // No frame holds a longer line than the hub accepts.
            Ok(Some(size)) if size <= MAX_LINE_BYTES as u64 => size as usize,
            _ => anyhow::bail!("a stored line's frame does not say a size up to 1 MiB"),
        };
        let mut line = Vec::with_capacity(size);
        self.context
            .decompress_using_ddict(&mut line, &stored, dictionary.as_ddict())
            .map_err(|code| {
                anyhow::anyhow!(
                    "decompressing a stored line: {}",
                    zstd_safe::get_error_name(code)
                )
            })?;
        Ok(line)
    }
}

fn load(db: &mut Db) -> anyhow::Result<HashMap<u32, DecoderDictionary<'static>>> {
    db.query("SELECT id, dict FROM line_dictionaries", args![])?
        .iter()
        .map(|row| {
            let id: i64 = row.get(0)?;
            let bytes: Vec<u8> = row.get(1)?;
            Ok((
                u32::try_from(id).context("a dictionary id out of range")?,
                DecoderDictionary::copy(&bytes),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Vec<u8> {
        format!(
            r#"{{"timestamp":"2026-12-06T10:00:{:02}.{n:09}Z","http.request.method":"GET","url.path":"/orders/{n}","client.address":"203.0.113.{}","user.name":"user{}","audit.kind":"access","audit.stream":"web1","audit.seq":{n}}}"#,
            n % 60,
            n % 250,
            n % 37
        )
        .into_bytes()
    }

    /// Judged per window of lines, against the first window, and only once the
    /// dictionary has served enough lines.
    #[test]
    fn a_dictionary_is_worn_when_lines_store_half_again_larger_than_when_it_was_new() {
        let mut fit = Fit::default();
        // Small batches add up to the first window: lines stored at 20% of their size.
        for _ in 0..19 {
            assert_eq!(fit.observe(100, 80_000, 16_000), None);
        }
        assert_eq!(fit.observe(100, 80_000, 16_000), None);
        // 29% is not yet worse enough.
        assert_eq!(fit.observe(2_000, 1_000_000, 290_000), None);
        // 40% is, but only 8,000 lines were compressed with it so far.
        assert_eq!(fit.observe(4_000, 1_000_000, 400_000), None);
        assert_eq!(
            fit.observe(2_000, 1_000_000, 400_000),
            Some(Worn { was: 0.2, now: 0.4 })
        );
    }

    #[test]
    fn a_compressed_line_comes_back_byte_for_byte_and_a_raw_one_as_it_is() {
        let samples: Vec<Vec<u8>> = (0..TRAINING_LINES).map(line).collect();
        let dictionary = Dictionary::train(&samples).unwrap();
        let mut compressor = dictionary.compressor().unwrap();
        let original = line(123_456);
        let frame = compressor.compress(&original).unwrap();
        assert!(frame.starts_with(&MAGIC));
        assert!(
            frame.len() * 2 < original.len(),
            "{} of {} bytes",
            frame.len(),
            original.len()
        );
        let mut originals = Originals {
            dictionaries: Some(HashMap::from([(
                dictionary.id(),
                DecoderDictionary::copy(dictionary.bytes()),
            )])),
            ..Originals::default()
        };
        let mut db = Db::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        assert_eq!(originals.original(&mut db, frame).unwrap(), original);
        assert_eq!(
            originals.original(&mut db, original.clone()).unwrap(),
            original
        );
    }
}
