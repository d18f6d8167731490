//! The one trait `auditflow query` searches a store through: filters in,
//! rows out, newest first. The `local_store` sink's [`Store`] and the
//! `elasticsearch` sink's [`ElasticsearchStore`] implement it, so the command's
//! flags, its table and its JSON output are written once.
//!
//! [`ElasticsearchStore`]: crate::elasticsearch::search::ElasticsearchStore

use std::ops::ControlFlow;

use crate::local_store::read::{
    AlertFilter, EventFilter, Field, Store, StoredAlert, StoredEvent, TimeRange,
};

/// A store `auditflow query` can search.
pub trait SearchableStore {
    /// Calls `visit` with each audit event matching `filter` in `range`, newest
    /// first, until it breaks.
    fn for_each_event(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> anyhow::Result<()>;

    /// How many audit events match `filter` in `range`.
    fn count_events(&mut self, range: &TimeRange, filter: &EventFilter) -> anyhow::Result<u64>;

    /// The matching audit events counted by the values of `field` (`-` for
    /// events without one), most frequent first, ties by value.
    fn group_events(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        field: Field,
    ) -> anyhow::Result<Vec<(String, u64)>>;

    /// Calls `visit` with each alert matching `filter` in `range`, newest
    /// first, until it breaks.
    fn for_each_alert(
        &mut self,
        range: &TimeRange,
        filter: &AlertFilter,
        visit: &mut dyn FnMut(StoredAlert) -> ControlFlow<()>,
    ) -> anyhow::Result<()>;

    /// What could not be read while searching (shown after the results).
    fn problems(&self) -> Vec<String>;
}

impl SearchableStore for Store {
    fn for_each_event(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        visit: &mut dyn FnMut(StoredEvent) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        Store::for_each_event(self, range, filter, visit)
    }

    fn count_events(&mut self, range: &TimeRange, filter: &EventFilter) -> anyhow::Result<u64> {
        Store::count_events(self, range, filter)
    }

    fn group_events(
        &mut self,
        range: &TimeRange,
        filter: &EventFilter,
        field: Field,
    ) -> anyhow::Result<Vec<(String, u64)>> {
        Store::group_events(self, range, filter, field)
    }

    fn for_each_alert(
        &mut self,
        range: &TimeRange,
        filter: &AlertFilter,
        visit: &mut dyn FnMut(StoredAlert) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        Store::for_each_alert(self, range, filter, visit)
    }

    fn problems(&self) -> Vec<String> {
        self.errors.iter().map(ToString::to_string).collect()
    }
}
