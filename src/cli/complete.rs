//! kubectl's completion of the plugin: for `kubectl whsub ARGS<TAB>`, kubectl (1.26 and later) runs the
//! program `kubectl_complete-whsub` found on PATH with the words after `whsub` (the last one being typed,
//! possibly empty) and reads the answer cobra's `__complete` gives: one candidate per line (`value`, a tab
//! and a description), then `:DIRECTIVE`. This binary answers so when invoked under that name.
//!
//! Written over clap's command tree rather than with clap_complete's dynamic engine, which is behind an
//! unstable feature; the protocol is a few lines. What to offer is decided by [`complete`], a pure
//! function; only subscription and namespace names are read from the cluster.

use std::io::Write as _;

use kube::api::{Api, ListParams};

use super::Target;
use crate::api::WebhookSubscription;

/// cobra's directive: the shell must not fall back to file names.
const NO_FILE_COMPLETION: u32 = 4;
/// cobra's directive: the shell's default completion (file names).
const DEFAULT_COMPLETION: u32 = 0;

/// Names that only the cluster knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing to read.
    Nothing,
    /// The WebhookSubscriptions of the target's namespace.
    Subscriptions(Target),
    /// The cluster's namespaces.
    Namespaces(Target),
}

/// What to offer for the word being typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// `(value, description)`, already matching what is typed.
    pub candidates: Vec<(String, String)>,
    /// Names to read from the cluster (then kept if they match what is typed).
    pub lookup: Lookup,
    /// cobra's directive.
    pub directive: u32,
}

/// Records a value the words give for one of the target's options.
fn record(target: &mut Target, id: &str, value: Option<&str>) {
    match (id, value) {
        ("namespace", Some(v)) => target.namespace = Some(v.to_string()),
        ("context", Some(v)) => target.context = Some(v.to_string()),
        ("kubeconfig", Some(v)) => target.kubeconfig = Some(v.into()),
        ("all_namespaces", None) => target.all_namespaces = true,
        _ => {}
    }
}

fn takes_value(arg: &clap::Arg) -> bool {
    arg.get_action().takes_values()
}

fn about(text: Option<&clap::builder::StyledStr>) -> String {
    let text = text.map(ToString::to_string).unwrap_or_default();
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_string()
}

/// What to offer for `words`, the words after the plugin's name, the last one being typed.
pub fn complete(root: &clap::Command, words: &[String]) -> Completion {
    let (typed, before) = match words.split_last() {
        Some((typed, before)) => (typed.as_str(), before),
        None => ("", &[][..]),
    };
    let mut command = root;
    let mut target = Target::default();
    let mut awaiting: Option<&clap::Arg> = None;
    for word in before {
        if let Some(arg) = awaiting.take() {
            record(&mut target, arg.get_id().as_str(), Some(word));
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            if let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(name)) {
                if takes_value(arg) && inline.is_none() {
                    awaiting = Some(arg);
                } else {
                    record(&mut target, arg.get_id().as_str(), inline);
                }
            }
            continue;
        }
        if let Some(short) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let letter = chars.next();
            if let Some(arg) = command.get_arguments().find(|a| a.get_short() == letter) {
                let rest = chars.as_str();
                if takes_value(arg) && rest.is_empty() {
                    awaiting = Some(arg);
                } else {
                    record(&mut target, arg.get_id().as_str(), (!rest.is_empty()).then_some(rest));
                }
            }
            continue;
        }
        if let Some(sub) = command.find_subcommand(word) {
            command = sub;
        }
    }
    let matching = |value: &str| value.starts_with(typed);
    let offer = |candidates: Vec<(String, String)>, lookup, directive| Completion {
        candidates: candidates.into_iter().filter(|(v, _)| matching(v)).collect(),
        lookup,
        directive,
    };
    if let Some(arg) = awaiting {
        let values: Vec<(String, String)> = arg
            .get_possible_values()
            .iter()
            .map(|v| (v.get_name().to_string(), about(v.get_help())))
            .collect();
        return match arg.get_id().as_str() {
            "namespace" => offer(Vec::new(), Lookup::Namespaces(target), NO_FILE_COMPLETION),
            "kubeconfig" | "files" => offer(Vec::new(), Lookup::Nothing, DEFAULT_COMPLETION),
            _ => offer(values, Lookup::Nothing, NO_FILE_COMPLETION),
        };
    }
    if typed.starts_with('-') {
        let mut flags: Vec<(String, String)> = command
            .get_arguments()
            .filter(|a| !a.is_positional() && !a.is_hide_set())
            .filter_map(|a| a.get_long().map(|long| (format!("--{long}"), about(a.get_help()))))
            .collect();
        flags.push(("--help".into(), "Print help".into()));
        return offer(flags, Lookup::Nothing, NO_FILE_COMPLETION);
    }
    let subcommands: Vec<(String, String)> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| (s.get_name().to_string(), about(s.get_about())))
        .collect();
    if !subcommands.is_empty() {
        return offer(subcommands, Lookup::Nothing, NO_FILE_COMPLETION);
    }
    match command.get_positionals().next() {
        Some(arg) if arg.get_id() == "names" => offer(Vec::new(), Lookup::Subscriptions(target), NO_FILE_COMPLETION),
        Some(arg) => offer(
            arg.get_possible_values()
                .iter()
                .map(|v| (v.get_name().to_string(), about(v.get_help())))
                .collect(),
            Lookup::Nothing,
            NO_FILE_COMPLETION,
        ),
        None => offer(Vec::new(), Lookup::Nothing, NO_FILE_COMPLETION),
    }
}

