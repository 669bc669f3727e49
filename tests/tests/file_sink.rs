//! The file sink (`--output FILE`): what lands in the file, its mode, rotation and
//! compression under load, retention, restarts, unusable paths and a full disk.

use anyhow::{Context, Result};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use tests::audit::verify;
use tests::clients::{curl, url};
use tests::load::ab_keepalive;
use tests::output::{Tmpfs, all_files, all_records, file_records, rotated_files};
use tests::ports::free_port;
use tests::process::Guarded;
use tests::record::RecordExt;
use tests::servers::{Nginx, NginxConfig, PyHttpServer};
use tests::tracer::{READY_PREFIX, Tracer, TracerRun};
use tests::workspace::tracer_bin;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Hang guard for conditions the tracer reaches on its own (a report, a rotation).
const GUARD: Duration = Duration::from_secs(30);

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).map_or(0, |m| m.mode() & 0o777)
}

fn file_counter(run: &TracerRun, key: &str) -> u64 {
    run.summary["sinks"]["file"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no sinks.file.{key}: {}", run.summary))
}

fn paths(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{}?{}", r.str_field("url.path"), r.str_field("url.query")))
        .collect()
}

#[test]
fn the_file_holds_every_request_with_mode_0600_and_stdout_stays_empty() -> Result<()> {
    let setup = Setup::python()?;
    let live = &setup.live;
    let tracer = setup.tracer(&[])?;
    let sent: Vec<String> = (0..5).map(|i| format!("/hello.txt?i={i}")).collect();
    for path in &sent {
        curl(&[&url(setup.port, path)])?;
    }
    let run = tracer.stop()?;

    assert_eq!(run.stdout, "", "stdout is not written without --stdout");
    let records = file_records(live)?;
    assert_eq!(paths(&records), sent);
    assert_eq!(mode(live), 0o600);
    let size = std::fs::metadata(live)?.len();
    assert_eq!(file_counter(&run, "bytes_written"), size);
    assert_eq!(file_counter(&run, "write_errors"), 0);
    assert_eq!(run.summary_u64("records")?, 5);
    Ok(())
}

#[test]
fn stdout_and_file_together_carry_the_same_records() -> Result<()> {
    let setup = Setup::python()?;
    let live = &setup.live;
    let tracer = setup.tracer(&["--stdout"])?;
    for i in 0..3 {
        curl(&[&url(setup.port, &format!("/hello.txt?both={i}"))])?;
    }
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 3);
    assert_eq!(file_records(live)?, run.records);
    Ok(())
}

/// A Python server and a temp dir for the output file.
struct Setup {
    _server: PyHttpServer,
    port: u16,
    _dir: TempDir,
    live: PathBuf,
}

impl Setup {
    fn python() -> Result<Self> {
        let port = free_port();
        let dir = tempfile::tempdir()?;
        Ok(Self {
            _server: PyHttpServer::start(LOCALHOST, port, "HTTP/1.0")?,
            port,
            live: dir.path().join("access.jsonl"),
            _dir: dir,
        })
    }

    /// `tracer run --port PORT --output LIVE EXTRA...`
    fn tracer(&self, extra: &[&str]) -> Result<Tracer> {
        let mut args = vec!["--output", path_arg(&self.live)];
        args.extend_from_slice(extra);
        Tracer::start_with_args(&[self.port], &args, &[])
    }
}

