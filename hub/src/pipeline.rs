//! One batch of lines through verify, enrich and store, committed as one transaction.
//! Both `import` and `serve` drive it; the live feed and the counters read its outcome.
//! The detections run beside the writer, in the batch's transaction; or, for a fleet
//! of hubs sharing a PostgreSQL store, in one hub for all ([`Leader`]), fed by each
//! batch ([`feed`]).
mod feed;
mod lead;

pub use lead::Leader;

use std::{
    cell::RefCell,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

use tracer_audit::verify::parse::Sealed;

use crate::{
    detect::{Alerting, Detector, Observation},
    enrich::{Enricher, Enrichment, RequestView},
    ingest::{Following, Line, Next, Origin, Pulled, record},
    query::records::Row,
    store::{
        Batch, Derived, Entry, Learned, Refused, RollupRows, Rollups, Writer,
        lines::{Compressor, Dictionary, Fit, MAX_SAMPLE_BYTES, TRAINING_LINES},
    },
    verify::{self, Chains, Event, EventKind, Link, Restoration, Verdict, keys::Keys},
    when::{format_ns, now_ns},
};

/// What one batch did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Lines of this batch stored.
    pub stored: u64,
    /// The sensor's own lines stored in place of forged ones that a signed checkpoint
    /// named, from the conflicts (kept in this batch or an earlier one): not in
    /// `stored`, so each line given is counted once there, and here again if restored.
    pub restored: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    /// Lines older than the retention that were deleted already: not stored again.
    pub expired: u64,
    pub rejected: u64,
    pub events: Vec<Event>,
    /// Ids of the alerts opened or updated.
    pub alerts: Vec<i64>,
    /// The access records stored, as lists show them, for the live feed.
    pub rows: Vec<Row>,
}

impl Outcome {
    pub fn add(&mut self, other: Outcome) {
        self.stored += other.stored;
        self.restored += other.restored;
        self.duplicates += other.duplicates;
        self.conflicts += other.conflicts;
        self.expired += other.expired;
        self.rejected += other.rejected;
        self.events.extend(other.events);
        self.alerts.extend(other.alerts);
        self.rows.extend(other.rows);
    }
}

/// What one retention step deleted.
#[derive(Debug, Default)]
pub struct Expiry {
    pub lines: u64,
    /// Rollup buckets, alerts, integrity events, loss totals and rejected-line notes.
    pub other_rows: u64,
    /// Nothing older than the cutoff is left.
    pub done: bool,
}

/// Builds the detector from what the store holds.
pub type DetectorFromStore = Box<dyn Fn(&mut Writer) -> anyhow::Result<Detector> + Send>;

pub struct Pipeline {
    keys: Keys,
    chains: Chains,
    enricher: Enricher,
    writer: Writer,
    /// `None` when the fleet's leader runs the detections ([`Pipeline::feed_detections`]).
    detector: Option<Detector>,
    /// The newest record time ingested.
    newest_ns: i64,
    /// Rebuilds the detector from the store after a failed batch.
    detector_from_store: DetectorFromStore,
    /// Lines kept to train the stored lines' dictionary on, until there are enough.
    samples: Vec<Vec<u8>>,
    /// How well the dictionary in use fits the lines.
    fit: Fit,
    /// The dictionary no longer fits: the next lines train another.
    retraining: bool,
    /// The first lines of the batch that comes next, taken apart while the last one
    /// was committed ([`Pipeline::ingest_before`]).
    ahead: Ahead,
    /// Whether each batch's outcome lists its access records as rows (the live feed).
    rows: bool,
}

/// Lines taken apart ahead of their batch, and which lines they are (each one's origin
/// and length), checked against the batch they are offered to.
#[derive(Default)]
struct Ahead {
    prepared: Vec<Prepared>,
    taken_from: Vec<(Origin, Option<usize>)>,
    /// Whether they were compressed with a dictionary, so their sizes judge its fit.
    compressed: bool,
}

impl Ahead {
    fn push(&mut self, line: &Line, prepared: Prepared) {
        self.prepared.push(prepared);
        self.taken_from.push(identity(line));
    }

    /// The prepared lines `lines` begins with, when it begins with the lines they were
    /// taken from (none otherwise). A batch may end before them: the rest wait for the
    /// next.
    fn take_for(&mut self, lines: &[&Line]) -> Self {
        let fits = self
            .taken_from
            .iter()
            .zip(lines)
            .all(|(taken, line)| *taken == identity(line));
        if !fits {
            *self = Self::default();
            return Self::default();
        }
        let n = self.prepared.len().min(lines.len());
        let rest = Self {
            prepared: self.prepared.split_off(n),
            taken_from: self.taken_from.split_off(n),
            compressed: self.compressed,
        };
        std::mem::replace(self, rest)
    }

    /// `more`, taken apart after these.
    fn append(&mut self, mut more: Self) {
        self.compressed = if self.prepared.is_empty() {
            more.compressed
        } else {
            self.compressed && more.compressed
        };
        self.prepared.append(&mut more.prepared);
        self.taken_from.append(&mut more.taken_from);
    }
}

/// A line's origin and length: which line a line taken apart ahead was.
fn identity(line: &Line) -> (Origin, Option<usize>) {
    (line.origin.clone(), line.bytes.as_ref().ok().map(Vec::len))
}

