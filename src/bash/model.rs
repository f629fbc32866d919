//! The bash events: [`BashCommand`], [`BashOutput`] and their union [`BashEvent`], shaped
//! exactly like the OpenHands agent-server's JSON so its unmodified SDK client can read them.
//!
//! This file owns the event types and their wire form. It does not store, search, split or
//! run anything (see `store`, `query` and `split`).
//!
//! Invariant: serialization matches pydantic's `model_dump(mode="json")` of the reference
//! models field for field — the same keys in the same order, `null` for absent optional values,
//! ids as 32 lowercase hex digits, timestamps as in [`Timestamp`], and `kind` last. The one
//! addition, `conversation_id` on a command, is written only when set.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use super::timestamp::Timestamp;

/// The reference's default command timeout, in seconds.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// Bytes charged for an event's fixed fields (ids, timestamp, numbers) on top of its text.
const EVENT_OVERHEAD_BYTES: usize = 128;

/// Which of the two event types an event is; the wire value of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A [`BashCommand`].
    BashCommand,
    /// A [`BashOutput`].
    BashOutput,
}

impl EventKind {
    /// The `kind` string on the wire: the reference's class name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BashCommand => "BashCommand",
            EventKind::BashOutput => "BashOutput",
        }
    }
}

/// A command accepted for execution: the request plus the server-assigned `id` and `timestamp`.
///
/// Wire form (key order as the reference): `command`, `cwd`, `timeout`, then our optional
/// `conversation_id` (omitted when `None`), `id`, `timestamp`, `kind: "BashCommand"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BashCommand {
    /// The event id, which is also the `command_id` of the command's outputs.
    #[serde(deserialize_with = "hex_id::deserialize")]
    pub id: Uuid,
    /// When the command was accepted.
    pub timestamp: Timestamp,
    /// The shell command line, as given.
    pub command: String,
    /// The working directory; `None` inherits the server's.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Seconds the command may run before it is killed.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// The conversation whose secrets the command may use (our addition to the reference).
    #[serde(default)]
    pub conversation_id: Option<String>,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

impl BashCommand {
    /// A command event with a fresh random id and the current time.
    pub fn new(command: String, cwd: Option<String>, timeout: u64, conversation_id: Option<String>) -> Self {
        BashCommand {
            id: Uuid::new_v4(),
            timestamp: Timestamp::now(),
            command,
            cwd,
            timeout,
            conversation_id,
        }
    }
}

impl Serialize for BashCommand {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = if self.conversation_id.is_some() { 7 } else { 6 };
        let mut s = serializer.serialize_struct("BashCommand", fields)?;
        s.serialize_field("command", &self.command)?;
        s.serialize_field("cwd", &self.cwd)?;
        s.serialize_field("timeout", &self.timeout)?;
        match &self.conversation_id {
            Some(conversation_id) => s.serialize_field("conversation_id", conversation_id)?,
            None => s.skip_field("conversation_id")?,
        }
        s.serialize_field("id", &hex_id::Hex(self.id))?;
        s.serialize_field("timestamp", &self.timestamp)?;
        s.serialize_field("kind", EventKind::BashCommand.as_str())?;
        s.end()
    }
}

/// A piece of a command's output. A command has one or more, numbered by `order` from 0.
///
/// `exit_code` is `None` while the command is still running; the last output carries it
/// (`-1` after a timeout or a failure to run). Wire form (key order as the reference): `id`,
/// `timestamp`, `command_id`, `order`, `exit_code`, `stdout`, `stderr`, `kind: "BashOutput"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BashOutput {
    /// The event id.
    #[serde(deserialize_with = "hex_id::deserialize")]
    pub id: Uuid,
    /// When the output was emitted.
    pub timestamp: Timestamp,
    /// The id of the [`BashCommand`] this output belongs to.
    #[serde(deserialize_with = "hex_id::deserialize")]
    pub command_id: Uuid,
    /// Position among the command's outputs, from 0, shared by stdout and stderr.
    #[serde(default)]
    pub order: u64,
    /// The exit code; `None` means the command is still running.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Standard output text, `None` when there is none in this piece.
    #[serde(default)]
    pub stdout: Option<String>,
    /// Standard error text, `None` when there is none in this piece.
    #[serde(default)]
    pub stderr: Option<String>,
}

impl BashOutput {
    /// An empty output of `command_id` at position `order`, with a fresh id and the current time.
    pub fn new(command_id: Uuid, order: u64) -> Self {
        BashOutput {
            id: Uuid::new_v4(),
            timestamp: Timestamp::now(),
            command_id,
            order,
            exit_code: None,
            stdout: None,
            stderr: None,
        }
    }

    /// The reference's output for a command that could not be run: order 0, exit code -1, and
    /// `stderr` = `"Error executing command: " + detail`. `detail` must already be masked.
    pub fn error(command_id: Uuid, detail: &str) -> Self {
        BashOutput {
            exit_code: Some(-1),
            stderr: Some(format!("Error executing command: {detail}")),
            ..BashOutput::new(command_id, 0)
        }
    }
}

