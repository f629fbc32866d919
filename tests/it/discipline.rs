//! Secret values are exposed only where they must be used. This keeps the list of those
//! places short and reviewed: a new call of `expose_secret()` or `SecretValue::expose()`
//! outside these files fails the build's tests until it is added here with its reason.

/// File → why it may read a secret's bytes.
const ALLOWED: &[(&str, &str)] = &[
    ("src/auth.rs", "hashing accepted keys for constant-time comparison; writing the generated key file"),
    ("src/config/env.rs", "tests of the keys read from the environment"),
    ("src/config/state.rs", "tests: the key file and OH_SECRET_KEY give the same subkeys"),
    ("src/egress/grant.rs", "issuing a credential: hashing its token for the lookup map"),
    ("src/egress/placeholder.rs", "copying the configured placeholder key"),
    ("src/egress/proxy/reflect.rs", "compiling value -> placeholder swaps for answers from bound hosts"),
    ("src/egress/proxy/scan.rs", "looking for placeholders (not values) in request bodies"),
    ("src/egress/proxy/substitute.rs", "writing a value into the request places its binding names"),
    ("src/exec/env.rs", "building the child's environment and scrubbing variables that contain a key"),
    ("src/persist/key.rs", "expanding subkeys from the state key"),
    ("src/persist/mod.rs", "masking the static values loaded from the state file"),
    ("src/persist/seal.rs", "the sealing key and key id of the state file"),
    ("src/run/egress.rs", "a bound value's grant, its length and text checks, and its keyed digest"),
    ("src/run/mod.rs", "adding a command's values to the mask set; refusing values too short to mask"),
    ("src/secrets/resolver.rs", "masking fetched values; handing the secret list's body to discovery"),
    ("src/secrets/resolver/upstream.rs", "outbound header values (sensitive); masking a new session key"),
    ("src/secrets/session_key.rs", "comparing a re-read key with the current one"),
    ("src/secrets/source/mod.rs", "descriptor equality, to decide whether a replacement changed anything"),
    ("src/secrets/source/wire.rs", "writing descriptors in wire form for the sealed state file"),
    ("src/secrets/value.rs", "the accessor itself"),
    ("src/state.rs", "adding the sidecar's own keys to the mask set at start"),
];

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn secrets_are_exposed_only_in_listed_places() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    assert!(files.len() > 20, "found the sources");
    let mut offenders = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let uses = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .any(|l| l.contains("expose_secret()") || l.contains(".expose()"));
        if uses && !ALLOWED.iter().any(|(f, _)| *f == rel) {
            offenders.push(rel);
        }
    }
    assert!(offenders.is_empty(), "secret bytes exposed outside the reviewed places: {offenders:?}");
}

#[test]
fn no_debug_derive_on_types_holding_values() {
    // The types that hold values implement Debug by hand (redacted); a derive would print them.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, ty) in [
        ("src/secrets/value.rs", "struct SecretValue"),
        ("src/secrets/source/mod.rs", "enum SecretSource"),
        ("src/auth.rs", "struct ApiKeys"),
        ("src/secrets/session_key.rs", "struct SessionKey"),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let at = text.find(&format!("pub {ty}")).unwrap_or_else(|| panic!("{ty} in {file}"));
        let before = &text[..at];
        let attrs = before.rsplit("\n\n").next().unwrap_or("");
        assert!(!attrs.contains("derive(") || !attrs.contains("Debug"), "{ty} derives Debug");
    }
}
