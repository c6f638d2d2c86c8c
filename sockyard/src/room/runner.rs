//! The task that runs a room's program: start it, attach to it, pump client input to it and
//! its output to the room, restart it if asked, and stop it gracefully when the room ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::framing::OutputDecoder;
use super::live::{Room, CLOSE_GOING_AWAY};
use super::options::Restart;
use super::program::{exit_close, Creator, Program, ProgramIo};

/// Bytes of queued client messages written to the program with one call.
const INPUT_BATCH: usize = 64 * 1024;

/// Why the runner stopped watching the program.
enum Watched {
    Exited(Option<std::process::ExitStatus>),
    Empty,
    Shutdown,
}

/// Runs the room's program until the room ends.
pub(crate) async fn run(
    room: Arc<Room>,
    mut program: Program,
    creator: Creator,
    mut input: mpsc::Receiver<Bytes>,
) {
    let service = room.service.clone();
    let options = &service.options;
    let port = program.port();
    service.metrics.room_opened(&room.name);
    let mut restarts = 0u32;
    loop {
        service.metrics.program_started(&room.name);
        tokio::time::sleep(options.delay()).await;
        let io = match program.attach().await {
            Ok(io) => io,
            Err(err) => {
                tracing::error!(room = %room.name, error = %err, "cannot reach the program");
                let _ = program
                    .stop(Duration::ZERO, Duration::from_millis(options.kill_after_ms))
                    .await;
                room.close_all(1011, "Cannot reach the program").await;
                break;
            }
        };
        let ProgramIo {
            input: program_input,
            output,
        } = io;
        let finish = CancellationToken::new();
        let writer = tokio::spawn(write_input(program_input, input, finish.clone()));
        let pump = tokio::spawn(pump_output(room.clone(), output));
        let watched = watch_program(&room, &mut program).await;
        match watched {
            Watched::Exited(status) => {
                // Output written before the exit is still delivered.
                let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
                finish.cancel();
                input = match writer.await {
                    Ok(input) => input,
                    Err(_) => break,
                };
                let failed = !status.is_some_and(|s| s.success());
                let again = match options.restart {
                    Restart::Never => false,
                    Restart::OnFailure => failed,
                    Restart::Always => true,
                };
                if again && room.client_count() > 0 && !service.stopping.is_cancelled() {
                    restarts += 1;
                    let backoff = Duration::from_millis(100u64 << restarts.min(6));
                    tracing::warn!(room = %room.name, ?status, ?backoff, "program exited: restarting");
                    tokio::time::sleep(backoff).await;
                    match Program::start(options, &room.name, &creator, port) {
                        Ok(next) => {
                            program = next;
                            room.rejoin_all().await;
                            continue;
                        }
                        Err(err) => {
                            tracing::error!(room = %room.name, error = %err, "cannot restart the program");
                        }
                    }
                }
                tracing::info!(room = %room.name, ?status, "program exited");
                let (code, reason) = exit_close(status);
                room.close_all(code, &reason).await;
                break;
            }
            Watched::Empty | Watched::Shutdown => {
                if matches!(watched, Watched::Shutdown) {
                    room.close_all(CLOSE_GOING_AWAY, "Server is shutting down")
                        .await;
                    // Let the clients' leave messages reach the queue first.
                    let mut population = room.population();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        population.wait_for(|n| *n == 0),
                    )
                    .await;
                }
                let grace = Duration::from_millis(options.grace_ms);
                let left = close_input(&room, finish, writer, grace).await;
                let status = program
                    .stop(left, Duration::from_millis(options.kill_after_ms))
                    .await;
                tracing::info!(room = %room.name, ?status, "program stopped");
                let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
                // A client that joined in the last instant is told the room ended.
                room.close_all(CLOSE_GOING_AWAY, "The room has ended").await;
                break;
            }
        }
    }
    service.room_ended(&room.name, port);
}

