//! What `/proc` says about the target: is it alive, and will its JS frames have names
//! (node writes `/tmp/perf-PID.map` only when started with `--perf-basic-prof[-only-functions]`).

use std::path::PathBuf;

/// Whether perf can name the target's JIT-compiled JS frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JsSymbols {
    /// Started with `--perf-basic-prof*` and its perf map exists: JS frames get names.
    PerfMap,
    /// The flag is set but no perf map was found (e.g. not written yet, or another /tmp).
    FlagWithoutMap,
    /// A perf map exists but the flag was not seen (set some other way).
    MapWithoutFlag,
    /// Not enabled: JS frames show as `[unknown]`.
    NotEnabled,
}

impl JsSymbols {
    /// True when the JS frames are expected to carry names.
    pub fn symbolized(self) -> bool {
        matches!(self, JsSymbols::PerfMap | JsSymbols::MapWithoutFlag)
    }
}

const PERF_MAP_FLAGS: [&str; 2] = ["--perf-basic-prof", "--perf-basic-prof-only-functions"];

/// True while `pid` runs; a zombie (exited, not yet reaped by its parent) counts as gone.
pub(crate) fn process_exists(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: comm may hold spaces and parentheses, the state follows the last ')'.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X') | Some('x'))
}

/// Looks at the target's command line, `NODE_OPTIONS` and perf map file.
pub(crate) fn js_symbols(pid: u32) -> (JsSymbols, Vec<String>) {
    let flag = flag_in_cmdline(pid).or_else(|| flag_in_node_options(pid));
    let uses_jitdump = cmdline_args(pid).iter().any(|a| normalize(a) == "--perf-prof");
    let map = perf_map_path(pid);
    let state = match (&flag, &map) {
        (Some(_), Some(_)) => JsSymbols::PerfMap,
        (Some(_), None) => JsSymbols::FlagWithoutMap,
        (None, Some(_)) => JsSymbols::MapWithoutFlag,
        (None, None) => JsSymbols::NotEnabled,
    };
    let mut notes = vec![symbol_note(pid, state, flag.as_deref(), map)];
    if uses_jitdump && !state.symbolized() {
        notes.push(
            "--perf-prof (jitdump) needs `perf inject --jit`, which this capture does not run; \
                    use --perf-basic-prof-only-functions instead"
                .to_string(),
        );
    }
    (state, notes)
}

fn symbol_note(pid: u32, state: JsSymbols, flag: Option<&str>, map: Option<PathBuf>) -> String {
    let map = map.map(|p| p.display().to_string()).unwrap_or_default();
    match state {
        JsSymbols::PerfMap => format!("JS frames symbolized: process {pid} runs with {} ({map})", flag.unwrap_or("")),
        JsSymbols::MapWithoutFlag => format!("JS frames symbolized from {map} (no --perf-basic-prof flag seen)"),
        JsSymbols::FlagWithoutMap => format!(
            "JS frames may be unnamed: process {pid} runs with {} but /tmp/perf-{pid}.map was not found",
            flag.unwrap_or("")
        ),
        JsSymbols::NotEnabled => format!(
            "JS frames are NOT symbolized (they show as [perf-PID.map] or [unknown]): process {pid} was not started with \
             --perf-basic-prof or --perf-basic-prof-only-functions; restart it with \
             NODE_OPTIONS=--perf-basic-prof-only-functions to get JS names (native frames are named either way)"
        ),
    }
}

/// V8 accepts `--perf_basic_prof` as well as `--perf-basic-prof`.
fn normalize(arg: &str) -> String {
    arg.replace('_', "-")
}

fn cmdline_args(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

fn find_flag<'a>(args: impl Iterator<Item = &'a str>) -> Option<String> {
    args.map(normalize).find(|a| PERF_MAP_FLAGS.contains(&a.as_str()))
}

fn flag_in_cmdline(pid: u32) -> Option<String> {
    let args = cmdline_args(pid);
    // Node options come before the script; a flag after it belongs to the app.
    let node_args = args.iter().skip(1).take_while(|a| a.starts_with('-'));
    find_flag(node_args.map(String::as_str))
}

fn flag_in_node_options(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let options = raw.split(|&b| b == 0).find_map(|kv| kv.strip_prefix(b"NODE_OPTIONS="))?;
    let options = String::from_utf8_lossy(options);
    find_flag(options.split_whitespace())
}

/// `/tmp/perf-PID.map`, or the map inside the target's mount namespace under its own pid
/// (containers: perf looks there too).
fn perf_map_path(pid: u32) -> Option<PathBuf> {
    let host = PathBuf::from(format!("/tmp/perf-{pid}.map"));
    if host.is_file() {
        return Some(host);
    }
    let ns_pid = namespace_pid(pid)?;
    let inner = PathBuf::from(format!("/proc/{pid}/root/tmp/perf-{ns_pid}.map"));
    inner.is_file().then_some(inner)
}

fn namespace_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_exists_and_has_no_js_symbols() {
        let me = std::process::id();
        assert!(process_exists(me));
        assert!(!process_exists(0));
        assert!(!process_exists(u32::MAX));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!process_exists(pid), "a zombie is not a live process");
        child.wait().unwrap();
        let (state, notes) = js_symbols(me);
        assert_eq!(state, JsSymbols::NotEnabled);
        assert!(notes[0].contains("NOT symbolized"), "{notes:?}");
        assert_eq!(namespace_pid(me), Some(me));
    }

    #[test]
    fn flags_are_normalised() {
        assert_eq!(
            find_flag(["--max-old-space-size=9", "--perf_basic_prof"].into_iter()).as_deref(),
            Some("--perf-basic-prof")
        );
        assert_eq!(
            find_flag(["--perf-basic-prof-only-functions"].into_iter()).as_deref(),
            Some("--perf-basic-prof-only-functions")
        );
        assert_eq!(find_flag(["--perf-prof"].into_iter()), None);
    }
}