impl Pipeline {
    /// `detector` is called now and after a failed batch, to resume from what the
    /// store holds.
    pub fn new(
        keys: Keys,
        enricher: Enricher,
        mut writer: Writer,
        detector: DetectorFromStore,
    ) -> anyhow::Result<Self> {
        let chains = Chains::new(writer.streams()?);
        Ok(Self {
            keys,
            chains,
            enricher,
            detector: Some(detector(&mut writer)?),
            newest_ns: 0,
            detector_from_store: detector,
            writer,
            samples: Vec::new(),
            fit: Fit::default(),
            retraining: false,
            ahead: Ahead::default(),
            rows: false,
        })
    }

    /// From now on each batch appends what its detections would meet to the store's
    /// detection feed, for the fleet's [`Leader`], instead of running them: hubs that
    /// share a consumer each see a share of every stream, so rules that count would
    /// count per hub.
    pub fn feed_detections(&mut self) {
        self.detector = None;
    }

    /// Whether outcomes list the stored access records as rows, for the live feed;
    /// building them is wasted where nobody reads them.
    pub fn keep_rows(&mut self, rows: bool) {
        self.rows = rows;
    }

    /// See [`Writer::analyze`].
    pub fn analyze(&mut self) -> anyhow::Result<()> {
        self.writer.analyze()
    }

    /// The store keeps where a NATS consumer being started again starts
    /// (`ingest::nats::Restarts`).
    pub fn writer(&mut self) -> &mut Writer {
        &mut self.writer
    }

    /// Reloads the enrichment's files that changed; what it says. Lines taken apart
    /// ahead were enriched with what a reload changed: they are taken apart again.
    pub fn refresh_enrichment(&mut self) -> Vec<String> {
        let messages = self.enricher.refresh();
        if !messages.is_empty() {
            self.ahead = Ahead::default();
        }
        messages
    }