/// Ends the program's input: the writer writes what is queued and closes it. The program has
/// `grace` for that and to exit; one that does not read its input has it closed when `grace`
/// is over (what could not be written is dropped), so it is never waited for past `grace`.
/// Returns what is left of `grace`.
async fn close_input(
    room: &Room,
    finish: CancellationToken,
    mut writer: tokio::task::JoinHandle<mpsc::Receiver<Bytes>>,
    grace: Duration,
) -> Duration {
    let started = tokio::time::Instant::now();
    finish.cancel();
    if tokio::time::timeout(grace, &mut writer).await.is_err() {
        tracing::debug!(room = %room.name, "the program does not read its input: closing it");
        writer.abort();
        // Dropping the writer's task closes the program's input.
        let _ = writer.await;
    }
    grace.saturating_sub(started.elapsed())
}

/// Waits for the program to exit, for the room to stay empty for `idle_timeout_ms`, or for the
/// server to shut down.
async fn watch_program(room: &Room, program: &mut Program) -> Watched {
    let service = &room.service;
    let idle = Duration::from_millis(service.options.idle_timeout_ms);
    let mut population = room.population();
    loop {
        let empty = *population.borrow_and_update() == 0;
        let idle_deadline = tokio::time::sleep(idle);
        tokio::select! {
            status = program.wait() => return Watched::Exited(status.ok()),
            () = service.stopping.cancelled() => return Watched::Shutdown,
            changed = population.changed() => {
                if changed.is_err() {
                    return Watched::Empty;
                }
            }
            () = idle_deadline, if empty => {
                if room.close_if_empty() {
                    return Watched::Empty;
                }
            }
        }
    }
}

/// Writes queued input to the program; when `finish` fires, writes what is queued, closes the
/// program's input and returns the queue (for a restarted program).
async fn write_input(
    mut program_input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    mut queue: mpsc::Receiver<Bytes>,
    finish: CancellationToken,
) -> mpsc::Receiver<Bytes> {
    let mut broken = false;
    loop {
        tokio::select! {
            biased;
            next = queue.recv(), if !broken => match next {
                Some(bytes) => {
                    // Let the other ready tasks (clients reading their sockets) run first,
                    // then whatever they queued goes in the same write: one system call (and
                    // one wake-up of the program) for a burst of messages.
                    tokio::task::yield_now().await;
                    let mut batch = Vec::new();
                    if !queue.is_empty() {
                        batch.extend_from_slice(&bytes);
                        while batch.len() < INPUT_BATCH {
                            match queue.try_recv() {
                                Ok(more) => batch.extend_from_slice(&more),
                                Err(_) => break,
                            }
                        }
                    }
                    let chunk: &[u8] = if batch.is_empty() { &bytes } else { &batch };
                    if program_input.write_all(chunk).await.is_err() {
                        // The program closed its input or exited; later messages have nowhere
                        // to go until a restart.
                        broken = true;
                    } else if queue.is_empty() && program_input.flush().await.is_err() {
                        broken = true;
                    }
                }
                None => break,
            },
            () = finish.cancelled() => {
                while let Ok(bytes) = queue.try_recv() {
                    if broken || program_input.write_all(&bytes).await.is_err() {
                        broken = true;
                    }
                }
                break;
            }
        }
    }
    let _ = program_input.flush().await;
    let _ = program_input.shutdown().await;
    queue
}

/// Reads the program's output, cuts it into messages and delivers them.
async fn pump_output(
    room: Arc<Room>,
    mut output: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
) {
    let options = &room.service.options;
    let mut decoder = OutputDecoder::new(
        options.output_mode(),
        options.server_framing(),
        options.max_message_bytes,
    );
    let mut buffer = vec![0u8; 64 * 1024];
    let mut messages = Vec::new();
    loop {
        let read = output.read(&mut buffer).await;
        let done = match read {
            Ok(0) | Err(_) => {
                decoder.finish(&mut messages);
                true
            }
            Ok(n) => {
                decoder.feed(&buffer[..n], &mut messages);
                false
            }
        };
        for error in decoder.take_errors() {
            tracing::warn!(room = %room.name, %error, "program output");
            if error.dropped() {
                room.service.metrics.dropped(&room.name, "bad_output", 1);
            }
        }
        for message in messages.drain(..) {
            room.deliver(message).await;
        }
        if done {
            break;
        }
    }
}
