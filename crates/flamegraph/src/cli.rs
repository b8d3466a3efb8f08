//! `flamegraph PROFILE -o out.svg [--title T] [--folded out.folded]`: a CLI entry any binary
//! (e.g. `perf-hub flamegraph`) can call with its remaining arguments.

use std::path::PathBuf;

use crate::error::FlameError;
use crate::pipeline::{fold_file, write_svg};
use crate::render::RenderOptions;

const USAGE: &str = "usage: flamegraph PROFILE -o OUT.svg [--title TITLE] [--subtitle TEXT] \
                     [--width PX] [--folded OUT.folded]\n  PROFILE: .cpuprofile, .heapprofile, \
                     perf script text, or folded stacks (detected from the content)";

/// What to render: `input` to the SVG `output`, optionally also the folded stacks.
#[derive(Debug, Default)]
pub struct Args {
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub folded: Option<PathBuf>,
    pub render: RenderOptions,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-o" | "--output" => parsed.output = Some(PathBuf::from(value(&arg)?)),
            "--folded" => parsed.folded = Some(PathBuf::from(value(&arg)?)),
            "--title" => parsed.render.title = Some(value(&arg)?),
            "--subtitle" => parsed.render.subtitle = Some(value(&arg)?),
            "--width" => {
                let v = value(&arg)?;
                parsed.render.width = Some(v.parse().map_err(|_| format!("bad --width {v:?}"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ if parsed.input.is_none() => parsed.input = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    if parsed.input.is_none() || parsed.output.is_none() {
        return Err("PROFILE and -o OUT.svg are required".into());
    }
    Ok(parsed)
}

fn run(args: &Args) -> Result<String, FlameError> {
    let (Some(input), Some(output)) = (&args.input, &args.output) else {
        return Err(FlameError::UnknownFormat);
    };
    let fold = fold_file(input)?;
    if let Some(path) = &args.folded {
        std::fs::write(path, &fold.folded).map_err(|e| FlameError::io(format!("writing {}", path.display()), e))?;
    }
    let svg_bytes = write_svg(&fold, output, &args.render)?;
    Ok(format!(
        "{}: {:?}, {} bytes in, {} stacks, {} {} -> {} ({} bytes)",
        input.display(),
        fold.format,
        fold.input_bytes,
        fold.summary.stacks,
        fold.summary.total,
        fold.count_name,
        output.display(),
        svg_bytes
    ))
}

/// Runs the flamegraph command with `args` (without the program/subcommand name).
/// Returns the process exit code: 0 ok, 1 failed, 2 bad usage.
pub fn flamegraph_main(args: impl IntoIterator<Item = String>) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            eprintln!("{USAGE}");
            return 2;
        }
    };
    run_args(&args)
}

/// Renders already parsed arguments (for callers with their own argument parser, such as
/// `perf-hub flamegraph`): prints a summary line, returns 0, or 1 after printing the error.
pub fn run_args(args: &Args) -> i32 {
    match run(args) {
        Ok(summary) => {
            println!("{summary}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_arguments() {
        let a = parse(strings(&["p.cpuprofile", "-o", "x.svg", "--title", "T", "--width", "800"])).unwrap();
        assert_eq!(a.input.unwrap(), PathBuf::from("p.cpuprofile"));
        assert_eq!(a.render.title.as_deref(), Some("T"));
        assert_eq!(a.render.width, Some(800));
        assert!(parse(strings(&["p"])).is_err());
        assert!(parse(strings(&["p", "-o"])).is_err());
        assert!(parse(strings(&["p", "-o", "x", "--bogus"])).is_err());
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(flamegraph_main(strings(&[])), 2);
        assert_eq!(flamegraph_main(strings(&["/nonexistent/p", "-o", "/tmp/x.svg"])), 1);
    }
}