    /// Verifies, enriches and stores `lines` in one transaction. On error nothing of
    /// the batch is stored and the chain state is read back from the store, so the
    /// same lines can be given again.
    #[cfg(test)]
    pub fn ingest<'a>(
        &mut self,
        lines: impl IntoIterator<Item = &'a Line>,
    ) -> anyhow::Result<Outcome> {
        self.ingest_before(lines, &mut Following(&[]))
    }

    /// [`Self::ingest`], and while the batch commits (the writer's work alone), the
    /// lines `next` has by then are taken apart on the core the commit leaves idle: the
    /// next call, given them first, starts with them. `import` of 200,000 records had
    /// one core idle for a third of its time, one commit per 50,000 lines, and `serve`
    /// draining NATS a quarter.
    pub fn ingest_before<'a>(
        &mut self,
        lines: impl IntoIterator<Item = &'a Line>,
        next: &mut dyn Next,
    ) -> anyhow::Result<Outcome> {
        let lines: Vec<&Line> = lines.into_iter().collect();
        let result = self.try_ingest(lines.iter().copied(), next);
        let Err(e) = result else {
            return result;
        };
        self.ahead = Ahead::default();
        self.resume_from_store()?;
        match e.chain().find_map(|c| c.downcast_ref::<Refused>()) {
            Some(refused) => self.halve(&lines, &refused.to_string()),
            None => Err(e),
        }
    }

    /// The store refused a value of one of `lines` (`why`), and would refuse it in every
    /// batch it is in, stalling the stream behind it: the halves go in apart, down to
    /// the line, which is refused alone and kept visible among the rejected lines.
    fn halve(&mut self, lines: &[&Line], why: &str) -> anyhow::Result<Outcome> {
        if let [line] = lines {
            let mut batch = self.writer.batch()?;
            let (bytes, len) = match &line.bytes {
                Ok(bytes) => (bytes.as_slice(), bytes.len() as u64),
                Err(too_long) => (&[][..], too_long.bytes),
            };
            batch.reject(
                &line.origin,
                &format!("the store refused it: {why}"),
                bytes,
                len,
            )?;
            batch.commit(std::iter::empty())?;
            return Ok(Outcome {
                rejected: 1,
                ..Outcome::default()
            });
        }
        let (first, second) = lines.split_at(lines.len() / 2);
        let mut outcome = self.ingest_before(first.iter().copied(), &mut Following(&[]))?;
        outcome.add(self.ingest_before(second.iter().copied(), &mut Following(&[]))?);
        Ok(outcome)
    }

    pub fn newest_ns(&self) -> i64 {
        self.newest_ns
    }

    fn resume_from_store(&mut self) -> anyhow::Result<()> {
        self.chains = Chains::new(self.writer.streams()?);
        if self.detector.is_some() {
            self.detector = Some((self.detector_from_store)(&mut self.writer)?);
        }
        Ok(())
    }

    /// Runs the clock-driven detections (silent sensors) at `now_ns` and stores what
    /// they find; returns the alerts opened or updated.
    pub fn tick(&mut self, now_ns: i64) -> anyhow::Result<Vec<i64>> {
        let Some(detector) = &mut self.detector else {
            return Ok(Vec::new());
        };
        let alertings = detector.tick(now_ns);
        if alertings.is_empty() {
            return Ok(Vec::new());
        }
        let result = (|| {
            let mut batch = self.writer.batch()?;
            let mut ids = Vec::new();
            for alerting in &alertings {
                ids.push(batch.alert(&alerting.new_alert())?);
            }
            detector.save(&mut batch)?;
            batch.commit(std::iter::empty())?;
            Ok(ids)
        })();
        if result.is_err() {
            self.resume_from_store()?;
        }
        result
    }

    /// One retention step, one transaction: drops the oldest day that ends before
    /// `cutoff_ns`; once none is left, deletes at most `limit` older lines of the day
    /// the cutoff falls in; once none of those is left either, the older rollups,
    /// alerts and notes. The chain state remembers what went, so those lines are not
    /// stored again. Call it until [`Expiry::done`].
    pub fn expire(&mut self, cutoff_ns: i64, limit: usize) -> anyhow::Result<Expiry> {
        let result = (|| {
            let mut batch = self.writer.batch()?;
            let (gone, done) = match batch.expire_day(cutoff_ns)? {
                Some(gone) => (gone, false),
                None => {
                    let gone = batch.expire_lines(cutoff_ns, limit)?;
                    let lines: u64 = gone.iter().map(|g| g.lines).sum();
                    (gone, lines < limit as u64)
                }
            };
            let other_rows = if done {
                batch.expire_rest(cutoff_ns)?
            } else {
                0
            };
            for lines in &gone {
                if let Some(state) = batch.claim_stream(&lines.stream)? {
                    self.chains.reload(&lines.stream, state);
                }
                self.chains
                    .expire(&lines.stream, lines.through_seq, lines.lines, cutoff_ns);
            }
            let streams = self.chains.streams();
            batch.commit(
                gone.iter()
                    .filter_map(|g| streams.get_key_value(g.stream.as_str())),
            )?;
            Ok(Expiry {
                lines: gone.iter().map(|g| g.lines).sum(),
                other_rows,
                done,
            })
        })();
        if result.is_err() {
            self.resume_from_store()?;
        }
        result
    }

    fn try_ingest<'a>(
        &mut self,
        lines: impl IntoIterator<Item = &'a Line>,
        next: &mut dyn Next,
    ) -> anyhow::Result<Outcome> {
        let lines: Vec<&Line> = lines.into_iter().collect();
        let ahead = self.ahead.take_for(&lines);
        let (dictionary, trained) = match self.writer.dictionary() {
            Some(dictionary) if !self.retraining => (Some(dictionary), None),
            current => {
                let trained = self.train(&lines);
                (trained.clone().or(current), trained)
            }
        };
        let mut batch = self.writer.batch()?;
        if let Some(trained) = &trained {
            batch.save_dictionary(trained, now_ns())?;
        }
        let Self {
            keys,
            chains,
            enricher,
            detector,
            newest_ns,
            rows,
            ..
        } = self;
        let mut sizes = Sizes::default();
        // Lines compressed with the dictionary this batch replaces say nothing of the
        // new one's fit.
        if ahead.compressed && trained.is_none() {
            sizes.count(&ahead.prepared);
        }
        let first_unprepared = ahead.prepared.len();
        // Three threads: one takes lines apart (JSON, the line's hash, a checkpoint's
        // signature, the enrichment and the row's worked-out values), this one links
        // and stores them, one runs the detections on what was stored. The store is
        // the slowest stage; the other two no longer add to its time (`import` of
        // 200,000 records: 21% less time, 3 interleaved runs). Alerts are grouped
        // after the records are written, in the order the detections raised them.
        // Once this batch's lines are stored, the first thread takes `next` apart
        // until the commit is done: only then, because while the lines are stored the
        // three threads keep both cores busy, and work ahead would only slow the
        // writer.
        let committed = AtomicBool::new(false);
        let (outcome, prepared_sizes, ahead_of_next) = std::thread::scope(|scope| {
            let (prepared_tx, prepared_rx) = mpsc::sync_channel(PREPARED_QUEUE);
            let (stored_tx, stored_rx) = mpsc::channel::<()>();
            let enricher = &*enricher;
            let keys = &*keys;
            let committed = &committed;
            let rest = &lines[first_unprepared..];
            let preparing = scope.spawn(move || {
                // A compressor that cannot be made leaves the lines as they came.
                let mut compressor = dictionary.as_deref().and_then(|d| d.compressor().ok());
                let mut sizes = Sizes::default();
                for chunk in rest.chunks(PREPARE_CHUNK) {
                    let prepared: Vec<Prepared> = chunk
                        .iter()
                        .map(|line| prepare(line, keys, enricher, compressor.as_mut()))
                        .collect();
                    if compressor.is_some() {
                        sizes.count(&prepared);
                    }
                    if prepared_tx.send(prepared).is_err() {
                        // The writer failed; the batch is abandoned.
                        return (sizes, Ahead::default());
                    }
                }
                drop(prepared_tx);
                let mut ahead = Ahead {
                    compressed: compressor.is_some(),
                    ..Ahead::default()
                };
                // A batch that failed drops the sender: nothing is taken apart ahead.
                if stored_rx.recv().is_err() {
                    return (sizes, ahead);
                }
                while !committed.load(Ordering::Relaxed) && ahead.prepared.len() < MAX_AHEAD {
                    let pulled = next.pull(&mut |line| {
                        ahead.push(line, prepare(line, keys, enricher, compressor.as_mut()));
                    });
                    match pulled {
                        Pulled::Lines => {}
                        Pulled::NotYet => std::thread::sleep(NEXT_POLL),
                        Pulled::Done => break,
                    }
                }
                (sizes, ahead)
            });
            // A scope of its own: the detector is the commit's again once it ends.
            // `store` takes the receiver: a failed batch drops it, which stops the
            // thread taking its lines apart instead of leaving it blocked on a send.
            let (stored, detected) = std::thread::scope(|inner| {
                let (found_tx, found_rx) = mpsc::channel();
                let detecting_on = detector.as_mut();
                let feeding = detecting_on.is_none();
                let detecting = inner.spawn(move || detect(detecting_on, found_rx));
                let stored = store(
                    lines.iter().copied().zip(
                        ahead
                            .prepared
                            .into_iter()
                            .chain(prepared_rx.into_iter().flatten()),
                    ),
                    keys,
                    enricher,
                    chains,
                    &mut batch,
                    newest_ns,
                    *rows,
                    &found_tx,
                    feeding,
                );
                drop(found_tx);
                (stored, join(detecting))
            });
            let outcome = stored.and_then(|written| {
                let detected = detected?;
                let _ = stored_tx.send(());
                commit(
                    batch,
                    written,
                    detected,
                    chains,
                    detector.as_mut(),
                    *newest_ns,
                )
            });
            drop(stored_tx);
            committed.store(true, Ordering::Relaxed);
            let (sizes, ahead) = join(preparing);
            (outcome, sizes, ahead)
        });
        let outcome = outcome?;
        self.ahead.append(ahead_of_next);
        sizes.add(prepared_sizes);
        if let Some(trained) = trained {
            self.writer.adopt(trained);
            self.fit = Fit::default();
            self.retraining = false;
        }
        // Once asked for, a new dictionary waits for its samples; judging the old one
        // again meanwhile would only say so again.
        if !self.retraining
            && let Some(worn) = self.fit.observe(sizes.lines, sizes.bytes, sizes.stored)
        {
            eprintln!(
                "tracer-hub: the stored lines' dictionary no longer fits the lines: they are stored at {:.0}% of their size, {:.0}% when it was new; the next {TRAINING_LINES} lines train another",
                worn.now * 100.0,
                worn.was * 100.0
            );
            self.retraining = true;
        }
        Ok(outcome)
    }

    /// A dictionary for the stored lines, once [`TRAINING_LINES`] lines of at most
    /// [`MAX_SAMPLE_BYTES`] have come (this batch's among them). Should training fail,
    /// lines are stored as before (as they came, or with the dictionary in use) and the
    /// next ones are sampled for another try.
    fn train(&mut self, lines: &[&Line]) -> Option<Arc<Dictionary>> {
        let wanted = TRAINING_LINES - self.samples.len();
        self.samples.extend(
            lines
                .iter()
                .filter_map(|line| line.bytes.as_ref().ok())
                // Junk (not a JSON object) would only teach the dictionary junk.
                .filter(|bytes| bytes.len() <= MAX_SAMPLE_BYTES && bytes.first() == Some(&b'{'))
                .take(wanted)
                .cloned(),
        );
        if self.samples.len() < TRAINING_LINES {
            return None;
        }
        Dictionary::train(&std::mem::take(&mut self.samples)).ok()
    }
}

