//! The tamper-evident chain end to end: the real tracer traces a real Python server
//! under curl, its output is copied and tampered with in each way `tracer verify`
//! must name, and the untouched output, a gzip copy and a restarted tracer's
//! continuation verify.

use anyhow::{Context, Result};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tests::audit::{Verdict, hash_of, key_show, rechain, reseal, verify, verify_with};
use tests::clients::{curl, url};
use tests::ports::free_port;
use tests::record::RecordExt;
use tests::servers::PyHttpServer;
use tests::tracer::{Tracer, TracerRun};

/// A tracer with its own state and key in `dir`, a checkpoint every 4 lines, traced
/// while curl fetches `requests` URLs; its stdout is kept as `dir/name`.
fn trace(dir: &Path, name: &str, requests: usize) -> Result<(PathBuf, TracerRun)> {
    let (_server, port, tracer) = start(dir)?;
    for n in 0..requests {
        curl(&[&url(port, &format!("/hello.txt?n={n}"))])?;
    }
    let run = tracer.stop()?;
    let file = dir.join(name);
    std::fs::write(&file, &run.stdout)?;
    Ok((file, run))
}

/// Starts a tracer with its state and key in `dir` watching a new Python server.
fn start(dir: &Path) -> Result<(PyHttpServer, u16, Tracer)> {
    let port = free_port();
    let server = PyHttpServer::start(IpAddr::V4(Ipv4Addr::LOCALHOST), port, "HTTP/1.1")?;
    let state = dir.join("audit.state");
    let key = dir.join("audit.key");
    let tracer = Tracer::start_with_args(
        &[port],
        &[
            "--audit-state",
            state.to_str().context("path")?,
            "--audit-key",
            key.to_str().context("path")?,
            "--checkpoint-records",
            "4",
            "--stream-id",
            "e2e-host",
        ],
        &[],
    )?;
    Ok((server, port, tracer))
}

/// `tracer key show` output for the key in `dir`, saved as a file for `--key`.
fn public_key_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("public.txt");
    std::fs::write(&path, key_show(&dir.join("audit.key"))?)?;
    Ok(path)
}

fn lines_of(run: &TracerRun) -> Vec<String> {
    run.stdout.lines().map(str::to_owned).collect()
}

fn seq(line: &str) -> u64 {
    let value: Value = serde_json::from_str(line).expect("a JSON line");
    value.u64_field("audit.seq")
}

fn kind(line: &str) -> String {
    let value: Value = serde_json::from_str(line).expect("a JSON line");
    value.str_field("audit.kind").to_owned()
}

/// Writes `lines` (plus `tail` unterminated) as a tampered copy and verifies it.
fn verify_copy(dir: &Path, name: &str, lines: &[String], tail: &str) -> Result<Verdict> {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    text.push_str(tail);
    std::fs::write(&path, text)?;
    verify(public_key_file(dir)?.to_str().context("path")?, &[&path])
}

/// `tracer verify` failed, naming `damage` at the 1-based `line` holding `seq`.
fn assert_named(verdict: &Verdict, damage: &str, line: usize, seq: u64) {
    assert!(!verdict.ok, "tampered copy verified: {verdict:?}");
    let out = &verdict.stdout;
    assert!(
        out.starts_with(&format!("FAILED: {damage}: ")),
        "expected {damage}: {verdict:?}"
    );
    assert!(
        out.contains(&format!(" line {line} (seq {seq}): ")),
        "expected line {line} (seq {seq}): {verdict:?}"
    );
}

