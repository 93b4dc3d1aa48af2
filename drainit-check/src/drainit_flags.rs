//! drainit's settings in a container, read with drainit's own parser
//! (`drainit::cli::Cli`), so the checker and drainit never disagree.
//!
//! A container runs drainit when `command[0]` is `drainit` (any directory),
//! or when it has no `command` and its image is drainit's own (`…/drainit:TAG`,
//! ENTRYPOINT `/drainit`). Its argv is `command` + `args` after Kubernetes'
//! `$(VAR)` expansion.
//!
//! The container's `DRAINIT_*` variables can't reach clap through `env = …`:
//! clap reads the checker's *own* process environment when the command is
//! built. So every argument's `env` is switched off first (a `DRAINIT_*` in
//! the checker's environment changes nothing), the argv is parsed once, and
//! each variable the container sets becomes the equivalent flag, written
//! `--flag=VALUE` (a value starting with `-` stays a value) and added only
//! where the command line does not give that flag already: arguments win
//! over variables, as in drainit. A switch (`DRAINIT_STRICT`, no value on
//! the command line) becomes the switch's default instead, so its value goes
//! through the switch's own value parser, as clap does for `env`. Then the
//! argv is parsed again and the result is exactly what drainit would run
//! with.
//!
//! Values from a Secret or ConfigMap are unknown here: drainit's default is
//! assumed, except for the `/prestop` token, which only has to be present.
//! `status.hostIP` and `status.podIP` read as documentation addresses
//! (192.0.2.10, 192.0.2.20), so `--prestop-allow-from=node,$(HOST_IP)/32` parses.

use std::collections::HashMap;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory, FromArgMatches};
use drainit::cli::{Cli, Mode};
use k8s_openapi::api::core::v1::Container;

/// What `status.hostIP` reads as (TEST-NET-1).
pub const HOST_IP_PLACEHOLDER: &str = "192.0.2.10";
/// What `status.podIP` reads as (TEST-NET-1).
pub const POD_IP_PLACEHOLDER: &str = "192.0.2.20";
/// What a `DRAINIT_PRESTOP_TOKEN` from a Secret reads as (its value is unknown here).
pub const SECRET_TOKEN_PLACEHOLDER: &str = "<from a Secret>";

/// drainit's settings in one container.
#[derive(Debug)]
pub struct DrainitSettings {
    /// The command line as drainit parses it, variables included.
    pub cli: Cli,
    /// `--grace-period` or `DRAINIT_GRACE_PERIOD` was given (else drainit's default).
    pub grace_period_given: bool,
    /// `DRAINIT_*` variables drainit does not know (and so ignores).
    pub unknown_variables: Vec<String>,
}

impl DrainitSettings {
    /// Whether drainit runs as `drainit sidecar` here.
    pub fn is_sidecar(&self) -> bool {
        matches!(self.cli.mode, Some(Mode::Sidecar(_)))
    }
}

/// What a container says about drainit.
#[derive(Debug)]
pub enum Reading {
    /// The container does not run drainit.
    NotDrainit,
    /// It does, with these settings.
    Drainit(Box<DrainitSettings>),
    /// It does, but drainit would refuse to start: why.
    Refused(String),
}

/// An environment variable's value as the container will see it.
#[derive(Debug, Clone)]
enum EnvValue {
    Literal(String),
    /// From a Secret, a ConfigMap or a resource: not known here.
    Opaque,
}

/// Reads drainit's settings from a container, if it runs drainit.
pub fn read(container: &Container) -> Reading {
    let vars = container_env(container);
    let Some(argv) = drainit_argv(container, &vars) else {
        return Reading::NotDrainit;
    };
    match parse(&argv, &vars) {
        Ok(settings) => Reading::Drainit(Box::new(settings)),
        Err(why) => Reading::Refused(why),
    }
}

/// Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, a variable defined
/// earlier is replaced, an unknown one is left as it is.
fn expand(text: &str, vars: &HashMap<String, EnvValue>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|i| i.split_once(')')) {
            match vars.get(name) {
                Some(EnvValue::Literal(value)) => out.push_str(value),
                _ => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment, in order, expanded the way the kubelet does.
fn container_env(container: &Container) -> HashMap<String, EnvValue> {
    let mut vars = HashMap::new();
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            Some(source) => match source.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("status.hostIP") => EnvValue::Literal(HOST_IP_PLACEHOLDER.into()),
                Some("status.podIP") => EnvValue::Literal(POD_IP_PLACEHOLDER.into()),
                _ => EnvValue::Opaque,
            },
            None => EnvValue::Literal(expand(var.value.as_deref().unwrap_or(""), &vars)),
        };
        vars.insert(var.name.clone(), value);
    }
    vars
}

/// Whether an image reference names drainit's own image (`…/drainit[:tag][@digest]`).
pub fn image_is_drainit(image: Option<&str>) -> bool {
    let Some(image) = image else { return false };
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next() == Some("drainit")
}

fn drainit_argv(container: &Container, vars: &HashMap<String, EnvValue>) -> Option<Vec<String>> {
    let command = container.command.as_deref().unwrap_or_default();
    let args = container.args.as_deref().unwrap_or_default();
    let argv: Vec<&String> = match command.first() {
        Some(first) if first.rsplit('/').next() == Some("drainit") => {
            command.iter().chain(args).collect()
        }
        Some(_) => return None,
        None if image_is_drainit(container.image.as_deref()) => {
            let entrypoint = [String::from("/drainit")];
            return Some(
                entrypoint
                    .iter()
                    .chain(args)
                    .map(|a| expand(a, vars))
                    .collect(),
            );
        }
        None => return None,
    };
    Some(argv.into_iter().map(|a| expand(a, vars)).collect())
}

/// One drainit argument that a variable can set.
struct EnvArg {
    id: String,
    variable: String,
    long: String,
    takes_value: bool,
    /// The subcommand (`sidecar`) the argument belongs to; `None`: top level or global.
    subcommand: Option<String>,
}

fn env_args(command: &Command) -> Vec<EnvArg> {
    let top = command.get_arguments().map(|a| (a, None));
    let subs = command.get_subcommands().flat_map(|sub| {
        sub.get_arguments()
            .map(move |a| (a, Some(sub.get_name().to_string())))
    });
    top.chain(subs)
        .filter_map(|(arg, subcommand)| {
            Some(EnvArg {
                id: arg.get_id().to_string(),
                variable: arg.get_env()?.to_str()?.to_string(),
                long: arg.get_long()?.to_string(),
                takes_value: arg.get_action().takes_values(),
                subcommand,
            })
        })
        .collect()
}

