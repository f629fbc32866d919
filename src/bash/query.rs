//! The search parameters of `GET /api/bash/bash_events/search`: parsing and validating them
//! from query pairs, and deciding whether one event matches.
//!
//! This file owns [`SearchQuery`], its parsing ([`SearchQuery::from_pairs`]) and
//! [`SearchError`]. It does not page, sort or hold events (see `store`), and knows nothing of
//! HTTP frameworks: a handler extracts the raw pairs (axum: `Query<Vec<(String, String)>>`)
//! and calls [`SearchQuery::from_pairs`].
//!
//! Invariant: a [`SearchError`] names the parameter and the rule it broke and never repeats
//! the value it was given. Semantics follow the reference (`bash_router.py`,
//! `bash_service.py`): unknown parameters are ignored, a repeated parameter's last value wins,
//! `command_id__eq` matches only outputs, and `order__gt` never excludes a command.

use uuid::Uuid;

use super::model::{BashEvent, EventKind};
use super::timestamp::Timestamp;

/// The largest and default page size, as the reference.
pub(crate) const MAX_LIMIT: usize = 100;

/// How search results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Oldest first (`TIMESTAMP`, the default).
    #[default]
    Timestamp,
    /// Newest first (`TIMESTAMP_DESC`).
    TimestampDesc,
}

/// A validated search: every filter is optional; `limit` is 1..=[`MAX_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// `kind__eq`: only events of this kind.
    pub kind: Option<EventKind>,
    /// `command_id__eq`: only outputs of this command (never the command event itself, as the
    /// reference).
    pub command_id: Option<Uuid>,
    /// `order__gt`: only outputs with a greater `order`; commands have no order and pass.
    pub order_gt: Option<i64>,
    /// `timestamp__gte`: only events at or after this instant.
    pub timestamp_gte: Option<Timestamp>,
    /// `timestamp__lt`: only events before this instant.
    pub timestamp_lt: Option<Timestamp>,
    /// `sort_order`.
    pub sort_order: SortOrder,
    /// `page_id`: the `next_page_id` of a previous page; an empty value means none.
    pub page_id: Option<String>,
    /// `limit`: the most events in a page.
    pub limit: usize,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            kind: None,
            command_id: None,
            order_gt: None,
            timestamp_gte: None,
            timestamp_lt: None,
            sort_order: SortOrder::Timestamp,
            page_id: None,
            limit: MAX_LIMIT,
        }
    }
}

/// A search parameter that could not be accepted: which one, and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter {param} {rule}")]
pub struct SearchError {
    /// The parameter's name as it appears in the query string.
    pub param: &'static str,
    /// What a valid value looks like, e.g. `must be an integer from 1 to 100`.
    pub rule: &'static str,
}

const LIMIT_RULE: &str = "must be an integer from 1 to 100";

impl SearchQuery {
    /// Parses and validates raw query pairs (already percent-decoded).
    ///
    /// Unknown names are ignored and the last of repeated names wins, as FastAPI does. An
    /// empty `page_id` means no page id; an empty value of any other parameter is invalid.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, SearchError> {
        let mut query = SearchQuery::default();
        for (name, value) in pairs {
            match name.as_str() {
                "kind__eq" => query.kind = Some(parse_kind(value)?),
                "command_id__eq" => {
                    let id = Uuid::parse_str(value.trim())
                        .map_err(|_| SearchError { param: "command_id__eq", rule: "must be a UUID" })?;
                    query.command_id = Some(id);
                }
                "order__gt" => {
                    let order = value
                        .trim()
                        .parse()
                        .map_err(|_| SearchError { param: "order__gt", rule: "must be an integer" })?;
                    query.order_gt = Some(order);
                }
                "timestamp__gte" => query.timestamp_gte = Some(parse_timestamp("timestamp__gte", value)?),
                "timestamp__lt" => query.timestamp_lt = Some(parse_timestamp("timestamp__lt", value)?),
                "sort_order" => query.sort_order = parse_sort_order(value)?,
                "page_id" => query.page_id = Some(value.clone()).filter(|v| !v.is_empty()),
                "limit" => {
                    query.limit =
                        value.trim().parse().map_err(|_| SearchError { param: "limit", rule: LIMIT_RULE })?;
                }
                _ => {}
            }
        }
        query.validate()?;
        Ok(query)
    }

    /// Checks the rules a directly built query could break (`limit`).
    pub fn validate(&self) -> Result<(), SearchError> {
        if (1..=MAX_LIMIT).contains(&self.limit) {
            Ok(())
        } else {
            Err(SearchError { param: "limit", rule: LIMIT_RULE })
        }
    }

    /// Whether `event` passes every filter (the page and sort parameters aside).
    pub fn matches(&self, event: &BashEvent) -> bool {
        if self.kind.is_some_and(|kind| kind != event.kind()) {
            return false;
        }
        let stamp = event.timestamp();
        if self.timestamp_gte.is_some_and(|gte| stamp < gte)
            || self.timestamp_lt.is_some_and(|lt| stamp >= lt)
        {
            return false;
        }
        match event {
            BashEvent::Command(_) => self.command_id.is_none(),
            BashEvent::Output(output) => {
                self.command_id.is_none_or(|id| id == output.command_id)
                    && self.order_gt.is_none_or(|gt| i128::from(output.order) > i128::from(gt))
            }
        }
    }
}

