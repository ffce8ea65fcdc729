//! Counting what passed and failed, for the closing `N passed, N failed` line.

/// Passed and failed checks.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
}

impl Tally {
    /// Adds a libtest summary line: `test result: ok. 26 passed; 0 failed; ...`.
    pub(crate) fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n: u64 = n.parse().unwrap_or(0);
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Prints `steps` as a table and counts them; failures are named `what: step: detail`.
pub(crate) fn report_steps(
    what: &str,
    steps: Vec<(String, bool, String)>,
    tally: &mut Tally,
    failures: &mut Vec<String>,
) {
    println!("| step | result | detail |\n|---|---|---|");
    for (step, passed, detail) in steps {
        println!(
            "| {step} | {} | {detail} |",
            if passed { "pass" } else { "FAIL" }
        );
        if passed {
            tally.passed += 1;
        } else {
            tally.failed += 1;
            failures.push(format!("{what}: {step}: {detail}"));
        }
    }
}