impl Serialize for BashOutput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("BashOutput", 8)?;
        s.serialize_field("id", &hex_id::Hex(self.id))?;
        s.serialize_field("timestamp", &self.timestamp)?;
        s.serialize_field("command_id", &hex_id::Hex(self.command_id))?;
        s.serialize_field("order", &self.order)?;
        s.serialize_field("exit_code", &self.exit_code)?;
        s.serialize_field("stdout", &self.stdout)?;
        s.serialize_field("stderr", &self.stderr)?;
        s.serialize_field("kind", EventKind::BashOutput.as_str())?;
        s.end()
    }
}

/// Any bash event; serializes as the inner event (whose `kind` tells them apart).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind")]
pub enum BashEvent {
    /// A command was accepted.
    #[serde(rename = "BashCommand")]
    Command(BashCommand),
    /// A command produced output or finished.
    #[serde(rename = "BashOutput")]
    Output(BashOutput),
}

impl BashEvent {
    /// The event's own id.
    pub fn id(&self) -> Uuid {
        match self {
            BashEvent::Command(c) => c.id,
            BashEvent::Output(o) => o.id,
        }
    }

    /// When the event was created.
    pub fn timestamp(&self) -> Timestamp {
        match self {
            BashEvent::Command(c) => c.timestamp,
            BashEvent::Output(o) => o.timestamp,
        }
    }

    /// Which type of event this is.
    pub fn kind(&self) -> EventKind {
        match self {
            BashEvent::Command(_) => EventKind::BashCommand,
            BashEvent::Output(_) => EventKind::BashOutput,
        }
    }

    /// The command an event belongs to: its own id for a command, `command_id` for an output.
    pub fn command_id(&self) -> Uuid {
        match self {
            BashEvent::Command(c) => c.id,
            BashEvent::Output(o) => o.command_id,
        }
    }

    /// An approximation of the memory the event holds: its text plus a fixed overhead.
    pub fn approx_bytes(&self) -> usize {
        let text = match self {
            BashEvent::Command(c) => {
                c.command.len()
                    + c.cwd.as_ref().map_or(0, String::len)
                    + c.conversation_id.as_ref().map_or(0, String::len)
            }
            BashEvent::Output(o) => {
                o.stdout.as_ref().map_or(0, String::len) + o.stderr.as_ref().map_or(0, String::len)
            }
        };
        EVENT_OVERHEAD_BYTES.saturating_add(text)
    }
}

impl Serialize for BashEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            BashEvent::Command(c) => c.serialize(serializer),
            BashEvent::Output(o) => o.serialize(serializer),
        }
    }
}

impl From<BashCommand> for BashEvent {
    fn from(command: BashCommand) -> Self {
        BashEvent::Command(command)
    }
}

impl From<BashOutput> for BashEvent {
    fn from(output: BashOutput) -> Self {
        BashEvent::Output(output)
    }
}

/// Ids on the wire: written as 32 lowercase hex digits (pydantic's `UUID.hex`), read in any
/// form `uuid` parses.
mod hex_id {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use uuid::Uuid;

    /// Serializes the id as 32 lowercase hex digits without dashes.
    pub(super) struct Hex(pub(super) Uuid);