/// Runs `tracer run` expecting it to fail at start; returns its stderr.
fn failing_start(args: &[&str]) -> Result<String> {
    let log = tempfile::NamedTempFile::new()?;
    let mut command = Command::new(tracer_bin()?);
    command
        .arg("run")
        .args(["--port", &free_port().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen()?);
    let mut tracer = Guarded::spawn(&mut command, "tracer run")?;
    let status = tracer.wait_timeout(GUARD)?;
    let stderr = std::fs::read_to_string(log.path())?;
    assert!(!status.success(), "tracer {args:?} exited 0: {stderr}");
    assert!(
        !stderr.contains(READY_PREFIX),
        "ready before failing: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(stderr)
}

#[test]
fn an_unusable_output_path_is_a_clear_error_before_ready() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-such-dir/access.jsonl");
    let stderr = failing_start(&["--output", path_arg(&missing)])?;
    assert!(
        stderr.contains(path_arg(&missing)) && stderr.contains("does not exist"),
        "{stderr}"
    );

    let stderr = failing_start(&["--output", path_arg(dir.path())])?;
    assert!(stderr.contains("not a regular file"), "{stderr}");

    // Root ignores permission bits, so a read-only file system stands for "cannot write".
    let readonly = Tmpfs::mount("ro,size=64k")?;
    let target = readonly.path().join("access.jsonl");
    let stderr = failing_start(&["--output", path_arg(&target)])?;
    assert!(
        stderr.contains(path_arg(&target)) && stderr.contains("Read-only file system"),
        "{stderr}"
    );

    let stderr = failing_start(&["--output", "x.jsonl", "--rotate-size", "0"])?;
    assert!(stderr.contains("--rotate-size"), "{stderr}");
    let stderr = failing_start(&["--keep", "3"])?;
    assert!(stderr.contains("need --output"), "{stderr}");
    Ok(())
}

/// Sustained load with a small rotation size: every request nginx served is in exactly
/// one line of one file, every file decompresses, nothing is split, and the files in
/// order verify as one chain (each rotated file ends with a signed checkpoint).
fn rotation_under_load(args: &[&str], live: &Path, extension: &str, file_mode: u32) -> Result<()> {
    const REQUESTS: u32 = 10_000;
    let port = free_port();
    let mut config = NginxConfig::new(port);
    config.access_log = true;
    let nginx = Nginx::start(config)?;
    let keys = tempfile::tempdir()?;
    let key = keys.path().join("audit.key");
    let mut args = args.to_vec();
    args.extend(["--audit-key", path_arg(&key)]);
    let tracer = Tracer::start_with_args(&[port], &args, &[])?;
    let report = ab_keepalive(&url(port, "/load?rotate=1"), 20, REQUESTS)?;
    let served = nginx.settled_access_log_lines()? as u64;
    let run = tracer.stop()?;

    assert_eq!(run.kernel_lost_total()?, 0, "{}", run.summary);
    assert_eq!(report.complete, u64::from(REQUESTS), "{}", report.raw);
    assert_eq!(served, u64::from(REQUESTS));
    let rotated = rotated_files(live)?;
    let records = all_records(live)?;
    assert_eq!(records.len() as u64, served, "{}", run.summary);
    for r in &records {
        assert_eq!(r.str_field("url.path"), "/load", "{r}");
        assert_eq!(r.u64_field("http.response.status_code"), 200, "{r}");
    }
    assert!(rotated.len() >= 10, "only {} rotations", rotated.len());
    let files = all_files(live)?;
    let verdict = verify(
        path_arg(&key),
        &files.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
    )?;
    assert!(verdict.ok, "{verdict:?}");
    assert!(
        verdict.stdout.contains(&format!("{} files", files.len()))
            && verdict.stdout.contains("chain intact"),
        "{verdict:?}"
    );
    for file in &rotated {
        let lines = tests::output::file_lines(file)?;
        let last = lines.last().expect("a rotated file is never empty");
        assert_eq!(last["audit.kind"], "checkpoint", "{}", file.display());
        assert_eq!(
            last["audit.checkpoint.reason"],
            "rotation",
            "{}",
            file.display()
        );
    }
    assert_eq!(file_counter(&run, "rotations"), rotated.len() as u64);
    assert_eq!(file_counter(&run, "compressed"), rotated.len() as u64);
    for file in rotated.iter().chain([&live.to_path_buf()]) {
        let name = file.to_string_lossy();
        assert!(
            file == live || name.ends_with(extension),
            "not compressed: {name}"
        );
        assert_eq!(mode(file), file_mode, "{name}");
        if file != live {
            // Rotation happens at batch boundaries once the size is reached, never before.
            let plain = tests::output::read_text(file)?;
            assert!(
                plain.len() >= 64 * 1024,
                "{name} holds {} bytes",
                plain.len()
            );
        }
    }
    Ok(())
}

#[test]
fn rotation_with_gzip_under_load_loses_and_splits_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let live = dir.path().join("access.jsonl");
    rotation_under_load(
        &[
            "--output",
            path_arg(&live),
            "--rotate-size",
            "64k",
            "--compress",
            "gzip",
        ],
        &live,
        "Z.gz",
        0o600,
    )
}

/// The same through the config file's `[output.file]`, with a flag overriding the mode.
#[test]
fn rotation_with_zstd_from_the_config_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let live = dir.path().join("access.jsonl");
    let config = dir.path().join("tracer.toml");
    std::fs::write(
        &config,
        format!(
            "[output.file]\npath = {:?}\nrotate_size = \"64k\"\ncompress = \"zstd\"\nmode = \"0600\"\n",
            path_arg(&live)
        ),
    )?;
    rotation_under_load(
        &["--config", path_arg(&config), "--output-mode", "0640"],
        &live,
        "Z.zst",
        0o640,
    )
}

