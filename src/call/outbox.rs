//! One socket's outgoing side, driven by the call's actor without ever waiting on it.
//!
//! During a turn the actor queues messages here; at the end of the turn it drives the outbox once:
//! every message goes into the socket (which buffers it) while the socket takes it, then one flush
//! writes them all. A socket that cannot take more (its peer reads slowly) leaves messages waiting
//! here while the actor goes on with its timers and the other socket; [`next_event`] drives the
//! outbox again, in the same poll as the socket's read, when the socket is writable. An outbox whose
//! socket took nothing for [`PEER_STALL`] while messages waited reports its peer stalled. This
//! replaces a writer task, a channel and a split socket (a lock shared by its halves) per socket:
//! no task hop, no channel send and no extra wake-up per message.
//!
//! It must not decide anything about the call: what to send, what to drop and when to give up are
//! the actor's (`call/driver.rs`).

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use tokio::time::Instant;

/// How long an outbox may wait for its socket to take anything before the peer counts as stalled
/// and the call is hung up. On top of the kernel's socket buffers, so a reading peer never gets
/// here; a peer that stops reading is found within this time, and timers fire meanwhile.
pub const PEER_STALL: Duration = Duration::from_secs(5);

/// One socket's queue of outgoing text messages. The socket itself stays with the actor, which
/// reads it too.
pub struct Outbox<M> {
    queue: VecDeque<Bytes>,
    /// Messages handed to the socket since its last completed flush.
    unflushed: bool,
    /// While messages wait: when the socket last took one (or the waiting began).
    waiting_since: Option<Instant>,
    /// The socket failed: what is queued from now on is discarded (its reader reports the end).
    failed: bool,
    /// Wraps a UTF-8 text as the socket's message type.
    text: fn(Bytes) -> Option<M>,
}

/// What one poll of a socket brought: its next message (`None`: it ended), or the news that its
/// outbox, held back until now, has drained (the actor may read the other socket again).
pub enum SocketEvent<T> {
    Read(Option<T>),
    Drained,
}

impl<M> Outbox<M> {
    pub fn new(text: fn(Bytes) -> Option<M>) -> Self {
        Self {
            queue: VecDeque::new(),
            unflushed: false,
            waiting_since: None,
            failed: false,
            text,
        }
    }

    /// Queues one text message (a UTF-8 slice of the actor's message buffer).
    pub fn push(&mut self, text: Bytes) {
        if !self.failed {
            self.queue.push_back(text);
        }
    }

    /// Messages waiting for the socket.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether a drive has anything to do: messages wait, or a flush is unfinished.
    pub fn needs_drive(&self) -> bool {
        self.unflushed || !self.queue.is_empty()
    }

    /// Forgets the socket's state and what was queued for it (its socket is being replaced).
    pub fn reset(&mut self) {
        self.queue.clear();
        self.unflushed = false;
        self.waiting_since = None;
        self.failed = false;
    }

    /// When the peer counts as stalled, if messages are waiting on it.
    pub fn stall_deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|since| since + PEER_STALL)
    }

    /// Whether the socket has taken nothing for [`PEER_STALL`] while messages waited.
    pub fn stalled(&self, now: Instant) -> bool {
        self.stall_deadline().is_some_and(|at| now >= at)
    }

    /// Hands queued messages to `sink` while it takes them, and flushes. Ready when nothing waits
    /// any more (or the socket failed); pending while the socket holds messages back, with the task
    /// woken when it can take more.
    pub fn poll_drive<S>(&mut self, sink: &mut S, cx: &mut Context<'_>, now: Instant) -> Poll<()>
    where
        S: Sink<M> + Unpin,
    {
        if self.failed {
            return Poll::Ready(());
        }
        let mut took = false;
        while !self.queue.is_empty() {
            match Pin::new(&mut *sink).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return self.fail(),
                Poll::Pending => break,
            }
            let Some(text) = self.queue.pop_front() else {
                break;
            };
            // The actor writes only UTF-8 into its buffers; `None` cannot happen.
            let Some(message) = (self.text)(text) else {
                continue;
            };
            if Pin::new(&mut *sink).start_send(message).is_err() {
                return self.fail();
            }
            self.unflushed = true;
            took = true;
        }
        if self.unflushed {
            match Pin::new(&mut *sink).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    took = true;
                }
                Poll::Ready(Err(_)) => return self.fail(),
                Poll::Pending => {}
            }
        }
        if !self.needs_drive() {
            self.waiting_since = None;
            return Poll::Ready(());
        }
        if took || self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
        Poll::Pending
    }

    /// Drives once without waiting (at the end of a turn).
    pub async fn drive_now<S>(&mut self, sink: &mut S)
    where
        S: Sink<M> + Unpin,
    {
        if self.needs_drive() {
            poll_fn(|cx| {
                let _ = self.poll_drive(sink, cx, Instant::now());
                Poll::Ready(())
            })
            .await
        }
    }

    /// At the end of the call: sends what is queued, then `close`, and closes the socket.
    pub async fn close<S>(mut self, sink: &mut S, close: M)
    where
        S: Sink<M> + Unpin,
    {
        poll_fn(|cx| self.poll_drive(sink, cx, Instant::now())).await;
        if !self.failed {
            let _ = sink.send(close).await;
            let _ = sink.close().await;
        }
    }

    fn fail(&mut self) -> Poll<()> {
        self.queue.clear();
        self.unflushed = false;
        self.waiting_since = None;
        self.failed = true;
        Poll::Ready(())
    }
}

