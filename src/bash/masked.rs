//! Bash events as they are read: masked again, with the mask set of the moment.
//!
//! Events are masked before they are stored, but only with the values held then: a value
//! registered later (say, a token a command printed before anyone registered it) would stay
//! readable in older events. So every read masks each text of an event again (the command
//! text and working directory of a `BashCommand`, the stdout and stderr of a `BashOutput`)
//! with the caller's current masker. This file owns that second pass and its failure rule; it
//! does not store, search or choose the masker.
//!
//! Invariant: masking fails closed. A text that cannot be masked is replaced by [`WITHHELD`],
//! never passed through.

use std::cell::Cell;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::model::{BashCommand, BashEvent, BashOutput};
use super::store::EventPage;
use crate::mask::Masker;

/// What stands in an event for a text that could not be masked.
pub(crate) const WITHHELD: &str = "[withheld: masking failed]";

/// A copy of `event` with every text masked by `masker`. The flag tells whether a text had
/// to be withheld (the caller logs it, once per answer).
pub(crate) fn mask_event(event: &BashEvent, masker: &Masker) -> (BashEvent, bool) {
    mask_event_with(event, |text| masker.mask(text).ok())
}

/// [`mask_event`] with any masking function; `mask` returns `None` when it fails.
fn mask_event_with(event: &BashEvent, mask: impl Fn(&[u8]) -> Option<Vec<u8>>) -> (BashEvent, bool) {
    let failed = Cell::new(false);
    let text = |text: &str| match mask(text.as_bytes()) {
        Some(masked) => {
            String::from_utf8(masked).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        }
        None => {
            failed.set(true);
            WITHHELD.to_owned()
        }
    };
    let masked = match event {
        BashEvent::Command(c) => BashEvent::Command(BashCommand {
            command: text(&c.command),
            cwd: c.cwd.as_deref().map(text),
            conversation_id: c.conversation_id.clone(),
            ..*c
        }),
        BashEvent::Output(o) => BashEvent::Output(BashOutput {
            stdout: o.stdout.as_deref().map(text),
            stderr: o.stderr.as_deref().map(text),
            ..*o
        }),
    };
    (masked, failed.get())
}

/// A search page that masks each event as it is serialized, so an answer never holds a
/// second copy of the whole page. Serializes as [`EventPage`] does.
pub(crate) struct MaskedPage<'a> {
    page: &'a EventPage,
    masker: &'a Masker,
    failed: Cell<bool>,
}

impl<'a> MaskedPage<'a> {
    /// `page`, to be masked with `masker` when serialized.
    pub(crate) fn new(page: &'a EventPage, masker: &'a Masker) -> Self {
        MaskedPage { page, masker, failed: Cell::new(false) }
    }

    /// Whether serializing it had to withhold a text.
    pub(crate) fn withheld(&self) -> bool {
        self.failed.get()
    }
}

impl Serialize for MaskedPage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("BashEventPage", 2)?;
        s.serialize_field("items", &Items(self))?;
        s.serialize_field("next_page_id", &self.page.next_page_id)?;
        s.end()
    }
}

/// The page's items, masked one at a time as the sequence is written.
struct Items<'p, 'a>(&'p MaskedPage<'a>);

impl Serialize for Items<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let page = self.0;
        serializer.collect_seq(page.page.items.iter().map(|event| {
            let (masked, failed) = mask_event(event, page.masker);
            if failed {
                page.failed.set(true);
            }
            masked
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;

    fn command(text: &str) -> BashEvent {
        BashEvent::Command(BashCommand::new(text.into(), Some(format!("/w/{text}")), 300, Some("c".into())))
    }

    fn output(stdout: Option<&str>, stderr: Option<&str>) -> BashEvent {
        BashEvent::Output(BashOutput {
            stdout: stdout.map(Into::into),
            stderr: stderr.map(Into::into),
            exit_code: Some(3),
            ..BashOutput::new(Uuid::new_v4(), 4)
        })
    }

    #[test]
    fn masks_every_text_and_keeps_everything_else() {
        let masker = Masker::from_patterns([b"tok-123456"]);
        let event = command("echo tok-123456");
        let (masked, failed) = mask_event(&event, &masker);
        let BashEvent::Command(c) = &masked else { panic!("a command stays a command") };
        assert!(!failed);
        assert_eq!(c.command, "echo <secret-hidden>");
        assert_eq!(c.cwd.as_deref(), Some("/w/echo <secret-hidden>"));
        assert_eq!((c.id, c.timestamp, c.timeout), (event.id(), event.timestamp(), 300));
        assert_eq!(c.conversation_id.as_deref(), Some("c"));

        let event = output(Some("a tok-123456 b"), None);
        let (masked, failed) = mask_event(&event, &masker);
        let BashEvent::Output(o) = &masked else { panic!("an output stays an output") };
        assert!(!failed);
        assert_eq!((o.stdout.as_deref(), o.stderr.as_deref()), (Some("a <secret-hidden> b"), None));
        assert_eq!((o.id, o.order, o.exit_code, o.command_id), (event.id(), 4, Some(3), event.command_id()));
    }

    #[test]
    fn a_text_that_cannot_be_masked_is_withheld() {
        for event in [command("echo tok-123456"), output(Some("tok-123456"), Some("x"))] {
            let (masked, failed) = mask_event_with(&event, |_| None);
            assert!(failed);
            let text = serde_json::to_string(&masked).unwrap();
            assert!(!text.contains("tok-123456"), "{text}");
            assert!(text.contains(WITHHELD), "{text}");
        }
        // Absent texts stay absent, and there is nothing to withhold.
        let empty = output(None, None);
        let (masked, failed) = mask_event_with(&empty, |_| None);
        assert_eq!((masked, failed), (empty, false));
    }

    #[test]
    fn pages_serialize_as_the_store_does_with_masked_items() {
        let items = vec![Arc::new(command("echo tok-123456")), Arc::new(output(Some("tok-123456"), None))];
        let page = EventPage { items, next_page_id: Some("f".repeat(32)) };
        let masker = Masker::from_patterns([b"tok-123456"]);
        let masked = MaskedPage::new(&page, &masker);
        let value = serde_json::to_value(&masked).unwrap();
        assert!(!masked.withheld());
        assert_eq!(value["items"][0]["command"], "echo <secret-hidden>");
        assert_eq!(value["items"][1]["stdout"], "<secret-hidden>");
        let plain = serde_json::to_value(&page).unwrap();
        assert_eq!(value["next_page_id"], plain["next_page_id"]);
        assert_eq!(value["items"][1]["id"], plain["items"][1]["id"]);
        let keys = |v: &serde_json::Value| v.as_object().map(|o| o.len());
        assert_eq!(keys(&value), keys(&plain));
    }
}