#[test]
fn the_tracers_output_verifies_plain_and_compressed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (file, run) = trace(dir.path(), "records.jsonl", 10)?;
    let lines = lines_of(&run);
    assert_eq!(run.records.len(), 10, "{:#?}", run.lines);

    // seq 1.. without gaps; a new chain's start line first, the shutdown checkpoint last.
    let seqs: Vec<u64> = lines.iter().map(|l| seq(l)).collect();
    assert_eq!(seqs, (1..=lines.len() as u64).collect::<Vec<_>>());
    assert_eq!(run.lines[0].str_field("audit.start.reason"), "new_stream");
    let last = run.lines.last().context("no lines")?;
    assert_eq!(last.str_field("audit.kind"), "checkpoint");
    assert_eq!(last.str_field("audit.checkpoint.reason"), "shutdown");
    assert_eq!(run.summary["audit"]["last_seq"], lines.len() as u64);
    assert_eq!(run.summary["audit"]["stream"], "e2e-host");

    let shown = key_show(&dir.path().join("audit.key"))?;
    let fingerprint = shown
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .context("no fingerprint in key show")?;
    for checkpoint in run
        .lines
        .iter()
        .filter(|l| l.str_field("audit.kind") == "checkpoint")
    {
        assert_eq!(checkpoint.str_field("audit.key.fingerprint"), fingerprint);
    }

    let verdict = verify(
        public_key_file(dir.path())?.to_str().context("path")?,
        &[&file],
    )?;
    assert!(verdict.ok, "{verdict:?}");
    let expected = format!(
        "1 file, {n} records, seq 1..{n}, chain intact, last checkpoint {} (seq {n})\n\
         start: the stream's first record (seq 1) is included\n\
         end: the tracer's shutdown checkpoint is the last record",
        last.str_field("timestamp"),
        n = lines.len()
    );
    assert_eq!(verdict.stdout.trim(), expected);

    // What the auditor knows from the hub or NATS: the whole stream, to its last seq.
    let key_file = public_key_file(dir.path())?;
    let key_arg = key_file.to_str().context("path")?;
    let n = lines.len().to_string();
    let exact = ["--expect-start", "--expect-end-seq", n.as_str()];
    let verdict = verify_with(key_arg, &exact, &[&file])?;
    assert!(verdict.ok, "{verdict:?}");
    let more = (lines.len() + 1).to_string();
    let verdict = verify_with(key_arg, &["--expect-end-seq", more.as_str()], &[&file])?;
    assert!(
        !verdict.ok
            && verdict.stdout.contains("truncated")
            && verdict.stdout.contains("cut off the end"),
        "{verdict:?}"
    );

    // The base64 key on the command line, and a gzip copy.
    let base64 = shown
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .context("no public key in key show")?;
    let status = Command::new("gzip").arg("-k").arg(&file).status()?;
    assert!(status.success());
    let gz = dir.path().join("records.jsonl.gz");
    let verdict = verify(base64, &[&gz])?;
    assert!(verdict.ok, "{verdict:?}");
    assert!(verdict.stdout.starts_with("1 file, "), "{verdict:?}");

    // Someone else's key.
    let other = dir.path().join("other.key");
    key_show(&other)?;
    let verdict = verify(other.to_str().context("path")?, &[&file])?;
    assert!(
        !verdict.ok && verdict.stdout.contains("signature mismatch"),
        "{verdict:?}"
    );
    Ok(())
}

#[test]
fn key_and_state_files_are_private() -> Result<()> {
    let dir = tempfile::tempdir()?;
    trace(dir.path(), "records.jsonl", 1)?;
    for name in ["audit.key", "audit.state"] {
        let mode = std::fs::metadata(dir.path().join(name))?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
    }
    // The key file is standard PKCS#8: OpenSSL derives the same public key from it.
    let openssl = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(dir.path().join("audit.key"))
        .output()?;
    assert!(openssl.status.success(), "{openssl:?}");
    let shown = key_show(&dir.path().join("audit.key"))?;
    let pem = String::from_utf8(openssl.stdout)?;
    assert!(
        shown.contains(pem.trim()),
        "openssl: {pem}\ntracer: {shown}"
    );
    Ok(())
}

#[test]
fn each_kind_of_tampering_is_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let (_, run) = trace(dir, "records.jsonl", 10)?;
    let lines = lines_of(&run);
    let access: Vec<usize> = (0..lines.len())
        .filter(|&i| kind(&lines[i]) == "access")
        .collect();
    let checkpoints: Vec<usize> = (0..lines.len())
        .filter(|&i| kind(&lines[i]) == "checkpoint")
        .collect();
    assert!(checkpoints.len() >= 3, "{lines:#?}");

    // A field changed.
    let i = access[2];
    let mut modified = lines.clone();
    modified[i] = lines[i].replace("\"url.query\":\"n=2\"", "\"url.query\":\"n=7\"");
    assert_ne!(modified[i], lines[i]);
    let verdict = verify_copy(dir, "modified.jsonl", &modified, "")?;
    assert_named(&verdict, "modified", i + 1, seq(&lines[i]));

    // A line deleted: the next one names the gap.
    let mut deleted = lines.clone();
    deleted.remove(i);
    let verdict = verify_copy(dir, "deleted.jsonl", &deleted, "")?;
    assert_named(&verdict, "deleted", i + 1, seq(&lines[i + 1]));

    // A forged record, hashed correctly, claiming the seq of the record it precedes.
    let j = access[5];
    let forged = lines[access[4]]
        .replace("/hello.txt", "/admin.txt")
        .replace(
            &format!("\"audit.seq\":{},", seq(&lines[access[4]])),
            &format!("\"audit.seq\":{},", seq(&lines[j])),
        );
    let forged = reseal(&forged, &hash_of(&lines[j - 1])?, None)?;
    let mut inserted = lines.clone();
    inserted.insert(j, forged);
    let verdict = verify_copy(dir, "inserted.jsonl", &inserted, "")?;
    assert_named(&verdict, "inserted", j + 1, seq(&lines[j]));

    // Two lines swapped.
    let k = access[6];
    let mut reordered = lines.clone();
    reordered.swap(k, k + 1);
    let verdict = verify_copy(dir, "reordered.jsonl", &reordered, "")?;
    assert_named(&verdict, "reordered", k + 1, seq(&lines[k + 1]));

    // Cut in the middle of a line.
    let m = access[7];
    let half = &lines[m][..lines[m].len() / 2];
    let verdict = verify_copy(dir, "cut.jsonl", &lines[..m], half)?;
    assert!(!verdict.ok, "{verdict:?}");
    assert!(
        verdict.stdout.starts_with("FAILED: truncated: ")
            && verdict.stdout.contains(&format!(" line {}: ", m + 1)),
        "{verdict:?}"
    );

    // The tail dropped, closing checkpoint included.
    let end = lines.len() - 2;
    let verdict = verify_copy(dir, "tail.jsonl", &lines[..end], "")?;
    assert_named(&verdict, "truncated", end, seq(&lines[end - 1]));
    assert!(
        verdict.stdout.contains("no closing checkpoint"),
        "{verdict:?}"
    );

    // The closing checkpoint re-signed with another key (its hash recomputed).
    let other = dir.join("other.key");
    key_show(&other)?;
    let last = lines.len() - 1;
    let mut resigned = lines.clone();
    resigned[last] = reseal(&lines[last], &hash_of(&lines[last - 1])?, Some(&other))?;
    let verdict = verify_copy(dir, "resigned.jsonl", &resigned, "")?;
    assert_named(&verdict, "signature mismatch", last + 1, seq(&lines[last]));

    // A checkpoint altered and every hash after it recomputed: only the signature tells.
    let c = checkpoints[0];
    let mut altered = lines.clone();
    altered[c] = lines[c].replace(
        "\"audit.checkpoint.reason\":\"records\"",
        "\"audit.checkpoint.reason\":\"rotation\"",
    );
    assert_ne!(altered[c], lines[c]);
    rechain(&mut altered, c)?;
    let verdict = verify_copy(dir, "altered.jsonl", &altered, "")?;
    assert_named(&verdict, "signature mismatch", c + 1, seq(&lines[c]));
    Ok(())
}

