//! The event queue: what the endpoint tells the application, capped.

use alloc::collections::VecDeque;

use crate::event::Event;
use crate::stats::Stats;

/// Events waiting for `poll_event`, at most `Config::max_queued_events` of them (the cap is
/// passed to [`Events::push`] rather than kept: the configuration already holds it).
#[derive(Debug, Default)]
pub(crate) struct Events {
    queue: VecDeque<Event>,
}

/// Results of operations (bounded by the operation caps) are never dropped; notices (routing
/// changes, replies, incoming queries) may be.
fn droppable(e: &Event) -> bool {
    !matches!(
        e,
        Event::QueryDone { .. }
            | Event::QueryAllDone { .. }
            | Event::LookupDone { .. }
            | Event::AnnounceDone { .. }
            | Event::ScrapeDone { .. }
            | Event::GetItemDone { .. }
            | Event::PutItemDone { .. }
            | Event::CrawlDone { .. }
            | Event::IdChanged { .. }
            | Event::ModeChanged { .. }
    )
}

impl Events {
    /// Queues an event. When the queue is full the oldest notice goes to make room; a notice
    /// that finds only results in the queue is dropped itself. Drops are counted.
    pub(crate) fn push(&mut self, event: Event, cap: usize, stats: &mut Stats) {
        if self.queue.len() >= cap {
            if let Some(i) = self.queue.iter().position(droppable) {
                self.queue.remove(i);
                stats.events_dropped += 1;
            } else if droppable(&event) {
                stats.events_dropped += 1;
                return;
            }
        }
        self.queue.push_back(event);
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        let event = self.queue.pop_front();
        // Events come a few at a time, after a change; an idle engine of a large network keeps
        // no room for them (four events are 768 bytes, 8% of a simulated node at a million).
        super::rpc::release_if_empty(&mut self.queue, 0);
        event
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(crate) fn memory_footprint(&self) -> usize {
        self.queue.capacity() * core::mem::size_of::<Event>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, NodeInfo, OpId, QueryError};

    #[test]
    fn a_full_queue_drops_notices_never_results() {
        let mut events = Events::default();
        let mut stats = Stats::default();
        let notice = || Event::NodeAdded(NodeInfo::new(NodeId::from_array([1; 20]), "10.0.0.1:1".parse().unwrap()));
        let result = |n| Event::QueryDone { op: OpId(n), result: Err(QueryError::Timeout) };
        events.push(notice(), 2, &mut stats);
        events.push(result(1), 2, &mut stats);
        events.push(result(2), 2, &mut stats);
        assert_eq!(stats.events_dropped, 1, "the notice made room");
        events.push(notice(), 2, &mut stats);
        assert_eq!(stats.events_dropped, 2, "a notice finds only results: it goes");
        events.push(result(3), 2, &mut stats);
        assert!(matches!(events.pop(), Some(Event::QueryDone { op: OpId(1), .. })));
        assert!(matches!(events.pop(), Some(Event::QueryDone { op: OpId(2), .. })));
        assert!(matches!(events.pop(), Some(Event::QueryDone { op: OpId(3), .. })), "results are never dropped");
    }
}
