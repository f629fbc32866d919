//! `secret-sidecar exec`: a client that runs one command through a running sidecar, streams
//! its masked output to this process's stdout and stderr, and exits with the command's code
//! (124 when it timed out, 125 when the sidecar or HTTP failed).
//!
//! The command text it sends is built by `command_text`: the words after `--` are each
//! single-quoted, so `exec -- sh -c 'echo "$X"'` runs exactly that argv and a word such as
//! `$(touch x)` stays a word; shell text is only ever what `-c` gives. The options themselves
//! are [`crate::cli::ExecArgs`].

use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::cli::ExecArgs;

/// Exit code when the command timed out.
const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the sidecar could not run the command or answered with an error.
const EXIT_SIDECAR: u8 = 125;

/// The shell text to send: `-c`'s text as is, or the argv with every word quoted by
/// [`quote_word`] and joined with spaces. Fails only on a NUL byte, which no word can hold.
fn command_text(args: &ExecArgs) -> Result<String, &'static str> {
    if let Some(text) = &args.shell_text {
        return Ok(text.clone());
    }
    if args.argv.iter().any(|w| w.contains('\0')) {
        return Err("a word of the command contains a NUL byte");
    }
    Ok(args.argv.iter().map(|w| quote_word(w)).collect::<Vec<_>>().join(" "))
}

/// One word for a POSIX shell: always in single quotes, where nothing is special, with each
/// `'` written as `'\''`. Always, not only when a word looks special, so that a reserved word
/// (`time`, `if`, `!`) or an assignment (`X=1`) in the argv stays an ordinary word.
fn quote_word(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Runs the command; returns the process exit code.
pub async fn exec(args: ExecArgs, default_key_file: PathBuf) -> u8 {
    match run(&args, default_key_file).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("secret-sidecar exec: {e}");
            EXIT_SIDECAR
        }
    }
}

fn api_key(args: &ExecArgs, default_key_file: PathBuf) -> Result<String, String> {
    if args.api_key_file.is_none() {
        for var in ["SESSION_API_KEY", "OH_SESSION_API_KEYS_0"] {
            if let Ok(k) = std::env::var(var) {
                if !k.is_empty() {
                    return Ok(k);
                }
            }
        }
    }
    let path = args.api_key_file.clone().unwrap_or(default_key_file);
    std::fs::read_to_string(&path)
        .map(|k| k.trim_end_matches(['\r', '\n']).to_owned())
        .map_err(|e| format!("no API key: {}: {e}", path.display()))
}

