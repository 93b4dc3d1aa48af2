//! `--remap-exit FROM:TO`: one rule and its parser.

/// One `--remap-exit FROM:TO` rule: drainit exits TO where it would have exited FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRemap {
    /// The exit code drainit would have used (the app's, or 128+N).
    pub from: u8,
    /// The exit code it uses instead.
    pub to: u8,
}

const REMAP_FORM: &str = "expected FROM:TO with exit codes 0..=255, e.g. 143:0";

impl std::str::FromStr for ExitRemap {
    type Err = String;

    fn from_str(input: &str) -> Result<ExitRemap, String> {
        let (from, to) = input
            .trim()
            .split_once(':')
            .ok_or_else(|| REMAP_FORM.to_string())?;
        let code = |part: &str| {
            part.trim()
                .parse::<u8>()
                .map_err(|_| REMAP_FORM.to_string())
        };
        Ok(ExitRemap {
            from: code(from)?,
            to: code(to)?,
        })
    }
}

/// The parser of `--remap-exit`.
pub fn parse_remap_exit(input: &str) -> Result<ExitRemap, String> {
    input.parse()
}