/// Lines taken apart per message to the writer: few enough that it starts at once,
/// many enough that the channel costs nothing per line.
const PREPARE_CHUNK: usize = 256;
/// Chunks taken apart ahead of the writer.
const PREPARED_QUEUE: usize = 16;
/// Lines of the next batch taken apart while one commits, at most: a batch of `import`
/// and, by default, of `serve` (about 100 MB more held meanwhile).
const MAX_AHEAD: usize = 50_000;
/// How often lines of the next batch are looked for while a commit runs and none came.
const NEXT_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// The lines of a batch given to the compressor: how many, their bytes, and the bytes
/// stored for them.
#[derive(Default)]
struct Sizes {
    lines: u64,
    bytes: u64,
    stored: u64,
}

impl Sizes {
    fn count(&mut self, prepared: &[Prepared]) {
        for prepared in prepared {
            if let Prepared::Parsed {
                bytes, compressed, ..
            } = prepared
            {
                self.lines += 1;
                self.bytes += *bytes as u64;
                self.stored += compressed.as_ref().map_or(*bytes, Vec::len) as u64;
            }
        }
    }

    fn add(&mut self, other: Sizes) {
        self.lines += other.lines;
        self.bytes += other.bytes;
        self.stored += other.stored;
    }
}

/// One line taken apart, before any chain state is consulted. It holds nothing of the
/// line, so lines can be taken apart before their batch comes; the writer pairs each
/// with its line again, in order.
enum Prepared {
    /// Longer than the hub accepts: nothing was read.
    TooLong,
    Malformed(record::Malformed),
    Parsed {
        /// The line's length.
        bytes: usize,
        /// The line compressed as it is to be stored, when that is shorter.
        compressed: Option<Vec<u8>>,
        sealed: Box<Result<Sealed, String>>,
        parsed: Box<Parsed>,
    },
}

/// A line's fields and what the hub adds to them. Enriched before its place in the
/// chain is known: the rare line that turns out to be stored already was enriched for
/// nothing.
struct Parsed {
    fields: record::Fields,
    enrichment: Enrichment,
    derived: Derived,
}

