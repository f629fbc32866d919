//! The built-in bindings `--egress-defaults` turns on: exact hosts and places for the names
//! agents commonly hold credentials under. Only exact hosts, so a default never trusts a
//! whole domain; the README lists this table (keep them in step).

use super::binding::Binding;
use super::parse::build;

/// One row: the names, their hosts, extra headers, extra query parameters.
pub(crate) struct DefaultRow {
    pub names: &'static [&'static str],
    pub hosts: &'static [&'static str],
    pub headers: &'static [&'static str],
    pub query: &'static [&'static str],
}

const GITHUB_HOSTS: &[&str] = &[
    "api.github.com",
    "github.com",
    "uploads.github.com",
    "codeload.github.com",
    "objects.githubusercontent.com",
    "raw.githubusercontent.com",
    "ghcr.io",
];

/// The table (README: "Egress defaults").
pub(crate) const DEFAULTS: &[DefaultRow] = &[
    DefaultRow {
        names: &["GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT"],
        hosts: GITHUB_HOSTS,
        headers: &[],
        query: &[],
    },
    DefaultRow {
        names: &["GITLAB_TOKEN", "GL_TOKEN", "GITLAB_PRIVATE_TOKEN"],
        hosts: &["gitlab.com", "registry.gitlab.com"],
        headers: &["PRIVATE-TOKEN", "JOB-TOKEN"],
        query: &[],
    },
    DefaultRow {
        names: &["BITBUCKET_TOKEN", "BITBUCKET_APP_PASSWORD"],
        hosts: &["api.bitbucket.org", "bitbucket.org"],
        headers: &[],
        query: &[],
    },
    DefaultRow { names: &["OPENAI_API_KEY"], hosts: &["api.openai.com"], headers: &[], query: &[] },
    DefaultRow {
        names: &["ANTHROPIC_API_KEY"],
        hosts: &["api.anthropic.com"],
        headers: &["x-api-key"],
        query: &[],
    },
    DefaultRow {
        names: &["NPM_TOKEN", "NODE_AUTH_TOKEN"],
        hosts: &["registry.npmjs.org"],
        headers: &[],
        query: &[],
    },
    DefaultRow {
        names: &["PYPI_TOKEN", "PYPI_API_TOKEN", "TWINE_PASSWORD", "UV_PUBLISH_TOKEN"],
        hosts: &["upload.pypi.org", "test.pypi.org"],
        headers: &[],
        query: &[],
    },
    DefaultRow {
        names: &["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"],
        hosts: &["huggingface.co"],
        headers: &[],
        query: &[],
    },
    DefaultRow {
        names: &["GOOGLE_API_KEY", "GEMINI_API_KEY"],
        hosts: &["generativelanguage.googleapis.com"],
        headers: &["x-goog-api-key"],
        query: &["key"],
    },
    DefaultRow { names: &["GROQ_API_KEY"], hosts: &["api.groq.com"], headers: &[], query: &[] },
    DefaultRow { names: &["MISTRAL_API_KEY"], hosts: &["api.mistral.ai"], headers: &[], query: &[] },
    DefaultRow { names: &["OPENROUTER_API_KEY"], hosts: &["openrouter.ai"], headers: &[], query: &[] },
    DefaultRow { names: &["DEEPSEEK_API_KEY"], hosts: &["api.deepseek.com"], headers: &[], query: &[] },
    DefaultRow { names: &["TOGETHER_API_KEY"], hosts: &["api.together.xyz"], headers: &[], query: &[] },
    DefaultRow { names: &["TAVILY_API_KEY"], hosts: &["api.tavily.com"], headers: &[], query: &[] },
    DefaultRow { names: &["LINEAR_API_KEY"], hosts: &["api.linear.app"], headers: &[], query: &[] },
    DefaultRow {
        names: &["SLACK_BOT_TOKEN", "SLACK_TOKEN"],
        hosts: &["slack.com"],
        headers: &[],
        query: &[],
    },
    DefaultRow { names: &["VERCEL_TOKEN"], hosts: &["api.vercel.com"], headers: &[], query: &[] },
    DefaultRow { names: &["CLOUDFLARE_API_TOKEN"], hosts: &["api.cloudflare.com"], headers: &[], query: &[] },
];

/// Every default binding, by name.
pub(crate) fn default_bindings() -> Vec<(String, Binding)> {
    let mut out = Vec::new();
    for row in DEFAULTS {
        let binding =
            build(row.hosts.iter().copied(), row.headers.iter().copied(), row.query.iter().copied())
                .unwrap_or_else(|(field, e)| {
                    panic!("built-in egress default {:?} {field:?}: {e}", row.names)
                });
        out.extend(row.names.iter().map(|n| ((*n).to_owned(), binding.clone())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_valid_and_names_are_unique() {
        let all = default_bindings();
        let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name appears in two rows");
        let gh = &all.iter().find(|(n, _)| n == "GH_TOKEN").unwrap().1;
        assert!(gh.covers("api.github.com") && gh.covers("uploads.github.com"));
        let anthropic = &all.iter().find(|(n, _)| n == "ANTHROPIC_API_KEY").unwrap().1;
        assert_eq!(anthropic.headers[0].as_str(), "x-api-key");
    }

    #[test]
    fn readme_lists_every_default_name() {
        let readme = include_str!("../../README.md");
        for (name, _) in default_bindings() {
            assert!(readme.contains(&format!("`{name}`")), "README does not list {name}");
        }
    }
}
