//! A JSON-RPC batch in progress on one connection (docs/protocol.md §2):
//! the members not run yet and the answers collected so far, in member order.

use std::collections::VecDeque;

use portcullis_net::Admission;

use crate::envelope::{Envelope, Invalid};

/// One batch frame, from its first member to the array that answers it.
///
/// Members run one at a time, each as if it had arrived alone; a member
/// whose answer comes later (it waits on the store or a takeover) keeps a
/// reserved entry, so the array stays in member order. Kept in
/// [`RpcState`](crate::RpcState) by the dispatcher.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Members not run yet, in array order.
    members: VecDeque<Result<Envelope, Invalid>>,
    /// The frame's own admission, spent by the first member; later members
    /// take a token each.
    first_admission: Option<Admission>,
    /// One per request member run so far: its answer line, once known.
    entries: Vec<Option<String>>,
    /// Tickets of members whose answer is still to come → their entry.
    waiting: Vec<(u64, usize)>,
}

/// What became of an answer given to [`RpcState::fill_entry`](crate::RpcState).
pub(crate) enum Filled {
    /// It belongs to no batch: send it as it is.
    NotInBatch(String),
    /// It filled its entry; the batch still waits for others.
    Kept,
    /// It completed its batch: send this array (`None`: no entry at all).
    Completed(Option<String>),
}

impl Filled {
    /// The line to send now, if any.
    pub(crate) fn line(self) -> Option<String> {
        match self {
            Self::NotInBatch(line) => Some(line),
            Self::Kept => None,
            Self::Completed(array) => array,
        }
    }
}

impl Batch {
    pub(crate) fn new(members: Vec<Result<Envelope, Invalid>>, admission: Admission) -> Self {
        Self { members: members.into(), first_admission: Some(admission), entries: Vec::new(), waiting: Vec::new() }
    }

    /// The next member to run, with the frame's admission for the first one
    /// (`None`: take a token of its own).
    pub(crate) fn next_member(&mut self) -> Option<(Result<Envelope, Invalid>, Option<Admission>)> {
        let member = self.members.pop_front()?;
        Some((member, self.first_admission.take()))
    }

    /// Whether members are still to run.
    pub(crate) fn is_executing(&self) -> bool {
        !self.members.is_empty()
    }

    /// Whether every member ran and every answer is in.
    pub(crate) fn is_finished(&self) -> bool {
        self.members.is_empty() && self.waiting.is_empty()
    }

    /// Adds an answer known at once.
    pub(crate) fn push_entry(&mut self, line: String) {
        self.entries.push(Some(line));
    }

    /// Keeps the next entry for the answer to `ticket`.
    pub(crate) fn reserve_entry(&mut self, ticket: u64) {
        self.waiting.push((ticket, self.entries.len()));
        self.entries.push(None);
    }

    /// Drops the entry kept for `ticket` (its member will never be answered).
    pub(crate) fn cancel_entry(&mut self, ticket: u64) {
        self.waiting.retain(|(t, _)| *t != ticket);
    }

    /// Puts the answer to `ticket` in its entry; gives it back when the
    /// ticket is not one of this batch's.
    pub(crate) fn fill(&mut self, ticket: u64, line: String) -> Result<(), String> {
        let Some(pos) = self.waiting.iter().position(|(t, _)| *t == ticket) else { return Err(line) };
        let (_, index) = self.waiting.swap_remove(pos);
        self.entries[index] = Some(line);
        Ok(())
    }

    /// The array of the entries so far, in member order; `None` when there
    /// is none (a batch of notifications gets no reply at all).
    pub(crate) fn into_line(self) -> Option<String> {
        let mut entries = self.entries.into_iter().flatten().peekable();
        entries.peek()?;
        let mut line = String::from("[");
        for (i, entry) in entries.enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&entry);
        }
        line.push(']');
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_member_order_whenever_answers_arrive() {
        let mut batch = Batch::new(Vec::new(), Admission::Admitted);
        batch.push_entry("1".into());
        batch.reserve_entry(7);
        batch.push_entry("3".into());
        assert!(!batch.is_finished());
        assert_eq!(batch.fill(8, "x".into()), Err("x".to_owned()));
        assert_eq!(batch.fill(7, "2".into()), Ok(()));
        assert!(batch.is_finished());
        assert_eq!(batch.into_line().as_deref(), Some("[1,2,3]"));
    }

    #[test]
    fn no_entry_no_reply_and_unfilled_entries_are_left_out() {
        assert_eq!(Batch::new(Vec::new(), Admission::Admitted).into_line(), None);
        let mut batch = Batch::new(Vec::new(), Admission::Admitted);
        batch.reserve_entry(1);
        batch.push_entry("{}".into());
        assert_eq!(batch.into_line().as_deref(), Some("[{}]"));
    }
}