fn prepare(
    line: &Line,
    keys: &Keys,
    enricher: &Enricher,
    compressor: Option<&mut Compressor<'_>>,
) -> Prepared {
    let Ok(bytes) = &line.bytes else {
        return Prepared::TooLong;
    };
    match record::parse(bytes).and_then(|fields| record::not_ahead(fields, now_ns())) {
        Ok(fields) => Prepared::Parsed {
            bytes: bytes.len(),
            compressed: compressor.and_then(|c| c.compress(bytes)),
            sealed: Box::new(verify::seal(bytes, &fields.stream, keys)),
            parsed: Box::new(parsed(fields, enricher)),
        },
        Err(malformed) => Prepared::Malformed(malformed),
    }
}

/// What the detections learn from a batch, in the order the writer met it.
enum Found {
    Event(Event, i64),
    /// A line that says its sensor runs ([`signs_of_life`]).
    Heard(String, i64),
    /// A verified line that does not.
    Seen(String, i64),
    /// A stored access record, with what it says of its sensor (as [`signs_of_life`]):
    /// carried here, so that a record costs one message; and its line, when the batch
    /// feeds the fleet's leader ([`feed`]).
    Access {
        access: Box<Parsed>,
        link: Link,
        life: Option<bool>,
        line: Option<Box<[u8]>>,
    },
    /// A stored access record replaced by the sensor's own line: its counts go.
    Retract(Box<Parsed>),
}

/// What the writer tells the detection thread, sent [`FOUND_CHUNK`] messages at a
/// time: one send per record woke the detection thread for each, and sending was 5%
/// of the writer's time (`perf`, `import` of 200,000 records).
struct Telling<'a> {
    to: &'a mpsc::Sender<Vec<Found>>,
    held: RefCell<Vec<Found>>,
    /// Whether access records carry their lines, for the detection feed.
    feeding: bool,
}

impl Telling<'_> {
    /// A stored access record.
    fn access(&self, access: Box<Parsed>, link: Link, life: Option<bool>, line: &[u8]) {
        self.tell(Found::Access {
            access,
            link,
            life,
            line: self.feeding.then(|| line.into()),
        });
    }

    fn tell(&self, message: Found) {
        let mut held = self.held.borrow_mut();
        held.push(message);
        if held.len() >= FOUND_CHUNK {
            self.send(&mut held);
        }
    }

    fn send(&self, held: &mut Vec<Found>) {
        let chunk = std::mem::replace(held, Vec::with_capacity(FOUND_CHUNK));
        // The detection thread ends only when the sender is dropped, so sending never
        // fails while the writer runs.
        let _ = self.to.send(chunk);
    }
}

/// What is held is sent when the writer is done with the batch's lines, or fails.
impl Drop for Telling<'_> {
    fn drop(&mut self) {
        let held = std::mem::take(self.held.get_mut());
        if !held.is_empty() {
            let _ = self.to.send(held);
        }
    }
}

/// Messages to the detection thread per send.
const FOUND_CHUNK: usize = 256;

/// What the detection thread hands the writer for the batch's commit.
struct Detected {
    alertings: Vec<Alerting>,
    /// The stored access records' rollups.
    rollups: RollupRows,
    /// What the detections learned, serialised.
    learned: Learned,
    /// What the batch feeds the fleet's leader instead, when it does: a zstd frame,
    /// compressed here, beside the writer; empty when there is nothing to feed.
    feed: Option<Vec<u8>>,
}

/// Runs the detections on what the writer stored (or, without a detector, writes what
/// they would meet for the fleet's leader), counts the stored access records' rollups,
/// and serialises what the detections learned, for the writer to store.
fn detect(
    mut detector: Option<&mut Detector>,
    found: mpsc::Receiver<Vec<Found>>,
) -> anyhow::Result<Detected> {
    let mut alertings = Vec::new();
    let mut rollups = Rollups::default();
    let mut feed = detector.is_none().then(feed::Encoder::default);
    for found in found.into_iter().flatten() {
        match &found {
            Found::Retract(forged) => {
                rollups.retract(&forged.fields, &forged.enrichment, &forged.derived);
            }
            Found::Access { access, .. } => {
                rollups.count(&access.fields, &access.enrichment, &access.derived);
            }
            Found::Event(..) | Found::Heard(..) | Found::Seen(..) => {}
        }
        match (&mut detector, &mut feed) {
            (Some(detector), _) => observe(detector, &found, &mut alertings),
            (None, Some(feed)) => feed.found(&found)?,
            (None, None) => {}
        }
    }
    // The writer waits for both; the two cores take one each.
    let (rollups, learned) = std::thread::scope(|scope| {
        let rows = scope.spawn(|| rollups.into_rows());
        let learned = detector.map_or(Ok(Learned::new()), Detector::learned);
        (join(rows), learned)
    });
    let feed = match feed {
        Some(feed) if !feed.is_empty() => Some(feed.finish()?),
        Some(_) => Some(Vec::new()),
        None => None,
    };
    Ok(Detected {
        alertings,
        rollups,
        learned: learned?,
        feed,
    })
}

