//! The life of one running command, from spawn to the last byte: one `select!` loop over the
//! shell's exit, both pipes, the sink, the deadline and cancellation, then the kill sequence.
//!
//! Owns *when* things happen (contract §5 "Lifetime"): after the shell exits, output is read
//! until both pipes close or [`GRACE`] passes; then the group gets `SIGTERM`, and `SIGKILL`
//! after [`TERM_TO_KILL`] if a member remains; a deadline or a cancellation starts the same
//! sequence at once. It does not mask or cap (`capture`) nor build the outcome (`mod`).
//!
//! Invariants: both pipes are read concurrently, so a full pipe never stalls the child; while
//! a streamed chunk waits for room in the sink no pipe is read, so a slow receiver slows the
//! child instead of growing memory; no thread is spawned and nothing sleeps except the kill
//! sequence's short, growing polls (no event says a process group is empty).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc::{Permit, Sender};
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::capture::StreamOutput;
use super::child::{Group, GroupGuard, Spawned};
use super::{Chunk, ExecError};

/// How long output is still read after the shell exits, when the pipes stay open.
pub const GRACE: Duration = Duration::from_millis(100);
/// Time between `SIGTERM` and `SIGKILL` to the group.
pub const TERM_TO_KILL: Duration = Duration::from_secs(1);
/// How long to wait for the group to vanish after `SIGKILL` before giving up on it.
const KILL_WAIT: Duration = Duration::from_secs(1);
const POLL_MIN: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(25);
const READ_BUF: usize = 64 * 1024;
/// Reads of already-available output after the group is gone (a process that left the group
/// may hold a pipe open and keep writing; it must not keep the request alive).
const FINAL_READS: usize = 16;

/// How a command ended.
#[derive(Debug)]
pub(super) enum Ending {
    /// The shell exited (by itself or by a signal not sent on a deadline or cancellation).
    Exited(ExitStatus),
    /// The deadline passed first.
    TimedOut,
    /// The caller cancelled, or the sink's receiver went away, first.
    Cancelled,
}

enum Phase {
    Running,
    /// The shell exited; waiting for the pipes to close.
    Grace,
    /// The group got `SIGTERM` at `term_at` (and `SIGKILL` at `killed_at`).
    Terminating {
        term_at: Instant,
        killed_at: Option<Instant>,
        poll: Duration,
    },
    Done,
}

/// Where masked chunks go, and whether they may still go there.
struct Outlet<'a> {
    sink: Option<&'a Sender<Chunk>>,
    pending: Option<Chunk>,
}

impl Outlet<'_> {
    /// Makes `chunk` the pending one, unless it may not go out. Call only with nothing
    /// pending (reads stop while a chunk waits, and the final flush delivers first).
    fn offer(&mut self, chunk: Option<Chunk>, outputs_ok: bool) {
        debug_assert!(self.pending.is_none());
        self.pending = chunk.filter(|_| self.sink.is_some() && outputs_ok);
    }
}