    impl Serialize for Hex {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut buf = Uuid::encode_buffer();
            serializer.serialize_str(self.0.simple().encode_lower(&mut buf))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Uuid::parse_str(&text).map_err(|_| serde::de::Error::custom("invalid id: expected a UUID"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    const CMD: &str = "0123456789abcdef0123456789abcdef";
    const OUT: &str = "fedcba9876543210fedcba9876543210";

    fn ts() -> Timestamp {
        // 2024-01-01T12:00:00.123456Z
        Timestamp::from_unix_micros(1_704_110_400_123_456).unwrap()
    }

    fn command() -> BashCommand {
        BashCommand {
            id: Uuid::parse_str(CMD).unwrap(),
            timestamp: ts(),
            command: "echo hi".into(),
            cwd: None,
            timeout: 300,
            conversation_id: None,
        }
    }

    /// Keys in the order they are written (a `serde_json::Value` map would sort them).
    fn keys<T: Serialize>(event: &T) -> Vec<String> {
        let text = serde_json::to_string(event).unwrap();
        // Every key is a `"name":` at depth 1; values here hold no such pattern.
        text.split(&[',', '{'][..])
            .filter_map(|part| part.strip_prefix('"')?.split_once("\":").map(|(k, _)| k.to_owned()))
            .collect()
    }

    #[test]
    fn command_matches_reference_json() {
        // As pydantic writes `BashCommand(command="echo hi").model_dump(mode="json")`.
        let expected = json!({
            "command": "echo hi",
            "cwd": null,
            "timeout": 300,
            "id": CMD,
            "timestamp": "2024-01-01T12:00:00.123456Z",
            "kind": "BashCommand",
        });
        let value = serde_json::to_value(command()).unwrap();
        assert_eq!(value, expected);
        assert_eq!(keys(&command()), ["command", "cwd", "timeout", "id", "timestamp", "kind"]);
        // Byte for byte what pydantic's `model_dump_json()` writes.
        assert_eq!(
            serde_json::to_string(&command()).unwrap(),
            format!(
                r#"{{"command":"echo hi","cwd":null,"timeout":300,"id":"{CMD}","timestamp":"2024-01-01T12:00:00.123456Z","kind":"BashCommand"}}"#
            )
        );
        assert_eq!(serde_json::to_value(BashEvent::from(command())).unwrap(), expected);
    }

    #[test]
    fn command_writes_conversation_id_only_when_set() {
        let c = BashCommand { cwd: Some("/w".into()), conversation_id: Some("conv".into()), ..command() };
        let value = serde_json::to_value(&c).unwrap();
        assert_eq!(value["cwd"], "/w");
        assert_eq!(value["conversation_id"], "conv");
        assert_eq!(keys(&c), ["command", "cwd", "timeout", "conversation_id", "id", "timestamp", "kind"]);
    }

    #[test]
    fn output_matches_reference_json() {
        let running = BashOutput {
            id: Uuid::parse_str(OUT).unwrap(),
            timestamp: ts(),
            command_id: Uuid::parse_str(CMD).unwrap(),
            order: 0,
            exit_code: None,
            stdout: Some("chunk".into()),
            stderr: None,
        };
        let expected = json!({
            "id": OUT,
            "timestamp": "2024-01-01T12:00:00.123456Z",
            "command_id": CMD,
            "order": 0,
            "exit_code": null,
            "stdout": "chunk",
            "stderr": null,
            "kind": "BashOutput",
        });
        let value = serde_json::to_value(BashEvent::from(running.clone())).unwrap();
        assert_eq!(value, expected);
        assert_eq!(
            keys(&BashEvent::from(running.clone())),
            ["id", "timestamp", "command_id", "order", "exit_code", "stdout", "stderr", "kind"]
        );
        assert_eq!(
            serde_json::to_string(&running).unwrap(),
            format!(
                r#"{{"id":"{OUT}","timestamp":"2024-01-01T12:00:00.123456Z","command_id":"{CMD}","order":0,"exit_code":null,"stdout":"chunk","stderr":null,"kind":"BashOutput"}}"#
            )
        );

        let done =
            BashOutput { order: 3, exit_code: Some(-1), stdout: None, stderr: Some("e".into()), ..running };
        let value = serde_json::to_value(&done).unwrap();
        assert_eq!(value["order"], 3);
        assert_eq!(value["exit_code"], -1);
        assert_eq!(value["stdout"], Value::Null);
        assert_eq!(value["stderr"], "e");
    }

    #[test]
    fn fresh_events_have_hex_ids_and_utc_timestamps() {
        let c = BashCommand::new("true".into(), None, DEFAULT_TIMEOUT_SECS, None);
        let o = BashOutput::new(c.id, 0);
        for value in [serde_json::to_value(&c).unwrap(), serde_json::to_value(&o).unwrap()] {
            let id = value["id"].as_str().unwrap();
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            let stamp = value["timestamp"].as_str().unwrap();
            assert!(stamp.ends_with('Z') && stamp.len() >= 20, "{stamp}");
        }
        assert_eq!(serde_json::to_value(&o).unwrap()["command_id"], c.id.simple().to_string());
        assert_ne!(c.id, o.id);
    }

    #[test]
    fn error_output_is_the_reference_shape() {
        let o = BashOutput::error(Uuid::parse_str(CMD).unwrap(), "no such directory");
        assert_eq!((o.order, o.exit_code, o.stdout.as_deref()), (0, Some(-1), None));
        assert_eq!(o.stderr.as_deref(), Some("Error executing command: no such directory"));
    }

    #[test]
    fn events_round_trip_through_json() {
        let c = BashCommand { conversation_id: Some("conv".into()), ..command() };
        let o = BashOutput { exit_code: Some(0), stdout: Some("x".into()), ..BashOutput::new(c.id, 1) };
        for event in [BashEvent::from(c), BashEvent::from(o)] {
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(serde_json::from_str::<BashEvent>(&text).unwrap(), event);
        }
        // The reference's request defaults apply, and dashed ids are accepted.
        let parsed: BashEvent = serde_json::from_value(json!({
            "kind": "BashCommand", "command": "ls", "id": "01234567-89ab-cdef-0123-456789abcdef",
            "timestamp": "2024-01-01T12:00:00Z",
        }))
        .unwrap();
        let BashEvent::Command(parsed) = parsed else { panic!("expected a command") };
        assert_eq!((parsed.cwd, parsed.timeout, parsed.id.simple().to_string()), (None, 300, CMD.into()));
    }
}