/// Shows the detections one thing the writer met; what they find joins `alertings`.
fn observe(detector: &mut Detector, found: &Found, alertings: &mut Vec<Alerting>) {
    match found {
        Found::Event(event, ts_ns) => alertings.extend(detector.event(event, *ts_ns)),
        Found::Heard(stream, ts_ns) => detector.heard(stream, *ts_ns),
        Found::Seen(stream, ts_ns) => detector.seen(stream, *ts_ns),
        Found::Retract(_) => {}
        Found::Access {
            access, link, life, ..
        } => {
            let Parsed {
                fields, enrichment, ..
            } = &**access;
            match life {
                Some(true) => detector.heard(&fields.stream, fields.ts_ns),
                Some(false) => detector.seen(&fields.stream, fields.ts_ns),
                None => {}
            }
            alertings.extend(detector.observe(&Observation {
                fields,
                enrichment,
                link: *link,
            }));
        }
    }
}

/// A scoped thread's result; its panic is this thread's.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// What [`store`] did with a batch's lines.
struct Written {
    outcome: Outcome,
    /// Late lines that filled a gap: (stream, seq).
    filled: Vec<(String, u64)>,
    /// The streams written, sorted.
    touched: Vec<String>,
}

/// Links and stores the lines, each with what was taken from it, and tells the
/// detections what it stored. With `rows`, the outcome lists the access records stored.
#[allow(clippy::too_many_arguments)]
fn store<'a>(
    prepared: impl Iterator<Item = (&'a Line, Prepared)>,
    keys: &Keys,
    enricher: &Enricher,
    chains: &mut Chains,
    batch: &mut Batch<'_>,
    newest_ns: &mut i64,
    rows: bool,
    found: &mpsc::Sender<Vec<Found>>,
    feeding: bool,
) -> anyhow::Result<Written> {
    let telling = Telling {
        to: found,
        held: RefCell::new(Vec::with_capacity(FOUND_CHUNK)),
        feeding,
    };
    let tell = |message| telling.tell(message);
    let mut outcome = Outcome::default();
    let mut touched = Vec::new();
    let mut filled = Vec::new();
    for (line, prepared) in prepared {
        let bytes = match &line.bytes {
            Ok(bytes) => bytes.as_slice(),
            Err(too_long) => {
                batch.reject(
                    &line.origin,
                    "longer than the hub accepts (1 MiB)",
                    &[],
                    too_long.bytes,
                )?;
                outcome.rejected += 1;
                continue;
            }
        };
        let (compressed, sealed, parsed) = match prepared {
            Prepared::Parsed {
                compressed,
                sealed,
                parsed,
                ..
            } => (compressed, sealed, parsed),
            Prepared::Malformed(malformed) => {
                batch.reject(
                    &line.origin,
                    &malformed.to_string(),
                    bytes,
                    bytes.len() as u64,
                )?;
                outcome.rejected += 1;
                continue;
            }
            // Taken from this very line, whose bytes were read: not reached.
            Prepared::TooLong => {
                anyhow::bail!("{}: taken apart as too long, yet read", line.origin)
            }
        };
        let fields = &parsed.fields;
        if let Some(state) = batch.claim_stream(&fields.stream)? {
            chains.reload(&fields.stream, state);
        }
        let sealed = match *sealed {
            Ok(sealed) => sealed,
            Err(reason) => {
                let event = Event {
                    stream: fields.stream.clone(),
                    seq: fields.seq,
                    kind: EventKind::Unsealed,
                    detail: format!("{} is not a sealed line: {reason}", line.origin),
                };
                batch.event(&event, fields.ts_ns)?;
                tell(Found::Event(event.clone(), fields.ts_ns));
                batch.reject(&line.origin, "not a sealed line", bytes, bytes.len() as u64)?;
                outcome.events.push(event);
                outcome.rejected += 1;
                continue;
            }
        };
        if let Some(restoration) = chains.restoration(&sealed, &fields.stream, batch)? {
            restore(
                restoration,
                fields,
                enricher,
                batch,
                rows,
                &telling,
                &mut outcome,
            )?;
        }
        let verdict = chains.check(sealed, bytes, &fields.stream, fields.ts_ns, batch)?;
        for event in &verdict.events {
            batch.event(event, fields.ts_ns)?;
            tell(Found::Event(event.clone(), fields.ts_ns));
        }
        outcome.events.extend(verdict.events.iter().cloned());
        let life = signs_of_life(&verdict, keys.get(&fields.stream).is_some());
        let access = fields.kind == Some(tracer_audit::Kind::Access);
        match life {
            // An access record's goes with it, once it is stored.
            _ if access => {}
            Some(true) => tell(Found::Heard(fields.stream.clone(), fields.ts_ns)),
            Some(false) => tell(Found::Seen(fields.stream.clone(), fields.ts_ns)),
            None => {}
        }
        for &seq in &verdict.disowned {
            batch.disown(&fields.stream, seq)?;
        }
        match verdict.link {
            Link::Duplicate => {
                outcome.duplicates += 1;
                continue;
            }
            Link::Conflict => {
                outcome.conflicts += 1;
                batch.keep_conflict(
                    &fields.stream,
                    fields.seq,
                    &verdict.sealed.hash,
                    bytes,
                    fields.ts_ns,
                )?;
                continue;
            }
            Link::Expired => {
                outcome.expired += 1;
                continue;
            }
            Link::Linked
            | Link::Joined
            | Link::AfterGap
            | Link::Filled
            | Link::Restart
            | Link::Broken => {}
            // The checkpoint takes its own seq back from a forged line.
            Link::Restored => {
                if let Some(forged) = batch.take_forged(&fields.stream, fields.seq)? {
                    retract(&forged, enricher, &tell);
                }
            }
        }
        batch.insert(&Entry {
            fields,
            verdict: &verdict,
            enrichment: &parsed.enrichment,
            derived: &parsed.derived,
            line: compressed.as_deref().unwrap_or(bytes),
        })?;
        reported_loss(fields, batch, &tell, &mut outcome)?;
        if let Some(range) = verdict.covers {
            batch.cover(&fields.stream, range)?;
        }
        if verdict.link == Link::Filled {
            filled.push((fields.stream.clone(), fields.seq));
        }
        *newest_ns = (*newest_ns).max(fields.ts_ns);
        // A batch is mostly one stream's run of lines: one name per run, not per line.
        if touched.last() != Some(&fields.stream) {
            touched.push(fields.stream.clone());
        }
        if access {
            if rows {
                outcome.rows.push(row(&parsed, verdict.link));
            }
            telling.access(parsed, verdict.link, life, bytes);
        }
    }
    touched.sort();
    touched.dedup();
    Ok(Written {
        outcome,
        filled,
        touched,
    })
}