#[test]
fn retention_keeps_exactly_the_newest_n_files() -> Result<()> {
    const KEEP: usize = 3;
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let dir = tempfile::tempdir()?;
    let live = dir.path().join("access.jsonl");
    let tracer = Tracer::start_with_args(
        &[port],
        &[
            "--output",
            path_arg(&live),
            "--rotate-size",
            "16k",
            "--keep",
            &KEEP.to_string(),
        ],
        &[],
    )?;
    let report = ab_keepalive(&url(port, "/load?keep=3"), 10, 2000)?;
    assert_eq!(report.complete, 2000, "{}", report.raw);
    curl(&[&url(port, "/last?keep=3")])?;
    let run = tracer.stop()?;

    let rotated = rotated_files(&live)?;
    assert_eq!(rotated.len(), KEEP, "{rotated:?}");
    let rotations = file_counter(&run, "rotations");
    assert!(rotations > KEEP as u64, "{}", run.summary);
    assert_eq!(file_counter(&run, "deleted"), rotations - KEEP as u64);
    let records = all_records(&live)?;
    assert!(records.len() < 2001, "older files were deleted");
    let last = records.last().context("no records kept")?;
    assert_eq!(last.str_field("url.path"), "/last", "the newest survive");
    Ok(())
}

#[test]
fn an_idle_file_rotates_when_its_interval_ends() -> Result<()> {
    let setup = Setup::python()?;
    let live = &setup.live;
    let tracer = setup.tracer(&["--rotate-interval", "1s"])?;
    curl(&[&url(setup.port, "/hello.txt?when=before")])?;
    // No more traffic: the rotation comes from the tracer's own timer.
    let deadline = std::time::Instant::now() + GUARD;
    while !rotated_files(live)?
        .iter()
        .any(|f| f.to_string_lossy().ends_with(".gz"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no rotation while idle"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Idle seconds with an empty live file: they must not produce empty rotated files.
    std::thread::sleep(Duration::from_millis(2500));
    curl(&[&url(setup.port, "/hello.txt?when=after")])?;
    let run = tracer.stop()?;

    let rotated = rotated_files(live)?;
    // The first request was rotated out while idle; every request is in exactly one
    // file, in order. A file may open with the tracer's start line and always ends with
    // the rotation checkpoint, but idle seconds add no file without other lines.
    let first = rotated
        .iter()
        .position(|f| file_records(f).is_ok_and(|r| paths(&r) == ["/hello.txt?when=before"]))
        .expect("the first request is in a rotated file");
    let mut all = Vec::new();
    for file in rotated.iter().chain([live]) {
        all.extend(paths(&file_records(file)?));
        if file != live {
            let lines = tests::output::file_lines(file)?;
            assert!(
                lines.iter().any(|l| l["audit.kind"] != "checkpoint"),
                "{} holds only a checkpoint",
                file.display()
            );
        }
    }
    assert_eq!(all, ["/hello.txt?when=before", "/hello.txt?when=after"]);
    assert!(first <= 1, "{rotated:?}");
    assert_eq!(file_counter(&run, "rotations"), rotated.len() as u64);
    Ok(())
}

#[test]
fn a_restart_appends_after_cutting_a_partial_line() -> Result<()> {
    let setup = Setup::python()?;
    let live = &setup.live;
    let tracer = setup.tracer(&[])?;
    curl(&[&url(setup.port, "/hello.txt?run=1")])?;
    tracer.stop()?;
    // What a crash in the middle of a write leaves.
    let partial = "{\"timestamp\":\"2026-";
    let mut text = std::fs::read_to_string(live)?;
    text.push_str(partial);
    std::fs::write(live, text)?;

    let tracer = setup.tracer(&[])?;
    curl(&[&url(setup.port, "/hello.txt?run=2")])?;
    let run = tracer.stop()?;

    assert!(
        run.stderr
            .contains(&format!("dropped its last {} byte(s)", partial.len())),
        "{}",
        run.stderr
    );
    assert_eq!(
        paths(&file_records(live)?),
        ["/hello.txt?run=1", "/hello.txt?run=2"]
    );
    Ok(())
}

/// A disk that really fills up: records wait in memory, the file never shows half a
/// line, the episode is reported, and once space is freed every record arrives.
#[test]
fn a_full_disk_is_reported_and_retried_without_losing_records() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let disk = Tmpfs::mount("size=1m")?;
    let live = disk.path().join("access.jsonl");
    let filler = disk.path().join("filler");
    let tracer = Tracer::start_with_args(
        &[port],
        &["--output", path_arg(&live), "--stats-interval", "1"],
        &[],
    )?;
    let mut sent = 0;
    let mut load = |n: u32, query: &str| -> Result<()> {
        let report = ab_keepalive(&url(port, &format!("/full?{query}")), 5, n)?;
        assert_eq!(report.complete, u64::from(n), "{}", report.raw);
        sent += u64::from(n);
        Ok(())
    };
    load(100, "phase=before")?;
    disk.fill(&filler)?;
    load(300, "phase=full")?;
    let report = tracer.wait_for_stderr("cannot write", GUARD)?;
    assert!(report.contains("No space left on device"), "{report}");
    load(100, "phase=still-full")?;
    // Readers see only whole records while the disk is full.
    let visible = file_records(&live)?;
    assert!(visible.len() < 500, "the disk was not full");
    std::fs::remove_file(&filler)?;
    tracer.wait_for_stderr("writable again", GUARD)?;
    load(100, "phase=after")?;
    let run = tracer.stop()?;

    assert_eq!(run.kernel_lost_total()?, 0, "{}", run.summary);
    let records = file_records(&live)?;
    assert_eq!(records.len() as u64, sent, "{}", run.summary);
    let mut phases: Vec<&str> = records.iter().map(|r| r.str_field("url.query")).collect();
    phases.dedup();
    assert_eq!(
        phases,
        [
            "phase=before",
            "phase=full",
            "phase=still-full",
            "phase=after"
        ],
        "records stay in order"
    );
    assert!(file_counter(&run, "write_errors") >= 1, "{}", run.summary);
    assert_eq!(file_counter(&run, "discarded"), 0);
    let reports = run.stderr.matches("cannot write").count();
    assert_eq!(reports, 1, "one report per episode: {}", run.stderr);
    Ok(())
}

/// Keeps the harness's view of paths honest: the helper sorts rotated files by name.
#[test]
fn rotated_names_sort_in_rotation_order() -> Result<()> {
    let setup = Setup::python()?;
    let live = &setup.live;
    let tracer = setup.tracer(&["--rotate-size", "1", "--compress", "none"])?;
    for i in 0..5 {
        curl(&[&url(setup.port, &format!("/hello.txt?n={i}"))])?;
    }
    tracer.stop()?;
    let rotated: Vec<PathBuf> = rotated_files(live)?;
    let mut order = Vec::new();
    for file in rotated.iter().chain([live]) {
        order.extend(paths(&file_records(file)?));
    }
    let expected: Vec<String> = (0..5).map(|i| format!("/hello.txt?n={i}")).collect();
    assert_eq!(order, expected);
    Ok(())
}

/// A tracer killed outright in the middle of sustained load, then restarted on the same
/// file: whatever the kill interrupted, readers find only whole records.
#[test]
fn a_killed_tracer_leaves_only_whole_records_for_the_next_run() -> Result<()> {
    let port = free_port();
    let _nginx = Nginx::start(NginxConfig::new(port))?;
    let dir = tempfile::tempdir()?;
    let live = dir.path().join("access.jsonl");
    let args = ["--output", path_arg(&live), "--rotate-size", "256k"];
    let tracer = Tracer::start_with_args(&[port], &args, &[])?;
    let load_url = url(port, "/load?kill=1");
    let load = std::thread::spawn(move || ab_keepalive(&load_url, 10, 20_000));
    let deadline = std::time::Instant::now() + GUARD;
    // Between a rotation's rename and the next open the live file is briefly missing.
    let live_len = || match std::fs::metadata(&live) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        other => other.map(|m| m.len()),
    };
    while live_len()? < 100_000 && rotated_files(&live)?.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no records written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = tracer.stop_with(libc::SIGKILL);
    assert!(killed.is_err(), "SIGKILL cannot be handled");
    load.join()
        .map_err(|_| anyhow::anyhow!("ab thread panicked"))??;

    let tracer = Tracer::start_with_args(&[port], &args, &[])?;
    curl(&[&url(port, "/after-restart")])?;
    let run = tracer.stop()?;
    let records = all_records(&live)?;
    assert!(records.len() > 1, "{}", run.summary);
    assert_eq!(
        records.last().map(|r| r.str_field("url.path")),
        Some("/after-restart")
    );
    assert_eq!(file_counter(&run, "compress_errors"), 0);
    Ok(())
}