/// The next thing a socket has for the actor: one future per socket, so that the socket's read and
/// its held-back writes are polled together. Reads only when `read` (the actor may pause reading a
/// socket); pending forever without a socket.
pub fn next_event<'a, S, M>(
    socket: Option<&'a mut S>,
    outbox: &'a mut Outbox<M>,
    read: bool,
) -> impl Future<Output = SocketEvent<S::Item>> + 'a
where
    S: Stream + Sink<M> + Unpin,
{
    // Held back at the start of the turn: its draining is news for the actor.
    let held_back = outbox.needs_drive();
    let mut socket = socket;
    poll_fn(move |cx| {
        let Some(socket) = socket.as_deref_mut() else {
            return Poll::Pending;
        };
        if held_back
            && outbox.needs_drive()
            && outbox.poll_drive(socket, cx, Instant::now()).is_ready()
        {
            return Poll::Ready(SocketEvent::Drained);
        }
        if read {
            socket.poll_next_unpin(cx).map(SocketEvent::Read)
        } else {
            Poll::Pending
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    /// A sink that takes `room` messages, then holds back until given more room.
    #[derive(Default)]
    struct Gate {
        room: usize,
        taken: Vec<Bytes>,
        flushes: usize,
        broken: bool,
    }

    impl Sink<Bytes> for Gate {
        type Error = ();
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            if self.broken {
                Poll::Ready(Err(()))
            } else if self.room > 0 {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
        fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), ()> {
            self.room -= 1;
            self.taken.push(item);
            Ok(())
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn gate(room: usize) -> Gate {
        Gate {
            room,
            ..Gate::default()
        }
    }

    fn drive(out: &mut Outbox<Bytes>, sink: &mut Gate, now: Instant) -> Poll<()> {
        out.poll_drive(sink, &mut Context::from_waker(noop_waker_ref()), now)
    }

    #[test]
    fn a_turns_messages_go_out_in_order_with_one_flush() {
        let (mut out, mut sink) = (Outbox::new(Some), gate(10));
        for text in ["a", "b", "c"] {
            out.push(Bytes::from_static(text.as_bytes()));
        }
        assert!(out.needs_drive());
        assert_eq!(drive(&mut out, &mut sink, Instant::now()), Poll::Ready(()));
        assert_eq!(sink.taken, ["a", "b", "c"]);
        assert_eq!(sink.flushes, 1);
        assert!(!out.needs_drive());
        assert_eq!(out.stall_deadline(), None);
    }

    #[test]
    fn a_peer_that_takes_nothing_is_stalled_after_the_limit_and_progress_restarts_the_clock() {
        let start = Instant::now();
        let (mut out, mut sink) = (Outbox::new(Some), gate(1));
        out.push(Bytes::from_static(b"a"));
        out.push(Bytes::from_static(b"b"));
        assert_eq!(drive(&mut out, &mut sink, start), Poll::Pending);
        assert_eq!(out.queued(), 1);
        assert_eq!(out.stall_deadline(), Some(start + PEER_STALL));
        // Nothing taken: the clock keeps its start.
        assert_eq!(
            drive(&mut out, &mut sink, start + PEER_STALL / 2),
            Poll::Pending
        );
        assert!(!out.stalled(start + PEER_STALL / 2));
        assert!(out.stalled(start + PEER_STALL));
        // The peer takes one: everything is out and nothing is stalled.
        sink.room = 1;
        assert_eq!(
            drive(&mut out, &mut sink, start + PEER_STALL),
            Poll::Ready(())
        );
        assert!(!out.stalled(start + PEER_STALL * 3));
        // Progress restarts the clock: taking one of two later messages moves the deadline.
        out.push(Bytes::from_static(b"c"));
        out.push(Bytes::from_static(b"d"));
        let later = start + PEER_STALL * 4;
        sink.room = 1;
        assert_eq!(drive(&mut out, &mut sink, later), Poll::Pending);
        assert_eq!(out.stall_deadline(), Some(later + PEER_STALL));
        assert_eq!(sink.taken, ["a", "b", "c"]);
    }

    #[test]
    fn a_failed_socket_discards_what_follows_and_a_reset_takes_new_messages() {
        let (mut out, mut sink) = (Outbox::new(Some), gate(1));
        sink.broken = true;
        out.push(Bytes::from_static(b"lost"));
        assert_eq!(drive(&mut out, &mut sink, Instant::now()), Poll::Ready(()));
        out.push(Bytes::from_static(b"dropped"));
        assert_eq!(out.queued(), 0);
        assert!(!out.needs_drive());
        // A new socket (a provider connection replaced): messages queue for it again.
        out.reset();
        out.push(Bytes::from_static(b"setup"));
        let mut next = gate(5);
        assert_eq!(drive(&mut out, &mut next, Instant::now()), Poll::Ready(()));
        assert_eq!(next.taken, ["setup"]);
    }
}
