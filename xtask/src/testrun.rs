//! `cargo xtask test`: every check CI runs, ending with one summary line over all test binaries.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::paths;

/// Totals over every `test result:` line cargo's test harness printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Totals {
    /// Adds one harness line such as `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; ...`.
    pub fn add_line(&mut self, line: &str) -> bool {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return false;
        };
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let count = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
            match (words.len(), words.last()) {
                (n, Some(&"passed")) if n >= 2 => self.passed += count(n - 2),
                (n, Some(&"failed")) if n >= 2 => self.failed += count(n - 2),
                (n, Some(&"ignored")) if n >= 2 => self.ignored += count(n - 2),
                _ => {}
            }
        }
        true
    }
}

/// Runs `cargo test` over the workspace, streaming its output, and returns the totals.
pub fn cargo_test(extra: &[String]) -> Result<(bool, Totals)> {
    let mut child = Command::new(env!("CARGO"))
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(extra)
        .current_dir(paths::workspace_root())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let mut totals = Totals::default();
    for line in BufReader::new(child.stdout.take().context("cargo test stdout")?).lines() {
        let line = line?;
        println!("{line}");
        totals.add_line(&line);
    }
    let ok = child.wait()?.success();
    Ok((ok, totals))
}

/// Runs a cargo command for a check, reporting whether it passed.
pub fn cargo_check(args: &[&str]) -> Result<bool> {
    eprintln!("xtask: cargo {}", args.join(" "));
    Ok(Command::new(env!("CARGO")).args(args).current_dir(paths::workspace_root()).status()?.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_harness_lines() {
        let mut t = Totals::default();
        assert!(
            t.add_line("test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s")
        );
        assert!(t.add_line("test result: FAILED. 10 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out"));
        assert!(!t.add_line("running 3 tests"));
        assert_eq!(t, Totals { passed: 13, failed: 2, ignored: 1 });
    }
}