/// drainit's command with no argument reading the process environment.
fn without_env(command: Command) -> Command {
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut command = command.mut_args(|arg| arg.env(None::<&'static str>));
    for name in subcommands {
        command = command.mut_subcommand(name, |sub| {
            sub.mut_args(|arg| arg.env(None::<&'static str>))
        });
    }
    command
}

fn from_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches.try_contains_id(id).unwrap_or(false)
        && matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// clap's error as one line, without its `error: ` prefix and usage.
fn clap_message(error: &clap::Error) -> String {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return "drainit prints its help and exits (--help): the app never starts".into()
        }
        ErrorKind::DisplayVersion => {
            return "drainit prints its version and exits (--version): the app never starts".into()
        }
        _ => {}
    }
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or("").trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

fn parse(argv: &[String], vars: &HashMap<String, EnvValue>) -> Result<DrainitSettings, String> {
    let full = Cli::command();
    let known = env_args(&full);
    let mut command = without_env(full);
    let first = command
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| clap_message(&e))?;
    let used = first.subcommand();

    let mut global_flags = Vec::new();
    let mut switches: Vec<(String, Option<String>, String)> = Vec::new();
    let mut subcommand_flags = Vec::new();
    // (flag, variable) for every flag that came from a variable.
    let mut translated: Vec<(String, String)> = Vec::new();
    for arg in &known {
        let value = match vars.get(&arg.variable) {
            None => continue,
            Some(EnvValue::Literal(value)) if value.is_empty() => continue,
            Some(EnvValue::Literal(value)) => value.clone(),
            Some(EnvValue::Opaque) if arg.long == "prestop-token" => {
                SECRET_TOKEN_PLACEHOLDER.into()
            }
            Some(EnvValue::Opaque) => continue,
        };
        let given = from_command_line(&first, &arg.id)
            || used.is_some_and(|(_, m)| from_command_line(m, &arg.id));
        let elsewhere = arg
            .subcommand
            .as_deref()
            .is_some_and(|sub| used.map(|(name, _)| name) != Some(sub));
        // Given already, or an option of a subcommand not in use (drainit ignores it).
        if given || elsewhere {
            continue;
        }
        translated.push((format!("--{}", arg.long), arg.variable.clone()));
        if !arg.takes_value {
            // A switch (`--strict`, `-v`) takes no value on the command line;
            // its variable's value goes through the switch's own value parser,
            // as clap does for `env`: as the switch's default.
            switches.push((arg.id.clone(), arg.subcommand.clone(), value));
            continue;
        }
        let flag = format!("--{}={value}", arg.long);
        if arg.subcommand.is_some() {
            subcommand_flags.push(flag);
        } else {
            global_flags.push(flag);
        }
    }
    for (id, subcommand, value) in switches {
        command = match subcommand {
            Some(sub) => {
                command.mut_subcommand(sub, |sub| sub.mut_arg(&id, |a| a.default_value(value)))
            }
            None => command.mut_arg(&id, |a| a.default_value(value)),
        };
    }

    let mut full_argv: Vec<String> = Vec::with_capacity(argv.len() + global_flags.len() + 2);
    full_argv.extend(argv.first().cloned());
    full_argv.extend(global_flags);
    full_argv.extend(argv.iter().skip(1).cloned());
    if !subcommand_flags.is_empty() {
        // A subcommand (`drainit sidecar`) takes no app command: its own
        // flags can go last, before a `--`.
        let at = full_argv
            .iter()
            .rposition(|a| a == "--")
            .unwrap_or(full_argv.len());
        full_argv.splice(at..at, subcommand_flags);
    }

    let matches = command.try_get_matches_from(&full_argv).map_err(|e| {
        let message = clap_message(&e);
        match translated
            .iter()
            .find(|(flag, _)| message.contains(flag.as_str()))
        {
            Some((_, variable)) => format!("{message} (from {variable})"),
            None => message,
        }
    })?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| clap_message(&e))?;
    // The cross-flag checks drainit makes after clap's (exit 2 there too).
    cli.settings
        .validate()
        .map_err(|problem| problem.to_string())?;
    if cli.mode.is_none() && cli.command.is_empty() {
        return Err("drainit has no app command to run (nothing after its options)".into());
    }
    let grace_period_given = from_command_line(&matches, "grace_period")
        || matches
            .subcommand()
            .is_some_and(|(_, m)| from_command_line(m, "grace_period"));
    let mut unknown_variables: Vec<String> = vars
        .keys()
        .filter(|name| name.starts_with("DRAINIT_"))
        .filter(|name| !known.iter().any(|arg| &arg.variable == *name))
        .cloned()
        .collect();
    unknown_variables.sort();
    Ok(DrainitSettings {
        cli,
        grace_period_given,
        unknown_variables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn literal(pairs: &[(&str, &str)]) -> HashMap<String, EnvValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), EnvValue::Literal(v.to_string())))
            .collect()
    }

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn arguments_win_over_variables() {
        let vars = literal(&[
            ("DRAINIT_PROPAGATION_DELAY", "20s"),
            ("DRAINIT_KILL_MARGIN", "4s"),
        ]);
        let s = parse(
            &argv("/drainit --propagation-delay 7s -v sh -c --kill-margin"),
            &vars,
        )
        .expect("parses");
        assert_eq!(s.cli.settings.longest_delay(), Duration::from_secs(7));
        assert_eq!(s.cli.settings.kill_margin, Duration::from_secs(4));
        assert_eq!(s.cli.command, ["sh", "-c", "--kill-margin"]);
        assert!(!s.grace_period_given);
    }

    #[test]
    fn variables_reach_the_sidecar_and_its_own_flags() {
        let vars = literal(&[
            ("DRAINIT_READY_CHECK", "tcp://127.0.0.1:8080"),
            ("DRAINIT_APP_PROCESS", "nginx"),
            ("DRAINIT_GRACE_PERIOD", "45s"),
            ("DRAINIT_STRICT", "true"),
        ]);
        let s = parse(&argv("/drainit sidecar"), &vars).expect("parses");
        assert!(s.is_sidecar());
        assert!(s.grace_period_given);
        assert!(s.cli.settings.strict);
        assert_eq!(s.cli.settings.grace_period, Duration::from_secs(45));
        assert!(
            matches!(&s.cli.mode, Some(Mode::Sidecar(a)) if a.app_process.as_deref() == Some("nginx"))
        );
    }

    #[test]
    fn refusals_name_the_flag_or_the_variable() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let table: &[Case] = &[
            (
                "/drainit --propagation-dealy=1s -- /app",
                &[],
                "--propagation-dealy",
            ),
            (
                "/drainit -- /app",
                &[("DRAINIT_PROPAGATION_DELAY", "10 parsecs")],
                "DRAINIT_PROPAGATION_DELAY",
            ),
            (
                "/drainit -- /app",
                &[("DRAINIT_STRICT", "maybe")],
                "DRAINIT_STRICT",
            ),
            ("/drainit", &[], "no app command"),
            ("/drainit --version -- /app", &[], "prints its version"),
            (
                "/drainit -- /app",
                &[("DRAINIT_PRESTOP_ALLOW_FROM", "$(HOST_IP)/32")],
                "not a network",
            ),
        ];
        for (line, vars, needle) in table {
            let error = parse(&argv(line), &literal(vars)).expect_err(line);
            assert!(error.contains(needle), "{line}: {error}");
        }
    }

    #[test]
    fn a_switch_variable_goes_through_the_switch_parser_and_loses_to_the_flag() {
        let off = literal(&[("DRAINIT_STRICT", "false")]);
        let s = parse(&argv("/drainit -- /app"), &off).expect("parses");
        assert!(!s.cli.settings.strict);
        let s = parse(&argv("/drainit --strict -- /app"), &off).expect("parses");
        assert!(s.cli.settings.strict, "the command line wins");
        let on = literal(&[("DRAINIT_STRICT", "true")]);
        let s = parse(&argv("/drainit -- /app"), &on).expect("parses");
        assert!(s.cli.settings.strict);
    }

    #[test]
    fn a_subcommands_variable_is_ignored_without_the_subcommand() {
        // drainit reads DRAINIT_APP_PROCESS only in sidecar mode; a wrapper ignores it.
        let vars = literal(&[("DRAINIT_APP_PROCESS", "nginx")]);
        let s = parse(&argv("/drainit -- nginx"), &vars).expect("parses");
        assert!(s.cli.mode.is_none());
        assert!(s.unknown_variables.is_empty(), "it is a drainit setting");
    }

    #[test]
    fn unknown_variables_are_listed() {
        let vars = literal(&[("DRAINIT_KILL_MARGN", "2s")]);
        let s = parse(&argv("/drainit -- /app"), &vars).expect("parses");
        assert_eq!(s.unknown_variables, ["DRAINIT_KILL_MARGN"]);
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = literal(&[("A", "x")]);
        assert_eq!(
            expand("$(A)/32 $$(A) $A $( $(B)", &vars),
            "x/32 $(A) $A $( $(B)"
        );
        assert!(image_is_drainit(Some("ghcr.io/example/drainit:0.1.0")));
        assert!(image_is_drainit(Some("drainit@sha256:00")));
        assert!(!image_is_drainit(Some(
            "ghcr.io/example/nginx-drainit:1.27"
        )));
        assert!(!image_is_drainit(Some("ghcr.io/drainit/web:1")));
    }
}
