//! The helper process entry: `--pid N --seconds N --frequency HZ --out-dir DIR
//! [--perf-bin PATH] [--keep-perf-data]`. Writes `perf.folded`, `perf.svg` and `result.json`
//! (`{"ok": true, ...}` or `{"ok": false, "error": {"kind", "message"}}`) into the out dir.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{capture_with, CaptureOptions, PerfCapture, PerfError};

const USAGE: &str = "usage: perf-capture --pid PID --seconds N --frequency HZ --out-dir DIR \
                     [--perf-bin PATH] [--keep-perf-data]";

#[derive(Serialize)]
struct ErrorReport {
    kind: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ResultFile<'a> {
    ok: bool,
    #[serde(flatten)]
    capture: Option<&'a PerfCapture>,
    error: Option<ErrorReport>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<CaptureOptions, String> {
    let (mut pid, mut seconds, mut frequency, mut out_dir) = (None, None, None, None);
    let (mut perf_bin, mut keep) = (None, false);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "--keep-perf-data" {
            keep = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let number = |v: &str| v.parse::<u32>().map_err(|_| format!("{arg}: not a number: {v:?}"));
        match arg.as_str() {
            "--pid" => pid = Some(number(&value)?),
            "--seconds" => seconds = Some(number(&value)?),
            "--frequency" => frequency = Some(number(&value)?),
            "--out-dir" => out_dir = Some(PathBuf::from(value)),
            "--perf-bin" => perf_bin = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    let (Some(pid), Some(seconds), Some(frequency), Some(out_dir)) = (pid, seconds, frequency, out_dir) else {
        return Err("--pid, --seconds, --frequency and --out-dir are required".into());
    };
    let mut opts = CaptureOptions::new(pid, seconds, frequency, &out_dir);
    if let Some(bin) = perf_bin {
        opts.perf_bin = bin;
    }
    opts.keep_perf_data = keep;
    Ok(opts)
}

fn write_result(dir: &Path, result: &ResultFile) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(result).map_err(std::io::Error::other)?;
    let tmp = dir.join("result.json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, dir.join("result.json"))
}

/// Runs one capture from command-line style `args` (without the program name).
/// Exit code: 0 captured, 1 capture failed (see result.json), 2 bad usage.
pub fn helper_main(args: impl IntoIterator<Item = String>) -> i32 {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("error: {msg}\n{USAGE}");
            return 2;
        }
    };
    let outcome = capture_with(&opts);
    let result = match &outcome {
        Ok(capture) => ResultFile { ok: true, capture: Some(capture), error: None },
        Err(e) => ResultFile { ok: false, capture: None, error: Some(report(e)) },
    };
    if let Err(e) = write_result(&opts.work_dir, &result) {
        eprintln!("error: writing {}/result.json: {e}", opts.work_dir.display());
        return 1;
    }
    match outcome {
        Ok(c) => {
            println!("captured {} samples of pid {} into {}", c.samples, c.pid, c.svg.display());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn report(e: &PerfError) -> ErrorReport {
    ErrorReport { kind: e.kind(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_arguments() {
        let o = parse(strings(&[
            "--pid",
            "12",
            "--seconds",
            "3",
            "--frequency",
            "99",
            "--out-dir",
            "/x",
            "--keep-perf-data",
        ]))
        .unwrap();
        assert_eq!((o.pid, o.seconds, o.frequency_hz, o.keep_perf_data), (12, 3, 99, true));
        assert!(parse(strings(&["--pid", "x"])).is_err());
        assert!(parse(strings(&["--pid", "1"])).is_err());
        assert!(parse(strings(&["--bogus", "1"])).is_err());
    }

    #[test]
    fn writes_error_result_json() {
        let dir = std::env::temp_dir().join(format!("flame-helper-unit-{}", std::process::id()));
        let code = helper_main(strings(&[
            "--pid",
            "1",
            "--seconds",
            "0",
            "--frequency",
            "99",
            "--out-dir",
            &dir.display().to_string(),
        ]));
        assert_eq!(code, 1);
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["error"]["kind"], "invalid_seconds");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
