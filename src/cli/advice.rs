//! What to do about a reason, from the README's troubleshooting table, compiled in: the CLI says exactly
//! what the documentation says, and a reason added to one is seen missing from the other by a test.

/// The README, as built.
const README: &str = include_str!("../../README.md");

/// `(reasons, meaning, what to do)` rows of the troubleshooting table, parsed once.
fn rows() -> &'static [(Vec<String>, String, String)] {
    static ROWS: std::sync::OnceLock<Vec<(Vec<String>, String, String)>> = std::sync::OnceLock::new();
    ROWS.get_or_init(parse_rows)
}

fn parse_rows() -> Vec<(Vec<String>, String, String)> {
    README
        .split("## Troubleshooting")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            let [reasons, meaning, todo] = cells.as_slice() else {
                return None;
            };
            let names = reasons.split('`').skip(1).step_by(2).map(str::to_string).collect();
            Some((names, plain(meaning), plain(todo)))
        })
        .collect()
}

/// Markdown cell text as plain text: code spans lose their backticks.
fn plain(cell: &str) -> String {
    cell.replace('`', "")
}

/// What the documentation says to do about `reason` (None for a reason it does not list, or `—`).
pub fn advice(reason: &str) -> Option<String> {
    rows()
        .iter()
        .find(|(names, _, _)| names.iter().any(|n| n == reason))
        .map(|(_, _, todo)| todo.clone())
        .filter(|todo| todo != "—")
}

/// What the reason means, from the same table.
pub fn meaning(reason: &str) -> Option<String> {
    rows()
        .iter()
        .find(|(names, _, _)| names.iter().any(|n| n == reason))
        .map(|(_, meaning, _)| meaning.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::Reason;

    #[test]
    fn every_ready_reason_has_documented_advice() {
        let ready = &Reason::ALL[..Reason::ALL.iter().position(|r| *r == Reason::ReconcileSuccess).unwrap()];
        for reason in ready.iter().filter(|r| **r != Reason::Available) {
            assert!(
                advice(reason.as_str()).is_some(),
                "{reason:?} has no row in the troubleshooting table"
            );
        }
        assert_eq!(advice("Available"), None, "nothing to do");
        assert!(advice("InvalidSpec").unwrap().contains("fix the spec or Secret"));
        assert!(
            advice("ReconcileError").unwrap().contains("retried with backoff"),
            "a second name in a row"
        );
        assert!(!advice("AdoptionAmbiguous").unwrap().contains('`'));
        assert!(meaning("RateLimited").unwrap().contains("429"));
        assert_eq!(advice("NoSuchReason"), None);
    }
}
