//! The call: one actor per call. [`session`] is the sans-IO state machine that owns every piece of
//! call state; [`driver`] is the thin async task that feeds it from the sockets and timers and
//! carries out what it asks; [`marks`] is the playback ledger; [`plan`] routes a call to a tenant's
//! agent and gathers that agent's configuration; [`transfer`] is the `transfer_call` tool and the
//! redirect that carries a cold transfer out; [`warm`] the warm transfer (hold, whisper, back to
//! the agent); [`analysis`] the post-call analysis (queue, text model, schema check); [`live`] lists the calls this node runs and routes
//! supervisors' commands into them.

pub mod analysis;
pub mod driver;
pub mod live;
pub mod marks;
pub mod outbox;
pub mod plan;
pub mod recovery;
pub mod session;
pub mod transfer;
pub mod warm;