fn parse_kind(value: &str) -> Result<EventKind, SearchError> {
    match value {
        "BashCommand" => Ok(EventKind::BashCommand),
        "BashOutput" => Ok(EventKind::BashOutput),
        _ => Err(SearchError { param: "kind__eq", rule: "must be BashCommand or BashOutput" }),
    }
}

fn parse_sort_order(value: &str) -> Result<SortOrder, SearchError> {
    match value {
        "TIMESTAMP" => Ok(SortOrder::Timestamp),
        "TIMESTAMP_DESC" => Ok(SortOrder::TimestampDesc),
        _ => Err(SearchError { param: "sort_order", rule: "must be TIMESTAMP or TIMESTAMP_DESC" }),
    }
}

fn parse_timestamp(param: &'static str, value: &str) -> Result<Timestamp, SearchError> {
    Timestamp::parse(value).ok_or(SearchError { param, rule: "must be an ISO-8601 date-time" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bash::model::{BashCommand, BashOutput};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn parse(list: &[(&str, &str)]) -> Result<SearchQuery, SearchError> {
        SearchQuery::from_pairs(&pairs(list))
    }

    #[test]
    fn parses_the_sdk_poll() {
        let id = "0123456789abcdef0123456789abcdef";
        let q = parse(&[
            ("command_id__eq", id),
            ("sort_order", "TIMESTAMP"),
            ("limit", "100"),
            ("kind__eq", "BashOutput"),
            ("order__gt", "4"),
        ])
        .unwrap();
        assert_eq!(q.command_id, Some(Uuid::parse_str(id).unwrap()));
        assert_eq!(
            (q.kind, q.sort_order, q.limit, q.order_gt),
            (Some(EventKind::BashOutput), SortOrder::Timestamp, 100, Some(4))
        );
    }

    #[test]
    fn defaults_and_lenient_parts() {
        assert_eq!(parse(&[]).unwrap(), SearchQuery::default());
        let q = parse(&[
            ("unknown", "x"),
            ("limit", "5"),
            ("limit", "7"),
            ("page_id", ""),
            ("sort_order", "TIMESTAMP_DESC"),
            ("command_id__eq", "01234567-89AB-CDEF-0123-456789ABCDEF"),
            ("timestamp__gte", "2024-01-01T12:00:00"),
            ("timestamp__lt", "2024-01-01T12:00:00.5+00:00"),
            ("order__gt", "-1"),
        ])
        .unwrap();
        assert_eq!(
            (q.limit, q.page_id, q.sort_order, q.order_gt),
            (7, None, SortOrder::TimestampDesc, Some(-1))
        );
        assert!(q.command_id.is_some() && q.timestamp_gte.is_some() && q.timestamp_lt.is_some());
    }

    #[test]
    fn bad_parameters_name_the_parameter_not_the_value() {
        let cases: &[(&str, &str)] = &[
            ("limit", "0"),
            ("limit", "101"),
            ("limit", "ten"),
            ("limit", "-1"),
            ("limit", ""),
            ("kind__eq", "BashError"),
            ("kind__eq", "bashoutput"),
            ("sort_order", "timestamp"),
            ("sort_order", "NEWEST"),
            ("command_id__eq", "not-a-uuid-SECRETISH"),
            ("order__gt", "1.5"),
            ("order__gt", "99999999999999999999"),
            ("timestamp__gte", "yesterday-SECRETISH"),
            ("timestamp__lt", "2024-02-30T00:00:00"),
        ];
        for (name, value) in cases {
            let err = parse(&[(name, value)]).unwrap_err();
            assert_eq!(err.param, *name, "{name}={value}");
            let message = err.to_string();
            assert!(message.starts_with(&format!("query parameter {name} must be ")), "{message}");
            assert!(!message.contains("SECRETISH") && !message.contains("NEWEST"), "{message}");
        }
        assert_eq!(
            parse(&[("limit", "0")]).unwrap_err().to_string(),
            "query parameter limit must be an integer from 1 to 100"
        );
        let direct = SearchQuery { limit: 0, ..SearchQuery::default() };
        assert_eq!(direct.validate().unwrap_err().param, "limit");
    }

    #[test]
    fn command_id_matches_outputs_only_and_order_spares_commands() {
        let command = BashCommand::new("true".into(), None, 1, None);
        let output = BashEvent::from(BashOutput::new(command.id, 2));
        let command = BashEvent::from(command.clone());
        let by_command = SearchQuery { command_id: Some(command.id()), ..SearchQuery::default() };
        assert!(!by_command.matches(&command));
        assert!(by_command.matches(&output));
        let order = |gt| SearchQuery { order_gt: Some(gt), ..SearchQuery::default() };
        assert!(order(1).matches(&output) && !order(2).matches(&output) && order(-5).matches(&output));
        assert!(order(i64::MAX).matches(&command));
    }
}
