//! Which secrets a command uses (pure; no I/O).
//!
//! *Explicit* names are the ones the caller listed plus the in-scope names the command
//! writes as `$NAME` or `${NAME…` (exact case): a command that cannot run without them
//! fails when they cannot be resolved. *Implicit* names are the other in-scope names that
//! occur anywhere in the command text, case-insensitively — the reference's rule, kept so
//! commands written against its prompt contract work; they are exported when they resolve
//! and merely reported as skipped when they do not.

use std::collections::BTreeSet;

/// What the request asked for in `secrets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    /// `null` or absent: only what the command text references.
    Referenced,
    /// A list of names, each explicit.
    Names(Vec<String>),
    /// `"all"`: every name in scope, explicit.
    All,
}

/// The outcome of selection; the two sets are disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub explicit: BTreeSet<String>,
    pub implicit: BTreeSet<String>,
}

/// Selects from `in_scope` (names the command's scope can export) for `command`.
/// Explicitly listed names that are not in scope are kept, so the caller can report them.
pub fn select<'a>(
    command: &str,
    in_scope: impl IntoIterator<Item = &'a str>,
    requested: &Requested,
) -> Selection {
    let in_scope: BTreeSet<&str> = in_scope.into_iter().collect();
    let mut sel = Selection::default();
    match requested {
        Requested::All => {
            sel.explicit.extend(in_scope.iter().map(|n| (*n).to_owned()));
            return sel;
        }
        Requested::Names(names) => sel.explicit.extend(names.iter().cloned()),
        Requested::Referenced => {}
    }
    for name in dollar_references(command) {
        if in_scope.contains(name) {
            sel.explicit.insert(name.to_owned());
        }
    }
    let lower = command.to_ascii_lowercase();
    for name in in_scope {
        if !sel.explicit.contains(name) && lower.contains(&name.to_ascii_lowercase()) {
            sel.implicit.insert(name.to_owned());
        }
    }
    sel
}

/// Names written as `$NAME` or `${NAME…` in `command`.
fn dollar_references(command: &str) -> impl Iterator<Item = &str> {
    let bytes = command.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if bytes[i] != b'$' {
                i += 1;
                continue;
            }
            let start = i + 1 + usize::from(bytes.get(i + 1) == Some(&b'{'));
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            i = end.max(i + 1);
            let starts_well = bytes.get(start).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
            if end > start && starts_well {
                // Only ASCII bytes were consumed, so these are char boundaries.
                return Some(&command[start..end]);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(command: &str, scope: &[&str], requested: Requested) -> (Vec<String>, Vec<String>) {
        let s = select(command, scope.iter().copied(), &requested);
        (s.explicit.into_iter().collect(), s.implicit.into_iter().collect())
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn dollar_forms_are_explicit() {
        let scope = ["API_KEY", "TOKEN", "DB"];
        assert_eq!(sel("echo $API_KEY", &scope, Requested::Referenced), (v(&["API_KEY"]), v(&[])));
        assert_eq!(
            sel("echo ${TOKEN:-x} ${DB}", &scope, Requested::Referenced),
            (v(&["DB", "TOKEN"]), v(&[]))
        );
        // `$API_KEYS` names another variable: API_KEY is only an implicit (substring) match.
        assert_eq!(sel("echo $API_KEYS", &scope, Requested::Referenced), (v(&[]), v(&["API_KEY"])));
        // Not in scope: an ordinary shell variable, not a secret.
        assert_eq!(sel("echo $HOME $1 $$", &scope, Requested::Referenced), (v(&[]), v(&[])));
    }

    #[test]
    fn substring_case_insensitive_is_implicit() {
        let scope = ["SHORT", "LONG", "API", "API_KEY"];
        assert_eq!(sel("echo $short_long", &scope, Requested::Referenced), (v(&[]), v(&["LONG", "SHORT"])));
        assert_eq!(sel("mySHORTcut", &scope, Requested::Referenced), (v(&[]), v(&["SHORT"])));
        assert_eq!(
            sel("export API_KEY=$API_KEY", &scope, Requested::Referenced),
            (v(&["API_KEY"]), v(&["API"]))
        );
        assert_eq!(sel("echo hello", &scope, Requested::Referenced), (v(&[]), v(&[])));
    }

    #[test]
    fn lists_and_all() {
        let scope = ["A", "B"];
        assert_eq!(
            sel("true", &scope, Requested::Names(v(&["A", "MISSING"]))),
            (v(&["A", "MISSING"]), v(&[]))
        );
        assert_eq!(sel("echo b", &scope, Requested::Names(v(&["A"]))), (v(&["A"]), v(&["B"])));
        assert_eq!(sel("true", &scope, Requested::All), (v(&["A", "B"]), v(&[])));
    }

    #[test]
    fn odd_text_does_not_panic() {
        for cmd in ["$", "${", "$$$", "é$Aé", "${é}", "\u{0}$A\u{0}"] {
            let _ = sel(cmd, &["A"], Requested::Referenced);
        }
        assert_eq!(sel("é$Aé", &["A"], Requested::Referenced).0, v(&["A"]));
    }
}
