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

/// Runs `cargo xtask demo` (this very binary) on the shared control plane, its output in
/// `logs/demo-check.log`; fails with the log's tail unless it ran the exchange through the gateway
/// (200 for the granted agency, 403 for the other) and printed both audit records.
pub fn demo_check() -> Result<()> {
    let log = paths::cluster_dir().join("logs").join("demo-check.log");
    std::fs::create_dir_all(log.parent().context("the log directory")?)?;
    let out = std::fs::File::create(&log)?;
    eprintln!("xtask: cargo xtask demo (on the real node), output in {}", log.display());
    // Through cargo: `cargo test` may have rebuilt (replaced) this very binary meanwhile.
    let status = Command::new(env!("CARGO"))
        .args(["xtask", "demo"])
        .current_dir(paths::workspace_root())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .context("starting cargo xtask demo")?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let shown = ["HTTP/1.1 200 OK", "HTTP/1.1 403 Forbidden", "\"status\": 200", "\"status\": 403"];
    let missing: Vec<&str> = shown.iter().copied().filter(|s| !text.contains(s)).collect();
    if !status.success() || !missing.is_empty() {
        let tail: Vec<&str> = text.lines().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect();
        anyhow::bail!("exit {status}, missing {missing:?}:\n{}", tail.join("\n"));
    }
    println!(
        "demo on the real node ... ok (the exchange answered 200, the agency without a grant got 403, both audited)"
    );
    Ok(())
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