/// Reads the names a completion needs; nothing when the cluster does not answer in time (a completion
/// must never hang the shell, nor print errors into it).
async fn names(lookup: &Lookup) -> Vec<String> {
    let (target, subscriptions) = match lookup {
        Lookup::Nothing => return Vec::new(),
        Lookup::Subscriptions(target) => (target, true),
        Lookup::Namespaces(target) => (target, false),
    };
    let read = async {
        let (client, namespace) = super::connect(target).await.ok()?;
        if subscriptions {
            names_in(Api::<WebhookSubscription>::namespaced(client, &namespace)).await
        } else {
            names_in(Api::<k8s_openapi::api::core::v1::Namespace>::all(client)).await
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The names of the objects `api` lists (metadata only).
async fn names_in<K>(api: Api<K>) -> Option<Vec<String>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list_metadata(&ListParams::default()).await.ok()?;
    Some(list.items.into_iter().filter_map(|o| o.metadata.name).collect())
}

/// Answers kubectl as `kubectl_complete-whsub WORDS...`.
pub fn run_kubectl_complete(root: &clap::Command, words: &[String]) {
    let completion = complete(root, words);
    let typed = words.last().map(String::as_str).unwrap_or_default();
    let read = match &completion.lookup {
        Lookup::Nothing => Vec::new(),
        lookup => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(names(lookup)))
            .unwrap_or_default(),
    };
    let mut out = std::io::stdout().lock();
    for (value, description) in &completion.candidates {
        let _ = if description.is_empty() {
            writeln!(out, "{value}")
        } else {
            writeln!(out, "{value}\t{description}")
        };
    }
    for name in read.iter().filter(|n| n.starts_with(typed)) {
        let _ = writeln!(out, "{name}");
    }
    let _ = writeln!(out, ":{}", completion.directive);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser, Subcommand};

    /// A command tree shaped like the binary's.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Show subscriptions.
        Status(super::super::StatusArgs),
        /// Ask the operator to renew now.
        Renew(super::super::RequestArgs),
        /// Print shell completion.
        Completion { shell: clap_complete::Shell },
    }

    fn words(line: &str) -> Vec<String> {
        let mut words: Vec<String> = line.split(' ').map(str::to_string).collect();
        if line.is_empty() {
            words = vec![String::new()];
        }
        words
    }

    fn values(c: &Completion) -> Vec<&str> {
        c.candidates.iter().map(|(v, _)| v.as_str()).collect()
    }

    #[test]
    fn subcommands_then_flags_then_names_from_the_cluster() {
        let root = Cli::command();
        let c = complete(&root, &words(""));
        assert_eq!(values(&c), ["status", "renew", "completion"]);
        assert_eq!(c.candidates[0].1, "Show subscriptions");
        assert_eq!(values(&complete(&root, &words("re"))), ["renew"]);
        let c = complete(&root, &words("renew --no"));
        assert_eq!(values(&c), ["--no-wait"]);
        assert_eq!(c.directive, NO_FILE_COMPLETION);
        let c = complete(&root, &words("status -n team-a --context kind-a a"));
        assert!(c.candidates.is_empty());
        let Lookup::Subscriptions(target) = c.lookup else {
            panic!("{c:?}")
        };
        assert_eq!(target.namespace.as_deref(), Some("team-a"));
        assert_eq!(target.context.as_deref(), Some("kind-a"));
        let c = complete(&root, &words("status --namespace=team-b "));
        assert!(matches!(c.lookup, Lookup::Subscriptions(t) if t.namespace.as_deref() == Some("team-b")));
    }

    #[test]
    fn option_values_are_completed_for_what_they_take() {
        let root = Cli::command();
        assert!(matches!(
            complete(&root, &words("status -n ")).lookup,
            Lookup::Namespaces(_)
        ));
        let c = complete(&root, &words("status --kubeconfig "));
        assert_eq!(
            (c.lookup, c.directive),
            (Lookup::Nothing, DEFAULT_COMPLETION),
            "file names"
        );
        assert_eq!(values(&complete(&root, &words("completion z"))), ["zsh"]);
        let c = complete(&root, &words("renew --timeout "));
        assert!(c.candidates.is_empty() && c.lookup == Lookup::Nothing);
    }
}
