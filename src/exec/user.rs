//! `--command-user USER[:GROUP]`: which user and group commands run as.
//!
//! Names are looked up in `/etc/passwd` and `/etc/group` directly: a static binary has no NSS,
//! and those files are what a sandbox image has. Numeric ids need no lookup. Pure parsing over
//! the files' text, so it is tested without touching the system.
//!
//! Not here: switching ids (the spawn does, in the child between `fork` and `exec`).

use std::path::PathBuf;

/// The identity commands run under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandUser {
    /// User id the command runs as.
    pub uid: u32,
    /// Primary group id; supplementary groups are cleared.
    pub gid: u32,
    /// Login name and home directory from `/etc/passwd`, when the user has an entry there;
    /// commands then get `USER`, `LOGNAME` and `HOME` to match.
    pub account: Option<(String, PathBuf)>,
}

/// Why a `--command-user` value cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("user {0:?} is not in /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in /etc/group")]
    UnknownGroup(String),
    #[error("expected USER[:GROUP]")]
    Malformed,
}

impl CommandUser {
    /// Parses `USER[:GROUP]` against the text of `/etc/passwd` and `/etc/group`. Without a
    /// group, the user's primary group is used (a numeric user with no passwd entry gets the
    /// group of the same number).
    pub fn parse(spec: &str, passwd: &str, group: &str) -> Result<Self, UserError> {
        let (user, group_name) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || group_name.is_some_and(str::is_empty) {
            return Err(UserError::Malformed);
        }
        let entry = passwd_entries(passwd).find(|e| e.name == user || user.parse() == Ok(e.uid));
        let (uid, primary) = match (user.parse::<u32>(), &entry) {
            (Ok(uid), _) => (uid, entry.as_ref().map_or(uid, |e| e.gid)),
            (Err(_), Some(e)) => (e.uid, e.gid),
            (Err(_), None) => return Err(UserError::UnknownUser(user.to_owned())),
        };
        let gid = match group_name {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_gid(group, g).ok_or_else(|| UserError::UnknownGroup(g.to_owned()))?,
            },
        };
        let account = entry.map(|e| (e.name.to_owned(), PathBuf::from(e.home)));
        Ok(Self { uid, gid, account })
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// `name:password:uid:gid:gecos:home:shell` lines; malformed lines are skipped.
fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7).then_some(())?;
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

/// The id of group `name` in `name:password:gid:members` lines.
fn group_gid(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken line\n\
        agent:x:1000:1001:Agent:/home/agent:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:agent\nagents:x:1001:\n";

    #[test]
    fn names_numbers_and_groups() {
        let agent = CommandUser::parse("agent", PASSWD, GROUP).unwrap();
        assert_eq!((agent.uid, agent.gid), (1000, 1001));
        assert_eq!(agent.account, Some(("agent".into(), "/home/agent".into())));
        let staff = CommandUser::parse("agent:staff", PASSWD, GROUP).unwrap();
        assert_eq!((staff.uid, staff.gid), (1000, 50));
        let numeric = CommandUser::parse("1000", PASSWD, GROUP).unwrap();
        assert_eq!((numeric.uid, numeric.gid), (1000, 1001), "a known uid gets its primary group");
        let unknown = CommandUser::parse("4242:77", PASSWD, GROUP).unwrap();
        assert_eq!((unknown.uid, unknown.gid, unknown.account), (4242, 77, None));
        assert_eq!(CommandUser::parse("4242", PASSWD, GROUP).unwrap().gid, 4242);
    }

    #[test]
    fn errors_name_what_is_missing() {
        assert_eq!(
            CommandUser::parse("nobody2", PASSWD, GROUP),
            Err(UserError::UnknownUser("nobody2".into()))
        );
        assert_eq!(
            CommandUser::parse("agent:nogroup", PASSWD, GROUP),
            Err(UserError::UnknownGroup("nogroup".into()))
        );
        for bad in ["", ":", "agent:", ":staff"] {
            assert_eq!(CommandUser::parse(bad, PASSWD, GROUP), Err(UserError::Malformed), "{bad:?}");
        }
    }
}