/// Drives `spawned` to its end, feeding its output to `out` and `err` (and their chunks to
/// `sink`). Returns once the process group is gone (or survived `SIGKILL` for [`KILL_WAIT`]).
pub(super) async fn supervise(
    spawned: Spawned,
    out: &mut StreamOutput,
    err: &mut StreamOutput,
    sink: Option<&Sender<Chunk>>,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Ending, ExecError> {
    let Spawned { mut child, stdout, stderr, mut guard } = spawned;
    let (mut stdout, mut stderr) = (Some(stdout), Some(stderr));
    // Reserved, not zeroed: pages are only touched by output that arrives, so a quiet command
    // costs no memory and 100 concurrent ones do not hold 12.8 MB of zeroes.
    let (mut buf_out, mut buf_err) = (Vec::with_capacity(READ_BUF), Vec::with_capacity(READ_BUF));
    let mut outlet = Outlet { sink, pending: None };
    let mut status: Option<ExitStatus> = None;
    let mut wait_error: Option<io::Error> = None;
    let mut ending: Option<Ending> = None;
    let mut phase = Phase::Running;
    let timer = sleep_until(deadline);
    tokio::pin!(timer);

    loop {
        if matches!(phase, Phase::Grace) && stdout.is_none() && stderr.is_none() {
            phase = start_terminating(&mut guard, timer.as_mut());
        }
        if matches!(phase, Phase::Done) {
            break;
        }
        let live = matches!(phase, Phase::Running | Phase::Grace);
        let reading = outlet.pending.is_none();
        tokio::select! {
            biased;
            () = cancel.cancelled(), if live => {
                if matches!(phase, Phase::Running) {
                    ending = Some(Ending::Cancelled);
                }
                phase = start_terminating(&mut guard, timer.as_mut());
            }
            res = child.wait(), if status.is_none() && wait_error.is_none() => {
                match res {
                    Ok(s) => status = Some(s),
                    Err(e) => wait_error = Some(e),
                }
                if matches!(phase, Phase::Running) {
                    phase = Phase::Grace;
                    timer.as_mut().reset(Instant::now() + GRACE);
                }
            }
            () = &mut timer => {
                phase = match phase {
                    Phase::Running => {
                        ending = Some(Ending::TimedOut);
                        start_terminating(&mut guard, timer.as_mut())
                    }
                    Phase::Grace => start_terminating(&mut guard, timer.as_mut()),
                    Phase::Terminating { term_at, killed_at, poll } => {
                        poll_group(&mut guard, term_at, killed_at, poll, timer.as_mut())
                    }
                    Phase::Done => Phase::Done,
                };
            }
            () = closed(outlet.sink), if live && outlet.pending.is_none() => {
                // The receiver is gone while the command was quiet: the client disconnected.
                outlet.sink = None;
                if matches!(phase, Phase::Running) {
                    ending = Some(Ending::Cancelled);
                }
                phase = start_terminating(&mut guard, timer.as_mut());
            }
            permit = reserve(outlet.sink), if outlet.pending.is_some() => match permit {
                Some(permit) => {
                    if let Some(chunk) = outlet.pending.take() {
                        permit.send(chunk);
                    }
                }
                None => {
                    // The receiver is gone: the client disconnected.
                    outlet.sink = None;
                    outlet.pending = None;
                    if matches!(phase, Phase::Running) {
                        ending = Some(Ending::Cancelled);
                    }
                    if live {
                        phase = start_terminating(&mut guard, timer.as_mut());
                    }
                }
            },
            res = read_some(&mut stdout, &mut buf_out), if reading && stdout.is_some() => {
                let chunk = on_read(res, &mut stdout, &buf_out, out);
                outlet.offer(chunk, !out.failed() && !err.failed());
            }
            res = read_some(&mut stderr, &mut buf_err), if reading && stderr.is_some() => {
                let chunk = on_read(res, &mut stderr, &buf_err, err);
                outlet.offer(chunk, !out.failed() && !err.failed());
            }
        }
    }

    if status.is_none() && wait_error.is_none() {
        // The group is gone, so the shell is at most an unreaped zombie: this is immediate
        // unless it survived SIGKILL (uninterruptible sleep), which must not hang the request.
        match tokio::time::timeout(GRACE, child.wait()).await {
            Ok(Ok(s)) => status = Some(s),
            Ok(Err(e)) => wait_error = Some(e),
            Err(_) => {}
        }
    }

    // The chunk still waiting for room, output that is already there, then whatever the
    // maskers held back.
    deliver(&mut outlet, cancel).await;
    for _ in 0..FINAL_READS {
        let Some(res) = now_or_never(read_some(&mut stdout, &mut buf_out)).await else { break };
        let chunk = on_read(res, &mut stdout, &buf_out, out);
        outlet.offer(chunk, !out.failed() && !err.failed());
        deliver(&mut outlet, cancel).await;
    }
    for _ in 0..FINAL_READS {
        let Some(res) = now_or_never(read_some(&mut stderr, &mut buf_err)).await else { break };
        let chunk = on_read(res, &mut stderr, &buf_err, err);
        outlet.offer(chunk, !out.failed() && !err.failed());
        deliver(&mut outlet, cancel).await;
    }
    let chunk = out.finish();
    outlet.offer(chunk, !out.failed() && !err.failed());
    deliver(&mut outlet, cancel).await;
    let chunk = err.finish();
    outlet.offer(chunk, !out.failed() && !err.failed());
    deliver(&mut outlet, cancel).await;

    match (ending, status, wait_error) {
        (Some(ending), _, _) => Ok(ending),
        (None, Some(status), _) => Ok(Ending::Exited(status)),
        (None, None, Some(e)) => Err(ExecError::Wait(e)),
        (None, None, None) => Err(ExecError::Wait(io::Error::other("exit status unavailable"))),
    }
}

/// Sends `SIGTERM` to the group and starts polling it, or ends at once if it is empty.
fn start_terminating(guard: &mut GroupGuard, timer: Pin<&mut Sleep>) -> Phase {
    if guard.signal(libc::SIGTERM) == Group::Gone {
        return Phase::Done;
    }
    let now = Instant::now();
    timer.reset(now + POLL_MIN);
    Phase::Terminating { term_at: now, killed_at: None, poll: POLL_MIN }
}

/// One poll of a terminating group: done when it is empty, `SIGKILL` once [`TERM_TO_KILL`]
/// has passed, give up [`KILL_WAIT`] after that; else poll again a little later.
fn poll_group(
    guard: &mut GroupGuard,
    term_at: Instant,
    mut killed_at: Option<Instant>,
    poll: Duration,
    timer: Pin<&mut Sleep>,
) -> Phase {
    if guard.check() == Group::Gone {
        return Phase::Done;
    }
    let now = Instant::now();
    let milestone = match killed_at {
        None if now >= term_at + TERM_TO_KILL => {
            if guard.signal(libc::SIGKILL) == Group::Gone {
                return Phase::Done;
            }
            killed_at = Some(now);
            now + KILL_WAIT
        }
        None => term_at + TERM_TO_KILL,
        Some(k) if now >= k + KILL_WAIT => {
            tracing::warn!(pgid = guard.pgid(), "process group survived SIGKILL; giving up on it");
            guard.disarm();
            return Phase::Done;
        }
        Some(k) => k + KILL_WAIT,
    };
    let poll = (poll * 2).min(POLL_MAX);
    timer.reset((now + poll).min(milestone));
    Phase::Terminating { term_at, killed_at, poll }
}

/// Feeds one read result to `output`; end of file or an error closes the pipe and flushes.
fn on_read<R>(
    res: io::Result<usize>,
    pipe: &mut Option<R>,
    buf: &[u8],
    output: &mut StreamOutput,
) -> Option<Chunk> {
    match res {
        Ok(n) if n > 0 => output.push(buf),
        Ok(_) => {
            *pipe = None;
            output.finish()
        }
        Err(e) => {
            tracing::debug!(error = %e, "reading command output failed; treating it as closed");
            *pipe = None;
            output.finish()
        }
    }
}

/// Reads from `pipe` into `buf`'s spare capacity, replacing what `buf` held; never completes
/// when the pipe is closed.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    match pipe {
        Some(r) => r.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

/// Room for one chunk in `sink`; `None` when the receiver is gone; never completes without a
/// sink.
async fn reserve(sink: Option<&Sender<Chunk>>) -> Option<Permit<'_, Chunk>> {
    match sink {
        Some(s) => s.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

/// Completes when the sink's receiver is gone; never without a sink.
async fn closed(sink: Option<&Sender<Chunk>>) {
    match sink {
        Some(s) => s.closed().await,
        None => std::future::pending().await,
    }
}

/// Sends the pending chunk, waiting for room unless `cancel` fires or the receiver is gone.
async fn deliver(outlet: &mut Outlet<'_>, cancel: &CancellationToken) {
    let (Some(sink), Some(chunk)) = (outlet.sink, outlet.pending.take()) else { return };
    let sent = tokio::select! {
        biased;
        res = sink.send(chunk) => res.is_ok(),
        () = cancel.cancelled() => false,
    };
    if !sent {
        outlet.sink = None;
    }
}

/// The output of `fut` if it is ready on its first poll.
async fn now_or_never<F: Future>(fut: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = fut => Some(out),
        () = std::future::ready(()) => None,
    }
}
