//! What a command fails with, and how it is reported: one line on stderr, an exit code.

use std::error::Error;
use std::fmt;
use std::io::Write as _;

use persist::PersistError;

/// A command's failure.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The command line asks for something that cannot be done as asked (exit code 2, as for
    /// clap's own usage errors).
    Usage(String),
    /// Anything else that went wrong (exit code 1).
    Failed(String),
    /// Ctrl-C stopped the work between two requests (exit code 130); the text says what to do.
    Interrupted(&'static str),
    /// A failure already reported in the command's own log (`persist serve --log-format json`
    /// writes it as a JSON line): nothing more is printed; the exit code is the failure's.
    Reported(u8),
}

/// `Result<T, CliError>`.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// A failure described by `message`.
    pub(crate) fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// A usage error described by `message`.
    pub(crate) fn usage(message: impl fmt::Display) -> Self {
        Self::Usage(message.to_string())
    }

    /// A failure of `what`, with `error` and its sources.
    pub(crate) fn context(what: impl fmt::Display, error: &(dyn Error + 'static)) -> Self {
        Self::Failed(format!("{what}: {}", describe(error)))
    }

    /// The process exit code for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Failed(_) => 1,
            Self::Interrupted(_) => 130,
            Self::Reported(code) => *code,
        }
    }

    /// Prints the failure to stderr: `error: …` on one line (or the interruption's notice).
    pub(crate) fn report(&self) {
        let line = match self {
            Self::Usage(message) | Self::Failed(message) => format!("error: {}", one_line(message)),
            Self::Interrupted(notice) => format!("interrupted: {notice}"),
            Self::Reported(_) => return,
        };
        // Nothing more can be done when stderr itself is gone.
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) | Self::Failed(message) => f.write_str(message),
            Self::Interrupted(notice) => write!(f, "interrupted: {notice}"),
            Self::Reported(code) => write!(f, "failed (exit code {code}), as logged"),
        }
    }
}

impl From<PersistError> for CliError {
    fn from(error: PersistError) -> Self {
        Self::Failed(describe(&error))
    }
}

/// Writing the command's output (stdout or `-o FILE`) failed.
impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        Self::context("writing the output", &error)
    }
}

impl From<serde_json::Error> for CliError {
    fn from(error: serde_json::Error) -> Self {
        Self::context("writing JSON", &error)
    }
}

/// `error` followed by each of its sources not already part of its text, joined by `: `.
pub(crate) fn describe(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `text` on one line: line breaks become spaces.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r']).map(str::trim).filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Prints a note (a warning, a progress line) to stderr; a closed stderr is ignored.
pub(crate) fn note(line: impl fmt::Display) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_one_line() {
        assert_eq!(one_line("a\nb\r\n c"), "a b c");
        let error = PersistError::backend("committing", std::io::Error::other("disk full"));
        assert_eq!(CliError::from(error).to_string(), "backend error: committing: disk full");
    }
}