/// Ends a batch whose lines are stored: writes what the detections counted, learned
/// and found (or what it feeds the fleet's leader), resolves the alerts that are over,
/// and commits.
fn commit(
    mut batch: Batch<'_>,
    written: Written,
    detected: Detected,
    chains: &Chains,
    detector: Option<&mut Detector>,
    newest_ns: i64,
) -> anyhow::Result<Outcome> {
    let Written {
        mut outcome,
        mut filled,
        touched,
    } = written;
    let Detected {
        alertings,
        rollups,
        learned,
        feed,
    } = detected;
    batch.rollups(rollups);
    // Late lines take the proof of the line after them, so the last goes first. Only
    // lines up to a stream's verified-through seq are proven: a line past it has no
    // proof to take (two hubs in turn fill tens of thousands of such lines a batch).
    filled.sort_by(|a, b| b.cmp(a));
    for (stream, seq) in &filled {
        let proven_after = chains
            .streams()
            .get(stream)
            .and_then(|s| s.verified_through)
            .is_some_and(|through| *seq < through);
        if proven_after {
            batch.carry_cover_back(stream, *seq)?;
        }
    }
    // A stream whose every gap is now filled lost nothing: its gap alert is over
    // (JetStream redelivering a killed hub's batch late raises one).
    filled.dedup_by(|a, b| a.0 == b.0);
    let closed: Vec<&str> = filled
        .iter()
        .map(|(stream, _)| stream.as_str())
        .filter(|stream| {
            chains
                .streams()
                .get(*stream)
                .is_some_and(|s| s.gaps.is_empty())
        })
        .collect();
    match (detector, feed) {
        (Some(detector), _) => {
            batch.learn(learned)?;
            outcome.alerts = conclude(&mut batch, detector, &alertings, &closed, newest_ns)?;
        }
        (None, Some(mut feed)) => {
            // zstd frames read back one after the other: the closed gaps, known only
            // now, follow in a frame of their own.
            if !closed.is_empty() {
                let mut gaps = feed::Encoder::default();
                for stream in closed {
                    gaps.gaps_closed(stream);
                }
                feed.extend(gaps.finish()?);
            }
            // A batch of duplicates alone has nothing for the detections.
            if !feed.is_empty() {
                batch.feed(feed);
            }
        }
        (None, None) => {}
    }
    let streams = chains.streams();
    let inserted = batch.commit(touched.iter().filter_map(|s| streams.get_key_value(s)))?;
    outcome.stored = inserted - outcome.restored;
    Ok(outcome)
}

/// Writes what the detections found in a batch into it: the alerts `alertings` raise,
/// then those that are over (every gap of the `closed` streams filled, silent sensors
/// heard again), and what they learned. Returns the alerts opened, changed or resolved.
fn conclude(
    batch: &mut Batch<'_>,
    detector: &mut Detector,
    alertings: &[Alerting],
    closed: &[&str],
    newest_ns: i64,
) -> anyhow::Result<Vec<i64>> {
    let mut alerts = Vec::new();
    let findings: Vec<_> = alertings.iter().map(Alerting::new_alert).collect();
    batch.prefetch_alerts(&findings)?;
    for finding in &findings {
        alerts.push(batch.alert(finding)?);
    }
    for stream in closed {
        if let Some((rule, entity)) = detector.gaps_filled(stream) {
            alerts.extend(batch.resolve_alerts(rule, &entity, newest_ns)?);
        }
    }
    // A silent sensor that speaks again is no longer silent.
    for (rule, entity) in detector.revived() {
        alerts.extend(batch.resolve_alerts(rule, &entity, newest_ns)?);
    }
    detector.save(batch)?;
    alerts.sort_unstable();
    alerts.dedup();
    Ok(alerts)
}