async fn run(args: &ExecArgs, default_key_file: PathBuf) -> Result<u8, String> {
    let key = api_key(args, default_key_file)?;
    let path = match &args.conversation {
        Some(id) => format!("/api/conversations/{id}/commands/stream"),
        None => "/api/commands/stream".to_owned(),
    };
    let command = command_text(args).map_err(str::to_owned)?;
    let mut body = json!({"command": command});
    if let Some(t) = args.timeout {
        body["timeout"] = json!(t);
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(crate::dns::SystemResolver::system()))
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .post(format!("{}{path}", args.url.trim_end_matches('/')))
        .header("X-Session-API-Key", key)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("cannot reach the sidecar: {}", e.without_url()))?;
    if !response.status().is_success() {
        let status = response.status();
        let detail = response.text().await.unwrap_or_default();
        return Err(format!("sidecar answered {status}: {detail}"));
    }
    let (mut pending, mut out, mut err) = (Vec::new(), std::io::stdout(), std::io::stderr());
    while let Some(chunk) =
        response.chunk().await.map_err(|e| format!("stream broken: {}", e.without_url()))?
    {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let frame: Value =
                serde_json::from_slice(&line).map_err(|_| "malformed stream frame".to_owned())?;
            let data = frame["data"].as_str().unwrap_or_default().as_bytes();
            match frame["type"].as_str() {
                Some("stdout") => {
                    out.write_all(data).and_then(|()| out.flush()).map_err(|e| e.to_string())?
                }
                Some("stderr") => {
                    err.write_all(data).and_then(|()| err.flush()).map_err(|e| e.to_string())?
                }
                Some("exit") if frame["timed_out"] == json!(true) => return Ok(EXIT_TIMEOUT),
                Some("exit") => {
                    let code = frame["exit_code"].as_i64().unwrap_or(i64::from(EXIT_SIDECAR));
                    return Ok(u8::try_from(code.rem_euclid(256)).unwrap_or(EXIT_SIDECAR));
                }
                Some("error") => return Err(frame["detail"].as_str().unwrap_or("error").to_owned()),
                _ => {}
            }
        }
    }
    Err("the stream ended without an exit frame".into())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<ExecArgs, clap::Error> {
        let cli = Cli::try_parse_from(["secret-sidecar", "exec"].iter().chain(args))?;
        match cli.command {
            Some(Command::Exec(a)) => Ok(a),
            other => panic!("not exec: {other:?}"),
        }
    }

    fn text(args: &[&str]) -> String {
        command_text(&parse(args).unwrap()).unwrap()
    }

    /// What `sh` makes of `text`: the words it would run.
    fn words_in_sh(text: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("for w in {text}; do printf '%s\\0' \"$w\"; done"), "sh"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{text}");
        let mut words: Vec<String> =
            out.stdout.split(|b| *b == 0).map(|w| String::from_utf8_lossy(w).into()).collect();
        words.pop(); // after the last NUL
        words
    }

    #[test]
    fn argv_words_are_quoted_and_shell_text_is_not() {
        let cases: &[(&[&str], &str)] = &[
            (&["--", "sh", "-c", "echo \"$X\"; exit 7"], r#"'sh' '-c' 'echo "$X"; exit 7'"#),
            (&["--", "$(touch /tmp/x)"], "'$(touch /tmp/x)'"),
            (&["--", "a b; rm -rf ~"], "'a b; rm -rf ~'"),
            (&["--", "echo", ""], "'echo' ''"),
            (&["--", "echo", "it's"], r#"'echo' 'it'\''s'"#),
            (&["--", "time", "true"], "'time' 'true'"),
            (&["-c", "make && make test"], "make && make test"),
            (&["-c", "echo $TOK; exit 3"], "echo $TOK; exit 3"),
        ];
        for (args, want) in cases {
            assert_eq!(text(args), *want, "{args:?}");
        }
    }

    #[test]
    fn the_shell_sees_exactly_the_argv() {
        let argv = [
            "printf",
            "%s\\n",
            "$(touch /tmp/never)",
            "`id`",
            "a b",
            "it's \"quoted\"",
            "back\\slash",
            "*",
            "~",
            "{a,b}",
            "!x",
            "^y",
            "tab\there",
            "new\nline",
            "ünï",
            "",
            ";",
            "&&",
            "|",
            "#c",
            "x=1",
            "if",
            "'",
            "''",
            "'\\''",
        ];
        let mut args = vec!["--"];
        args.extend(argv);
        assert_eq!(words_in_sh(&text(&args)), argv);
    }

    #[test]
    fn a_nul_byte_is_refused() {
        let mut args = parse(&["--", "echo"]).unwrap();
        args.argv.push("a\0b".into());
        assert!(command_text(&args).is_err());
    }

    #[test]
    fn exactly_one_of_argv_and_shell_text() {
        assert!(parse(&["--", "true"]).is_ok());
        assert!(parse(&["-c", "true"]).is_ok());
        for bad in [&[][..], &["-c", "true", "--", "true"], &["--url", "http://127.0.0.1:1"]] {
            let e = parse(bad).unwrap_err();
            assert!(
                matches!(
                    e.kind(),
                    clap::error::ErrorKind::ArgumentConflict
                        | clap::error::ErrorKind::MissingRequiredArgument
                ),
                "{bad:?}: {e}"
            );
        }
    }
}