#[test]
fn a_restart_with_the_same_state_file_continues_the_chain() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (first, first_run) = trace(dir.path(), "first.jsonl", 3)?;
    let (second, second_run) = trace(dir.path(), "second.jsonl", 3)?;
    let before = first_run.lines.last().context("no lines")?;
    let start = &second_run.lines[0];
    assert_eq!(start.str_field("audit.kind"), "start");
    assert_eq!(start.str_field("audit.start.reason"), "resumed");
    assert_eq!(
        start.u64_field("audit.seq"),
        before.u64_field("audit.seq") + 1
    );
    assert_eq!(
        start.str_field("audit.prev_hash"),
        before.str_field("audit.hash")
    );

    let key = public_key_file(dir.path())?;
    let key = key.to_str().context("path")?;
    let verdict = verify(key, &[&first, &second])?;
    assert!(verdict.ok, "{verdict:?}");
    let total = first_run.lines.len() + second_run.lines.len();
    assert!(
        verdict
            .stdout
            .starts_with(&format!("2 files, {total} records, seq 1..")),
        "{verdict:?}"
    );
    // In the wrong order the second run's lines do not continue the first's.
    let verdict = verify(key, &[&second, &first])?;
    assert!(!verdict.ok, "{verdict:?}");
    Ok(())
}

#[test]
fn a_crash_is_a_declared_restart_gap_not_a_deletion() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, port, tracer) = start(dir.path())?;
    for n in 0..6 {
        curl(&[&url(port, &format!("/hello.txt?crash={n}"))])?;
    }
    // The crash comes after records were written; whatever was written by then, the
    // chain must hold.
    tracer.wait_for_records(6, std::time::Duration::from_secs(30))?;
    drop(server);
    let stdout = tracer.kill()?;
    let first = dir.path().join("crashed.jsonl");
    std::fs::write(&first, &stdout)?;
    let (second, run) = trace(dir.path(), "after.jsonl", 2)?;

    let start = &run.lines[0];
    assert_eq!(start.str_field("audit.start.reason"), "unclean_stop");
    let last_before: u64 = stdout.lines().last().map_or(0, seq);
    assert!(start.u64_field("audit.seq") > last_before + 1, "{start}");
    assert!(start.u64_field("audit.start.skipped_seqs") > 0, "{start}");

    let key = public_key_file(dir.path())?;
    let key = key.to_str().context("path")?;
    // The crashed run alone: its end is not covered by a checkpoint.
    let verdict = verify(key, &[&first])?;
    assert!(
        verdict.stdout.starts_with("FAILED: truncated: "),
        "{verdict:?}"
    );
    // Both runs: intact, with the gap reported as a restart after an unclean stop.
    let verdict = verify(key, &[&first, &second])?;
    assert!(verdict.ok, "{verdict:?}");
    assert!(
        verdict
            .stdout
            .contains("note: restart after an unclean stop"),
        "{verdict:?}"
    );
    Ok(())
}