/// Stores the sensor's own lines that a signed checkpoint chains to in place of the
/// forged ones the store held (`restoration`), keeping those among the conflicts, and
/// tells the detections: the forged records' counts are taken back, the sensor's
/// records are observed, late.
fn restore(
    restoration: Restoration,
    checkpoint: &record::Fields,
    enricher: &Enricher,
    batch: &mut Batch<'_>,
    rows: bool,
    telling: &Telling<'_>,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let tell = &|message| telling.tell(message);
    let stream = &checkpoint.stream;
    for event in restoration.events {
        batch.event(&event, checkpoint.ts_ns)?;
        tell(Found::Event(event.clone(), checkpoint.ts_ns));
        outcome.events.push(event);
    }
    for seq in restoration.relinked {
        batch.relink(stream, seq)?;
    }
    for restored in restoration.lines {
        let seq = restored.sealed.seq;
        if let Some(forged) = batch.take_forged(stream, seq)? {
            retract(&forged, enricher, tell);
        }
        let parsed = parsed(restored.fields, enricher);
        let verdict = Verdict::restored(restored.sealed);
        batch.insert(&Entry {
            fields: &parsed.fields,
            verdict: &verdict,
            enrichment: &parsed.enrichment,
            derived: &parsed.derived,
            line: &restored.line,
        })?;
        batch.unkeep_conflict(stream, seq, &verdict.sealed.hash)?;
        outcome.restored += 1;
        reported_loss(&parsed.fields, batch, tell, outcome)?;
        if parsed.fields.kind == Some(tracer_audit::Kind::Access) {
            if rows {
                outcome.rows.push(row(&parsed, Link::Restored));
            }
            telling.access(Box::new(parsed), Link::Restored, None, &restored.line);
        }
    }
    Ok(())
}

/// The integrity event of a stored loss line: what its sensor could not record.
fn reported_loss(
    fields: &record::Fields,
    batch: &mut Batch<'_>,
    tell: &dyn Fn(Found),
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    if let Some(loss) = &fields.loss {
        let event = Event {
            stream: fields.stream.clone(),
            seq: fields.seq,
            kind: EventKind::Loss,
            detail: format!("{} {}: {}", loss.source, loss.reason, loss.count),
        };
        batch.event(&event, fields.ts_ns)?;
        tell(Found::Event(event.clone(), fields.ts_ns));
        outcome.events.push(event);
    }
    Ok(())
}

/// Takes a replaced forged line's request back from the rollups.
fn retract(line: &[u8], enricher: &Enricher, tell: &dyn Fn(Found)) {
    if let Ok(fields) = record::parse(line)
        && fields.kind == Some(tracer_audit::Kind::Access)
    {
        tell(Found::Retract(Box::new(parsed(fields, enricher))));
    }
}

/// A line's fields with what the hub adds to them.
fn parsed(fields: record::Fields, enricher: &Enricher) -> Parsed {
    let enrichment = enricher.enrich(&view(&fields));
    let derived = Derived::of(fields.client, &enrichment);
    Parsed {
        fields,
        enrichment,
        derived,
    }
}

/// Whether a line says its sensor runs (for `sensor_silent`). With a key, only a
/// checkpoint signed with it does: whoever can publish to the stream can write records,
/// start and loss lines that link (the chain's hash is not keyed), and so keep a killed
/// sensor's stream speaking; a live sensor signs a checkpoint at least every 2 minutes,
/// idle or not. Without a key, any line that did not fail verification. `Some(false)`:
/// a verified line that proves nothing, whose stream is watched from then on; `None`: a
/// line given again, or one that failed verification.
fn signs_of_life(verdict: &Verdict, keyed: bool) -> Option<bool> {
    let verified = !matches!(verdict.link, Link::Duplicate | Link::Expired | Link::Broken)
        && !verdict.events.iter().any(|e| e.kind.discredits_line());
    let signed = verdict.sealed.content_ok
        && verdict
            .sealed
            .checkpoint
            .as_ref()
            .is_some_and(|cp| cp.signature_ok == Some(true));
    match (keyed, verified) {
        // A signed checkpoint says so even where the chain broke before it (after a
        // forgery ahead of its sensor).
        (true, _) if signed && !matches!(verdict.link, Link::Duplicate | Link::Expired) => {
            Some(true)
        }
        (true, true) => Some(false),
        (false, true) => Some(true),
        (_, false) => None,
    }
}

fn view(fields: &record::Fields) -> RequestView<'_> {
    RequestView {
        host: fields.host.as_deref(),
        method: fields.method.as_deref(),
        path: fields.path.as_deref(),
        client: fields.client,
        user: fields.user(),
    }
}

fn row(parsed: &Parsed, link: Link) -> Row {
    let Parsed {
        fields,
        enrichment,
        derived,
    } = parsed;
    Row {
        stream: fields.stream.clone(),
        seq: fields.seq,
        ts: format_ns(fields.ts_ns),
        method: fields.method.clone(),
        host: fields.host.clone(),
        path: fields.path.clone(),
        template: Some(enrichment.template.clone()),
        status: fields.status,
        user: fields.user().map(str::to_owned),
        credential: fields.credential.clone(),
        client: derived.client.clone(),
        country: enrichment
            .place
            .as_ref()
            .and_then(|p| p.geo.country.clone()),
        asset: enrichment.asset.as_ref().map(|a| a.name.clone()),
        duration_ns: fields.duration_ns,
        covered: false,
        chain: link.as_str().to_owned(),
    }
}

#[cfg(test)]
#[path = "pipeline_hostile_tests.rs"]
mod hostile_tests;
#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
