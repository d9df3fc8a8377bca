//! The mark ledger: which outbound audio Twilio has confirmed as played.
//!
//! Every mark we send is named `{generation}:{cumulative_ms}:{item_id}` and queued here; Twilio
//! echoes marks in order as the audio before them finishes playing, and echoes all pending marks at
//! once when we send `clear`. Bumping the generation on `clear` is what tells those flushed echoes
//! (not heard) apart from played ones. This module owns only that bookkeeping; it must not decide
//! what a barge-in does.

use std::collections::VecDeque;

/// A mark we sent and Twilio has not yet echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMark {
    pub name: String,
    pub item_id: String,
    /// Milliseconds of the item's audio sent up to this mark.
    pub cum_ms: u64,
}

/// What an echoed mark means.
#[derive(Debug, PartialEq, Eq)]
pub enum MarkEcho {
    /// The audio up to `cum_ms` of `item_id` has played.
    Played { item_id: String, cum_ms: u64 },
    /// An echo from before the last `clear`: flushed, not heard.
    Stale,
    /// A name we never sent (or already consumed) in this generation.
    Unknown,
}

#[derive(Debug, Default)]
pub struct MarkLedger {
    generation: u32,
    pending: VecDeque<PendingMark>,
}

impl MarkLedger {
    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The oldest mark not yet echoed.
    pub fn front(&self) -> Option<&PendingMark> {
        self.pending.front()
    }

    /// The first pending mark of `item_id`: the caller cannot have heard that item past its `cum_ms`.
    pub fn next_for_item(&self, item_id: &str) -> Option<&PendingMark> {
        self.pending.iter().find(|m| m.item_id == item_id)
    }

    /// Records a mark for `item_id` at `cum_ms` and returns the name to send.
    pub fn push(&mut self, item_id: &str, cum_ms: u64) -> String {
        let name = format!("{}:{cum_ms}:{item_id}", self.generation);
        self.pending.push_back(PendingMark {
            name: name.clone(),
            item_id: item_id.to_owned(),
            cum_ms,
        });
        name
    }

    /// Interprets an echo from Twilio.
    pub fn echo(&mut self, name: &str) -> MarkEcho {
        let generation = name.split(':').next().and_then(|g| g.parse::<u32>().ok());
        match generation {
            Some(g) if g != self.generation => return MarkEcho::Stale,
            Some(_) => {}
            None => return MarkEcho::Unknown,
        }
        let Some(position) = self.pending.iter().position(|m| m.name == name) else {
            return MarkEcho::Unknown;
        };
        // Echoes come back in order, so every earlier mark has played too.
        let mut played = None;
        for _ in 0..=position {
            played = self.pending.pop_front();
        }
        let played = played.expect("position is within the queue");
        MarkEcho::Played {
            item_id: played.item_id,
            cum_ms: played.cum_ms,
        }
    }

    /// Forgets every pending mark and starts a new generation (call when sending `clear`).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.generation = self.generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_in_order_and_skips_lost_ones() {
        let mut ledger = MarkLedger::default();
        let a = ledger.push("item_1", 100);
        let _b = ledger.push("item_1", 200);
        let c = ledger.push("item_1", 300);
        assert_eq!(
            ledger.echo(&a),
            MarkEcho::Played {
                item_id: "item_1".into(),
                cum_ms: 100
            }
        );
        // b's echo never arrives; c implies b played.
        assert_eq!(
            ledger.echo(&c),
            MarkEcho::Played {
                item_id: "item_1".into(),
                cum_ms: 300
            }
        );
        assert!(ledger.is_empty());
        assert_eq!(ledger.echo(&c), MarkEcho::Unknown);
    }

    #[test]
    fn clear_makes_old_echoes_stale() {
        let mut ledger = MarkLedger::default();
        let a = ledger.push("item_1", 100);
        ledger.clear();
        assert_eq!(ledger.echo(&a), MarkEcho::Stale);
        assert_eq!(ledger.echo("garbage"), MarkEcho::Unknown);
        assert_eq!(ledger.echo("1:100:item_9"), MarkEcho::Unknown);
        let b = ledger.push("item_2", 20);
        assert!(b.starts_with("1:"));
    }
}
