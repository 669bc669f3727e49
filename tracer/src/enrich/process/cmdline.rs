//! Command lines with the values of credential arguments replaced by `REDACTED`.
use std::borrow::Cow;

/// Argument names (substrings, ASCII case-insensitive) whose values are credentials.
const SECRET_ARG_WORDS: &[&str] = &["password", "passwd", "secret", "token", "key"];
const REDACTED: &str = "REDACTED";

/// Replaces credential values in a space-separated command line with `REDACTED`: the values of
/// arguments whose name contains `password`, `passwd`, `secret`, `token` or `key`
/// (case-insensitive), in the forms `--name=value`, `name=value` and `--name value`.
/// Errs toward hiding: `--keyfile /path` hides the path too.
#[cfg(test)]
pub(super) fn redact_command_line(cmdline: &str) -> String {
    redact_args(cmdline.split(' '))
}

/// Joins arguments with spaces, redacting per argument so that an argument containing spaces
/// is still one value.
pub(super) fn redact_args<'a>(args: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    let mut value_is_secret = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let (redacted, next_is_secret) = redact_arg(arg, value_is_secret);
        out.push_str(&redacted);
        value_is_secret = next_is_secret;
    }
    out
}

/// Redacts one argument; `value_is_secret` says the previous argument was a secret option
/// expecting its value here. Returns whether the next argument is such a value.
fn redact_arg(arg: &str, value_is_secret: bool) -> (Cow<'_, str>, bool) {
    if value_is_secret && arg.is_empty() {
        return (Cow::Borrowed(arg), true);
    }
    // A following long option means the secret option took no value.
    if value_is_secret && !arg.starts_with("--") {
        return (Cow::Borrowed(REDACTED), false);
    }
    if let Some((name, value)) = arg.split_once('=') {
        if !value.is_empty() && is_secret_arg_name(name) {
            return (Cow::Owned(format!("{name}={REDACTED}")), false);
        }
        return (Cow::Borrowed(arg), false);
    }
    let expects_value = arg.starts_with('-') && is_secret_arg_name(arg);
    (Cow::Borrowed(arg), expects_value)
}

fn is_secret_arg_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_ARG_WORDS.iter().any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secret_arguments() {
        let cases = [
            ("app --password=hunter2 -v", "app --password=REDACTED -v"),
            ("app --password hunter2 -v", "app --password REDACTED -v"),
            ("app -passwd hunter2", "app -passwd REDACTED"),
            ("app --DB-Password=x", "app --DB-Password=REDACTED"),
            (
                "app --api-key abc --port 80",
                "app --api-key REDACTED --port 80",
            ),
            (
                "env AWS_SECRET_ACCESS_KEY=abc x",
                "env AWS_SECRET_ACCESS_KEY=REDACTED x",
            ),
            ("app client_secret=a=b", "app client_secret=REDACTED"),
            ("app --token  abc", "app --token  REDACTED"),
            ("app --token", "app --token"),
            ("app --token --verbose", "app --token --verbose"),
            ("app --token= next", "app --token= next"),
            ("app --token -x", "app --token REDACTED"),
            ("app token abc", "app token abc"),
            ("nginx: worker process", "nginx: worker process"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_command_line(input), expected, "{input}");
        }
    }

    #[test]
    fn redacts_an_argument_with_spaces_as_one_value() {
        let args = ["app", "--secret", "two words", "--x=a b"];
        assert_eq!(redact_args(args), "app --secret REDACTED --x=a b");
    }
}
